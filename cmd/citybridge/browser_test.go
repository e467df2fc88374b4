package main

import (
	"fmt"
	"testing"
	"time"
)

// TestBrowserHubToRooms: one Chromium tab is the hub (fake camera,
// three simulcast layers), three tabs are room terminals opened from links
// a technician provisioned. Every room decodes the hub's video (frames
// rising, a real width) and receives its audio; the hub decodes every
// room's video on its wall.
func TestBrowserHubToRooms(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	rooms := []string{"commune-001", "ward-017", "zone-03"}
	links := map[string]string{}
	for _, id := range rooms {
		links[id] = ts.terminalLink(t, id)
	}
	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	tabs := []*tab{host}
	roomTabs := map[string]*tab{}
	for _, id := range rooms {
		roomTabs[id] = openTab(t, browser, id, links[id])
		tabs = append(tabs, roomTabs[id])
	}
	saveScreenshotsOnFailure(t, tabs...)

	// Each room: the hub's video decodes at a real size, and keeps decoding;
	// the hub's audio arrives.
	for _, id := range rooms {
		tb := roomTabs[id]
		first := 0
		waitUntil(t, 60*time.Second, id+" decoding the hub", func() (bool, string) {
			stats, err := inbound(tb)
			if err != nil {
				return false, err.Error()
			}
			v, okV := find(stats, "hub", "video")
			a, okA := find(stats, "hub", "audio")
			seen := fmt.Sprintf("video %+v (found %v), audio %+v (found %v)", v, okV, a, okA)
			if !okV || !okA || v.FramesDecoded == 0 || v.FrameWidth == 0 || a.PacketsReceived == 0 {
				return false, seen
			}
			if first == 0 {
				first = v.FramesDecoded
				return false, seen
			}
			return v.FramesDecoded > first+10, seen
		})
	}

	// The hub's wall: every room's video decodes.
	waitUntil(t, 60*time.Second, "the hub decoding every room", func() (bool, string) {
		stats, err := inbound(host)
		if err != nil {
			return false, err.Error()
		}
		missing := []string{}
		for _, id := range rooms {
			if v, ok := find(stats, id, "video"); !ok || v.FramesDecoded == 0 || v.FrameWidth == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not decoded yet: %v; stats %+v", missing, stats)
	})

	// The pages say so too, and nobody saw an error.
	for _, tb := range tabs {
		state, err := eval[string](tb, `citybridge.state`)
		if err != nil || state != "connected" {
			t.Errorf("%s shows state %q (%v), want connected", tb.name, state, err)
		}
		errs, err := eval[[]map[string]any](tb, `citybridge.errors`)
		if err != nil || len(errs) != 0 {
			t.Errorf("%s reported errors %v (%v)", tb.name, errs, err)
		}
	}
	roster := ts.sig.Roster(ts.demo.Conference.ID)
	connected := 0
	for _, e := range roster {
		if e.State == "connected" {
			connected++
		}
	}
	if connected != len(rooms) {
		t.Errorf("roster shows %d connected bridges, want %d", connected, len(rooms))
	}
	if st := ts.media.Stats(); st.PacketsForwarded == 0 || st.Peers != int64(len(rooms)+1) {
		t.Errorf("SFU stats %+v: want packets forwarded and %d peers", st, len(rooms)+1)
	}
}
