package main

import (
	"fmt"
	"testing"
	"time"
)

// TestLossRecovery: the room's downlink drops 5% of packets at random
// (nftables on its veth). The room's Chromium NACKs what it misses, the
// server answers from its packet cache, and the picture keeps its frame
// rate: above 25 frames a second over ten seconds.
func TestLossRecovery(t *testing.T) {
	requireMediaPass(t) // not parallel: it needs the machine's CPU to itself
	link := newNetLink(t)
	ts := startTestServerOn(t, link)
	const id = "ward-017"

	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	roomBrowser := newBrowserIn(t, link)
	room := openTab(t, roomBrowser, id, ts.terminalLink(t, id))
	saveScreenshotsOnFailure(t, host, room)

	video := func() (inboundStat, string) {
		stats, err := inbound(room)
		if err != nil {
			return inboundStat{}, err.Error()
		}
		v, _ := find(stats, "hub", "video")
		return v, fmt.Sprintf("%+v", v)
	}
	// Settled first: at the full layer, where it stays on a clean link, so
	// the measurement is not of a layer switch's keyframe wait.
	waitUntil(t, 60*time.Second, id+" decoding the hub at 1280x720", func() (bool, string) {
		v, seen := video()
		return v.FramesDecoded > 30 && v.FrameWidth == 1280, seen
	})

	link.SetLoss(t, 5)
	rtx0 := ts.media.Stats().Retransmitted
	// Let the loss bite, then measure ten seconds of it.
	start := time.Now()
	waitUntil(t, 15*time.Second, "a NACK answered under loss", func() (bool, string) {
		st := ts.media.Stats()
		return st.Retransmitted > rtx0 && time.Since(start) > 3*time.Second, fmt.Sprintf("%d retransmitted", st.Retransmitted-rtx0)
	})
	e0 := hubEncoded(t, host)
	v0, _ := video()
	t0 := time.Now()
	waitUntil(t, 15*time.Second, "ten seconds under 5% loss", func() (bool, string) {
		return time.Since(t0) >= 10*time.Second, ""
	})
	v1, seen := video()
	took := time.Since(t0).Seconds()
	fps := float64(v1.FramesDecoded-v0.FramesDecoded) / took
	sent := float64(hubEncoded(t, host)-e0) / took
	st := ts.media.Stats()
	t.Logf("under 5%% loss: %.1f frames/s decoded at %dx%d (the hub encoded %.1f a second of its full layer); room sent %d NACKs, lost %d packets for good; server retransmitted %d",
		fps, v1.FrameWidth, v1.FrameHeight, sent, v1.NackCount-v0.NackCount, v1.PacketsLost-v0.PacketsLost, st.Retransmitted-rtx0)
	if fps <= 25 {
		t.Errorf("decoded %.1f frames/s under 5%% loss, want above 25; the hub encoded %.1f a second (%s)", fps, sent, seen)
	}
	if v1.NackCount <= v0.NackCount {
		t.Errorf("the room sent no NACKs under 5%% loss: the loss is not on its link (%s)", seen)
	}
	if st.Retransmitted <= rtx0 {
		t.Error("the server retransmitted nothing")
	}
	link.ClearLoss(t)
}

// hubEncoded returns how many frames the hub's page has encoded on its
// full simulcast layer: what a room could decode at most.
func hubEncoded(t *testing.T, host *tab) int {
	t.Helper()
	n, err := eval[int](host, `(async () => {
		let n = 0;
		(await citybridge.session.pcs.pub.getStats()).forEach((s) => {
			if (s.type === "outbound-rtp" && s.kind === "video" && s.rid === "f") n = s.framesEncoded || 0;
		});
		return n;
	})()`)
	if err != nil {
		t.Fatalf("the hub's encoded frames: %v", err)
	}
	return n
}
