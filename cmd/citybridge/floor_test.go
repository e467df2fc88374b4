package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// outboundStat mirrors the pages' Session.outbound().
type outboundStat struct {
	Kind        string `json:"kind"`
	RID         string `json:"rid"`
	PacketsSent int    `json:"packetsSent"`
}

func outbound(tb *tab) ([]outboundStat, error) {
	return eval[[]outboundStat](tb, `citybridge.outbound()`)
}

// received is what tb has received from stream so far: video frames
// decoded and audio packets (0 when it receives nothing from it).
func received(t *testing.T, tb *tab, stream string) (frames, audio int) {
	t.Helper()
	stats, err := inbound(tb)
	if err != nil {
		t.Fatalf("%s: stats: %v", tb.name, err)
	}
	v, _ := find(stats, stream, "video")
	a, _ := find(stats, stream, "audio")
	return v.FramesDecoded, a.PacketsReceived
}

// click clicks the element matching the CSS selector in tb.
func click(t *testing.T, tb *tab, selector string) {
	t.Helper()
	waitUntil(t, 10*time.Second, tb.name+": "+selector+" on screen", func() (bool, string) {
		ok, err := eval[bool](tb, `(() => { const e = document.querySelector(`+"`"+selector+"`"+`);
			if (!e || e.hidden || e.offsetParent === null) return false; e.click(); return true; })()`)
		return err == nil && ok, fmt.Sprint(err)
	})
}

