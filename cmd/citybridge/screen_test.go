package main

import (
	"fmt"
	"testing"
	"time"
)

// TestBrowserScreenShare: the host shares a screen (Chromium's fake
// capture); the room terminal shows it large, with the hub camera still
// playing; stopping the share takes it away.
func TestBrowserScreenShare(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	room := openTab(t, browser, "room", ts.terminalLink(t, "commune-001"))
	saveScreenshotsOnFailure(t, host, room)
	waitUntil(t, 60*time.Second, "the room decoding the hub", func() (bool, string) {
		frames, _ := received(t, room, "hub")
		return frames > 0, fmt.Sprint(frames)
	})
	click(t, host, "#share")
	waitUntil(t, 30*time.Second, "the room showing the host's screen", func() (bool, string) {
		st, err := eval[map[string]any](room, `(() => { const v = document.getElementById("screen");
			return {hidden: v.hidden, w: v.videoWidth, screen: citybridge.floor && citybridge.floor.screen,
			  hubTracks: document.getElementById("hub").srcObject.getVideoTracks().length}; })()`)
		return err == nil && st["hidden"] == false && st["w"].(float64) > 0 && st["hubTracks"].(float64) == 1, fmt.Sprint(st, err)
	})
	stats, err := inbound(room)
	if err != nil {
		t.Fatal(err)
	}
	videos := 0
	for _, s := range stats {
		if s.Stream == "hub" && s.Kind == "video" && s.FramesDecoded > 0 {
			videos++
		}
	}
	if videos != 2 {
		t.Errorf("the room decodes %d hub videos, want the camera and the screen: %+v", videos, stats)
	}
	click(t, host, "#share")
	waitUntil(t, 10*time.Second, "the screen gone from the room", func() (bool, string) {
		hidden, err := eval[bool](room, `document.getElementById("screen").hidden`)
		return err == nil && hidden, fmt.Sprint(hidden, err)
	})
}
