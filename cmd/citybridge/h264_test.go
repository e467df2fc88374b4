package main

import (
	"fmt"
	"testing"
	"time"
)

// TestBrowserH264Simulcast: with --video-codec h264 the hub's Chromium
// sends its three simulcast layers in H.264. A room decodes the hub at
// 1280x720 in H.264; a technician's pin moves another room to the smallest
// layer (the switch waits for an H.264 keyframe of that layer, found by
// SPS/IDR detection) and lifting it brings the room back to 1280x720, with
// the picture decoding throughout.
//
// It runs in the media pass: OpenH264 encoding three layers is heavy, and
// beside the race pass's other browser tests it starved them (and itself:
// 4 frames a second at 320x180).
func TestBrowserH264Simulcast(t *testing.T) {
	requireMediaPass(t)
	ts := startTestServerWith(t, func(c *Config) { c.VideoCodec = "h264" })
	rooms := []string{"commune-001", "ward-017"}
	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	tabs := []*tab{host}
	roomTabs := map[string]*tab{}
	for _, id := range rooms {
		roomTabs[id] = openTab(t, browser, id, ts.terminalLink(t, id))
		tabs = append(tabs, roomTabs[id])
	}
	saveScreenshotsOnFailure(t, tabs...)

	hubVideo := func(tb *tab) (inboundStat, string) {
		stats, err := inbound(tb)
		if err != nil {
			return inboundStat{}, err.Error()
		}
		v, _ := find(stats, "hub", "video")
		return v, fmt.Sprintf("%+v", v)
	}
	atSize := func(tb *tab, width int, within time.Duration) {
		t.Helper()
		first := -1
		waitUntil(t, within, fmt.Sprintf("%s decoding the hub in H.264 at width %d", tb.name, width), func() (bool, string) {
			v, seen := hubVideo(tb)
			if v.Codec != "video/H264" || v.FrameWidth != width {
				return false, seen
			}
			if first < 0 {
				first = v.FramesDecoded
			}
			return v.FramesDecoded > first+10, seen
		})
	}
	for _, id := range rooms {
		atSize(roomTabs[id], 1280, 90*time.Second)
	}

	pinned := roomTabs["ward-017"]
	keyframes := func() uint64 { st := ts.media.Stats(); return st.KeyframeRequests + st.KeyframesFromCache }
	before := keyframes()
	if err := ts.sig.PinLayer(ts.demo.Conference.ID, "ward-017", "q"); err != nil {
		t.Fatal(err)
	}
	atSize(pinned, 320, 15*time.Second)
	if l, err := hubLayer(roomTabs["commune-001"]); err != nil || l.Reason == "pinned" {
		t.Errorf("while ward-017 is pinned, the other room's layer: %+v (%v)", l, err)
	}
	if keyframes() == before {
		t.Error("the switch to the smallest layer asked for no keyframe (nor was it served from the cache)")
	}
	if err := ts.sig.PinLayer(ts.demo.Conference.ID, "ward-017", "f"); err != nil {
		t.Fatal(err)
	}
	atSize(pinned, 1280, 30*time.Second)
	// The pin was ward-017's alone: the server never pinned the other
	// room, and it decodes 1280x720 in H.264. It may have dipped while the
	// machine starved a browser (CI's stop 16 caught it at 640x360 once,
	// the cause unrecorded), so it gets the same 30 s as the pinned room
	// to be back, and what the server said about it is logged.
	other := roomTabs["commune-001"]
	if l, err := hubLayer(other); err != nil || l.Reason == "pinned" {
		t.Errorf("the unpinned room's layer: %+v (%v)", l, err)
	}
	if v, _ := hubVideo(other); v.FrameWidth != 1280 {
		l, _ := hubLayer(other)
		t.Logf("the unpinned room decodes %dx%d; the server sends it layer %q for %q (best: the hub's Chromium is not sending 1280x720)",
			v.FrameWidth, v.FrameHeight, l.Layer, l.Reason)
	}
	atSize(other, 1280, 30*time.Second)
	for _, tb := range tabs {
		if errs, err := eval[[]map[string]any](tb, `citybridge.errors`); err != nil || len(errs) != 0 {
			t.Errorf("%s reported errors %v (%v)", tb.name, errs, err)
		}
	}
}
