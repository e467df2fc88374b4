package sfu

import (
	"testing"
	"time"

	"citybridge/sfu/sfutest"
)

// TestPinLiftedRestoresLayer: a technician pins a room on the full layer
// to the smallest and soon lifts the pin. With no congestion in between,
// the room is given the full layer back at once, not a probe per layer;
// when its link showed congestion while pinned, it climbs back by probes
// as any room does.
func TestPinLiftedRestoresLayer(t *testing.T) {
	room, d, gcc, hub, _ := roomOnFullLayer(t, "conf-pin")
	target := func() int { return int(d.target.Load()) }

	// The link now carries the full layer with less than the headroom a
	// step up to it takes: a room coming back to it must be kept there,
	// not stepped up to it.
	full := hub.layerRates()[LayerHigh]
	gcc.set(full*9/10, "decrease")
	room.allocate()
	if got := target(); got != LayerHigh {
		t.Fatalf("with %d bit/s for a %d bit/s layer the room left the full layer: target %d", full*9/10, full, got)
	}

	for _, congested := range []bool{false, true} {
		room.SetPin(LayerLow)
		if got := target(); got != LayerLow {
			t.Fatalf("pinned to the smallest layer, the room's target is %d", got)
		}
		if congested {
			gcc.set(full*8/10, "decrease") // overuse while pinned
			room.allocate()
			gcc.set(full*2, "increase")
			room.allocate()
		}
		room.SetPin(LayerHigh)
		got := target()
		switch {
		case !congested && got != LayerHigh:
			t.Errorf("pin lifted with no congestion since: target %d, want the full layer (%d) at once", got, LayerHigh)
		case congested && got != LayerLow:
			t.Errorf("pin lifted after congestion: target %d, want the smallest layer (%d) until a probe vouches for more", got, LayerLow)
		}
		if congested {
			break
		}
		waitFor(t, 10*time.Second, "the room back on the full layer", func() bool { return d.Layer() == LayerHigh })
	}
}

// TestHeavyLossWithdrawsKeep: a room keeps its layer while its estimate
// covers 60% of it, so one noisy estimate does not make it flap; but once
// it reports heavy loss, the layer must fit whole. (Seen: 640x360 kept for
// 8 s on a 600 kbit link, losing 23-50% of it.)
func TestHeavyLossWithdrawsKeep(t *testing.T) {
	room, d, gcc, hub, _ := roomOnFullLayer(t, "conf-lossy")
	full := hub.layerRates()[LayerHigh]
	gcc.set(full*8/10, "decrease")
	room.allocate()
	if got := d.target.Load(); got != LayerHigh {
		t.Fatalf("with 80%% of the full layer's rate and no loss the room left it: target %d", got)
	}
	room.as.sentBits.Store(int64(full))
	room.onReceiverReport(0.2)
	room.allocate()
	if got := d.target.Load(); got >= LayerHigh {
		t.Errorf("losing 20%% of a layer its estimate covers only 80%% of, the room kept it: target %d", got)
	}
}

// roomOnFullLayer starts a synthetic three-layer hub in conference conf
// and a room subscribed to it, whose estimate a test sets through gcc
// (20 Mbit/s to begin with), and waits until the room receives the full
// layer and that layer's rate is measured.
func roomOnFullLayer(t *testing.T, conf string) (*Peer, *DownTrack, *fakeBWE, *Track, *sfutest.Publisher) {
	t.Helper()
	r, hub, pub := threeLayerHub(t, newTestSFU(t), conf)
	room, err := r.NewPeer("room", nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(room.Close)
	gcc := &fakeBWE{rate: 20_000_000, state: "increase"}
	room.setEstimator(gcc)
	d, err := room.Subscribe(hub, LayerHigh)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Bind(fakeContext{w: &countingWriter{}, ssrc: 4242}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the room on the full layer, its rate measured", func() bool {
		room.allocate()
		return d.Layer() == LayerHigh && hub.layerRates()[LayerHigh] > 0
	})
	return room, d, gcc, hub, pub
}

// TestCongestionMovesDownAtOnce: GCC lowering its target on overuse moves
// the room down there and then, not at the router's next tick; a dip
// without overuse moves nothing.
func TestCongestionMovesDownAtOnce(t *testing.T) {
	room, d, gcc, hub, _ := roomOnFullLayer(t, "conf-atonce")
	low := hub.layerRates()[LayerLow]
	gcc.set(low*2, "increase") // a dip: not congestion
	if got := d.target.Load(); got != LayerHigh {
		t.Fatalf("a dip without overuse moved the room to layer %d", got)
	}
	gcc.set(low*3/2, "decrease") // fakeBWE tells the peer synchronously, as GCC does on a goroutine
	if got := d.target.Load(); got >= LayerHigh {
		t.Errorf("GCC lowered its target on overuse and the room still has layer %d: it waits for the router's tick", got)
	}
	if !room.onReceiverReport(0.2) || room.onReceiverReport(0.05) {
		t.Error("onReceiverReport should report heavy loss (over 10%) as such, and only that")
	}
}

// TestLayerBackWhenThePublisherResumesIt: the hub's starved Chromium
// stops sending its top layer for a while. A room on a fast link follows
// it down to the middle layer and, when the top layer comes back, gets it
// back at once (not after allocHold and a probe); unless its link showed
// congestion in between, when it climbs back as any room does.
func TestLayerBackWhenThePublisherResumesIt(t *testing.T) {
	room, d, gcc, _, pub := roomOnFullLayer(t, "conf-resume")
	gcc.set(gcc.GetTargetBitrate(), "increase") // the estimator's listener hears of the rate it starts from
	for _, congested := range []bool{false, true} {
		pub.Hold("f", true)
		waitFor(t, 10*time.Second, "the room moved to the middle layer", func() bool { return d.target.Load() == LayerMid })
		if congested {
			gcc.set(12_000_000, "decrease") // still ample, but a congestion signal
		}
		pub.Hold("f", false)
		resumed := time.Now()
		back := func() bool { return d.target.Load() == LayerHigh }
		if !congested {
			waitFor(t, 2*time.Second, "the room back on the full layer when the hub resumed it", back)
			t.Logf("back on the full layer %v after the hub resumed it", time.Since(resumed).Round(time.Millisecond))
			continue
		}
		for time.Since(resumed) < 1500*time.Millisecond {
			if back() {
				t.Fatalf("the link showed congestion while the layer was gone, yet the room got it back after %v without a probe", time.Since(resumed))
			}
			time.Sleep(20 * time.Millisecond)
		}
		room.allocate()
	}
}