// docScreenshot saves a screenshot of tb for the README's walkthrough
// (docs/img/name.png) when CITYBRIDGE_DOC_SCREENSHOTS is set, and in the
// test artifacts otherwise.
func docScreenshot(t *testing.T, tb *tab, name string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := filepath.Join(root, "test-artifacts")
	if os.Getenv("CITYBRIDGE_DOC_SCREENSHOTS") != "" {
		dir = filepath.Join(root, "docs", "img")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Logf("viewport: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot of %s: %v", tb.name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
	}
}

// TestBrowserFloorControl: the hub and three rooms in Chromium. The host
// gives the floor to room B from the console; rooms A and C then decode
// B's video and receive its audio. Room C keeps sending its microphone
// but, without the floor, the server forwards it to nobody (checked at A
// and at the hub), and C's own attempt to unmute is refused. Taking the
// floor back stops B's media at A and C within 2 s.
func TestBrowserFloorControl(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	a, b, c := "commune-001", "commune-002", "ward-001"
	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	rooms := map[string]*tab{}
	for _, id := range []string{a, b, c} {
		rooms[id] = openTab(t, browser, id, ts.terminalLink(t, id))
	}
	saveScreenshotsOnFailure(t, host, rooms[a], rooms[b], rooms[c])

	for id, tb := range rooms {
		waitUntil(t, 60*time.Second, id+" decoding the hub", func() (bool, string) {
			frames, audio := received(t, tb, "hub")
			return frames > 0 && audio > 0, fmt.Sprintf("frames %d, audio packets %d", frames, audio)
		})
	}
	waitUntil(t, 30*time.Second, "the host's wall showing all three rooms", func() (bool, string) {
		n := 0
		for id := range rooms {
			if f, _ := received(t, host, id); f > 0 {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d of 3 tiles decoding", n)
	})
	// Nobody holds the floor yet: rooms receive nothing of each other.
	for _, id := range []string{a, c} {
		if f, au := received(t, rooms[id], b); f != 0 || au != 0 {
			t.Fatalf("%s receives B before anyone has the floor: %d frames, %d audio packets", id, f, au)
		}
	}

	click(t, host, `#wall [data-bridge="`+b+`"] button.give-floor`)
	for _, id := range []string{a, c} {
		tb := rooms[id]
		var f0, a0 int
		waitUntil(t, 20*time.Second, id+" decoding B's video and receiving its audio", func() (bool, string) {
			f, au := received(t, tb, b)
			seen := fmt.Sprintf("frames %d, audio packets %d", f, au)
			if f == 0 || au == 0 {
				return false, seen
			}
			if f0 == 0 {
				f0, a0 = f, au
				return false, seen
			}
			return f > f0+10 && au > a0+20, seen
		})
	}
	if state, _ := eval[string](rooms[b], `document.getElementById("mic").className`); state != "mic-state on" {
		t.Errorf("room B's page shows mic state %q, want on", state)
	}
	// The pages show it: A's terminal shows B beside the hub.
	waitUntil(t, 10*time.Second, "room A's page showing B beside the hub", func() (bool, string) {
		st, err := eval[map[string]any](rooms[a], `(() => { const v = document.getElementById("floor");
			return {hidden: document.getElementById("floor-box").hidden, w: v.videoWidth, caption: document.getElementById("floor-name").textContent,
			  tracks: v.srcObject ? v.srcObject.getTracks().length : -1}; })()`)
		return err == nil && st["hidden"] == false && st["w"].(float64) > 0, fmt.Sprint(st, err)
	})
	// Active speaker: from the audio levels Chromium puts in its packets,
	// one of those who can be heard (the hub or B, both playing the test
	// clip), shown on the host's wall; never muted C.
	waitUntil(t, 15*time.Second, "an active speaker on the host's wall", func() (bool, string) {
		sp, err := eval[string](host, `citybridge.speaker`)
		return err == nil && (sp == "hub" || sp == b), fmt.Sprint(sp, err)
	})
	docScreenshot(t, host, "host-console-floor")
	docScreenshot(t, rooms[a], "room-floor")

	// Room C without the floor: it publishes its microphone, the server
	// forwards it to nobody, and it may not unmute itself.
	sentBefore := audioSent(t, rooms[c])
	if _, err := eval[any](rooms[c], `citybridge.session.control("unmute")`); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "room C's unmute refused", func() (bool, string) {
		codes, err := eval[[]string](rooms[c], `citybridge.errors.map((e) => e.code)`)
		return err == nil && len(codes) > 0 && codes[len(codes)-1] == "no_floor", fmt.Sprint(codes, err)
	})
	// Let C publish a good second of audio (50 packets) after its refused
	// unmute: long enough for any leak to show at A and at the hub.
	waitUntil(t, 10*time.Second, "room C publishing its microphone", func() (bool, string) {
		sent := audioSent(t, rooms[c])
		return sent >= sentBefore+50, fmt.Sprintf("%d packets since", sent-sentBefore)
	})
	for _, tb := range []*tab{rooms[a], host} {
		if _, au := received(t, tb, c); au != 0 {
			t.Errorf("%s received %d audio packets from muted room C", tb.name, au)
		}
	}

	// The host takes the floor back: B's media stops at A and C.
	click(t, host, `#take-floor`)
	taken := time.Now()
	time.Sleep(2 * time.Second)
	before := map[string][2]int{}
	for _, id := range []string{a, c} {
		f, au := received(t, rooms[id], b)
		before[id] = [2]int{f, au}
	}
	time.Sleep(time.Second)
	for _, id := range []string{a, c} {
		f, au := received(t, rooms[id], b)
		if f != before[id][0] || au != before[id][1] {
			t.Errorf("%s still receiving B %v after the floor was taken back: frames %d→%d, audio %d→%d",
				id, time.Since(taken).Round(100*time.Millisecond), before[id][0], f, before[id][1], au)
		}
	}
	floor, err := eval[map[string]any](host, `citybridge.floor`)
	if err != nil || floor["holder"] != "" {
		t.Errorf("host page's floor state %v (%v), want no holder", floor, err)
	}
	if errs, _ := eval[[]map[string]any](host, `citybridge.errors`); len(errs) != 0 {
		t.Errorf("the host saw errors: %v", errs)
	}

	// The host ends the meeting: every room is sent away and the console
	// shows the attendance record.
	if _, err := eval[any](host, `citybridge.session.control("end")`); err != nil {
		t.Fatal(err)
	}
	for id, tb := range rooms {
		waitUntil(t, 10*time.Second, id+" told the conference ended", func() (bool, string) {
			bye, err := eval[string](tb, `citybridge.bye`)
			return bye == "ended", fmt.Sprint(bye, err)
		})
	}
	waitUntil(t, 10*time.Second, "the attendance table on the host console", func() (bool, string) {
		n, err := eval[int](host, `document.querySelectorAll("#attendance-rows tr").length`)
		return err == nil && n == 117, fmt.Sprint(n, err) // 116 invited bridges and the hub
	})
	cells, err := eval[[]string](host, `[...document.querySelectorAll('#attendance-rows tr[data-bridge="`+b+`"] td')].map((td) => td.textContent)`)
	if err != nil || len(cells) != 5 || cells[1] == "0:00" || cells[2] != "0" || !strings.Contains(cells[4], "–") || strings.Contains(cells[4], "…") {
		t.Errorf("B's attendance row %q (%v): want connected time, no drops, one closed interval", cells, err)
	}
	docScreenshot(t, host, "host-attendance")
}

func audioSent(t *testing.T, tb *tab) int {
	t.Helper()
	out, err := outbound(tb)
	if err != nil {
		t.Fatalf("%s: %v", tb.name, err)
	}
	for _, o := range out {
		if o.Kind == "audio" {
			return o.PacketsSent
		}
	}
	return 0
}
