package sfu

import (
	"testing"
	"time"
)

// TestNACKLossWindow: the share of a down track's packets asked for again
// is measured over the last nackWindow, from samples at least
// nackSampleGap apart; no verdict on fewer than nackMinPackets, on a
// history shorter than the window, or across a gap in the samples.
func TestNACKLossWindow(t *testing.T) {
	ms := int64(time.Millisecond)
	// feed calls add every 10 ms for dur at pps packets a second with a
	// share lost, and returns the last verdict.
	feed := func(w *nackLoss, from int64, dur time.Duration, pps int, lost float64, sent, nacked *float64) (float64, bool) {
		var share float64
		var ok bool
		for at := from; at <= from+int64(dur); at += 10 * ms {
			*sent += float64(pps) / 100
			*nacked += float64(pps) / 100 * lost
			share, ok = w.add(at, uint64(*sent), uint64(*nacked))
		}
		return share, ok
	}
	cases := []struct {
		name    string
		pps     int
		lost    float64
		dur     time.Duration
		heavy   bool
		verdict bool
	}{
		{"720p, 5% random loss", 280, 0.05, time.Second, false, true},
		{"720p into a link a quarter its size", 280, 0.75, time.Second, true, true},
		{"720p, 30% lost", 280, 0.30, time.Second, true, true},
		{"the small layer, all lost: too few packets to judge", 25, 1, time.Second, false, false},
		{"a history shorter than the window", 280, 0.75, nackWindow - 20*time.Millisecond, false, false},
	}
	for _, c := range cases {
		var w nackLoss
		var sent, nacked float64
		share, ok := feed(&w, 1, c.dur, c.pps, c.lost, &sent, &nacked)
		if ok != c.verdict || ok && (share > nackHeavy) != c.heavy {
			t.Errorf("%s: share %.2f, verdict %v; want verdict %v, heavy %v", c.name, share, ok, c.verdict, c.heavy)
		}
		if ok && (share < c.lost-0.05 || share > c.lost+0.05) {
			t.Errorf("%s: measured %.2f lost, want about %.2f", c.name, share, c.lost)
		}
	}

	// Reads a second apart (a silent subscriber): the window has no
	// sample in it, so no verdict on loss counted over the whole second.
	var w nackLoss
	w.add(1, 0, 0)
	if share, ok := w.add(1+int64(time.Second), 300, 200); ok {
		t.Errorf("a verdict (%.2f) across a second without samples", share)
	}
	// And the loss of a past overflow leaves the window as it passes.
	var sent, nacked float64
	w = nackLoss{}
	feed(&w, 1, time.Second, 280, 0.75, &sent, &nacked)
	if share, ok := feed(&w, 1+int64(time.Second)+10*ms, time.Second, 280, 0, &sent, &nacked); !ok || share != 0 {
		t.Errorf("a second after the loss ended: share %.2f, verdict %v; want 0", share, ok)
	}
}

// TestFreshNACKsCountedOnce: each packet of the picture being shown counts
// once towards the NACK loss however often it is asked for; packets of a
// layer the down track has left do not count.
func TestFreshNACKsCountedOnce(t *testing.T) {
	now := int64(0)
	tr, d, w := rtxFixture(&now)
	lost := w.headers[1].SequenceNumber
	d.retransmit(lost, now, false)
	now += int64(100 * time.Millisecond)
	d.retransmit(lost, now, false)
	if got := d.freshNACKs.Load(); got != 1 {
		t.Fatalf("a packet asked for twice counted %d times, want once", got)
	}
	tr.addLayer(LayerMid, 1235)
	d.setTarget(LayerMid)
	tr.forward(LayerMid, pkt(500, 90000, vp8Key))
	d.retransmit(w.headers[0].SequenceNumber, now, false) // q's keyframe: h is shown now
	if got := d.freshNACKs.Load(); got != 1 {
		t.Errorf("a NACK for the layer left counted: %d fresh NACKs, want 1", got)
	}
	d.retransmit(w.headers[len(w.headers)-1].SequenceNumber, now, false)
	if got := d.freshNACKs.Load(); got != 2 {
		t.Errorf("a NACK for the new layer's keyframe not counted: %d fresh NACKs, want 2", got)
	}
}

// TestNACKLossMovesDown: a quarter or more of the full layer asked for
// again is heavy loss. With GCC not (yet) saying anything, the room moves
// down there and then, to what the link delivered of what was sent;
// random loss of a few percent moves nothing.
func TestNACKLossMovesDown(t *testing.T) {
	room, d, _, hub, _ := roomOnFullLayer(t, "conf-nackloss")
	full := hub.layerRates()[LayerHigh]
	room.as.sentBits.Store(int64(full))
	if room.onNACKLoss(d, 0.05) {
		t.Error("5% asked for again taken as heavy loss")
	}
	room.allocate()
	if got := d.target.Load(); got != LayerHigh {
		t.Fatalf("5%% NACK loss moved the room to layer %d", got)
	}
	if !room.onNACKLoss(d, 0.70) {
		t.Fatal("70% asked for again not taken as heavy loss")
	}
	if c, want := int(room.as.lossCap.Load()), full*3/10; c < want*9/10 || c > want*11/10 {
		t.Errorf("estimate capped at %d after 70%% loss of %d sent, want about %d (what arrived)", c, full, want)
	}
	room.allocate()
	if got := d.target.Load(); got >= LayerHigh {
		t.Errorf("the room still has layer %d after losing 70%% of it", got)
	}
}

// TestCongestionMovesDownInOneSwitch: on congestion the room moves to what
// fits in drainFraction of the estimate, in one switch. An estimate whose
// 80% carries the middle layer but whose 65% does not takes the room from
// the full layer to the lowest at once, not to the middle one and then,
// at GCC's next lower figure, on again (two keyframe waits).
func TestCongestionMovesDownInOneSwitch(t *testing.T) {
	_, d, gcc, hub, _ := roomOnFullLayer(t, "conf-oneswitch")
	gcc.set(gcc.GetTargetBitrate(), "increase")
	mid := hub.layerRates()[LayerMid]
	gcc.set(mid*100/72, "decrease")
	if got := d.target.Load(); got != LayerLow {
		t.Errorf("congestion at %d bit/s (80%% of it carries the middle layer's %d, 65%% does not) moved the room to layer %d, want %d",
			mid*100/72, mid, got, LayerLow)
	}
}
