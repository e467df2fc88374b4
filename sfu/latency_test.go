package sfu

import (
	"testing"
	"time"
)

func TestLatencyHistogramBuckets(t *testing.T) {
	var h latencyHistogram
	for _, d := range []time.Duration{-time.Microsecond, 0, 10 * time.Microsecond, 11 * time.Microsecond,
		time.Millisecond, 50 * time.Millisecond, time.Second} {
		h.observe(int64(d))
	}
	s := h.snapshot()
	if len(s.Bounds) != len(latencyBounds) || len(s.Counts) != len(s.Bounds)+1 {
		t.Fatalf("%d bounds, %d counts", len(s.Bounds), len(s.Counts))
	}
	want := map[int]uint64{0: 3, 1: 1, 6: 1, 11: 1, 12: 1} // bucket index: count
	for i, c := range s.Counts {
		if c != want[i] {
			t.Errorf("bucket %d (<= %v): %d, want %d", i, s.Bounds[min(i, len(s.Bounds)-1)], c, want[i])
		}
	}
	if s.Count != 7 {
		t.Errorf("count %d, want 7", s.Count)
	}
	if wantSum := 10*time.Microsecond + 11*time.Microsecond + time.Millisecond + 50*time.Millisecond + time.Second; s.Sum != wantSum {
		t.Errorf("sum %v, want %v", s.Sum, wantSum)
	}
}

func TestLatencyObserveDoesNotAllocate(t *testing.T) {
	var h latencyHistogram
	d := int64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		d += int64(7 * time.Microsecond)
		h.observe(d)
	})
	if allocs != 0 {
		t.Fatalf("observe allocates %.1f times", allocs)
	}
}

// TestForwardRecordsLatency: one observation per upstream packet, measured
// on the track's clock across the fan-out.
func TestForwardRecordsLatency(t *testing.T) {
	now := int64(0)
	tr := newBareTrack(&now)
	tr.clock = func() int64 { now += int64(300 * time.Microsecond); return now }
	d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
	bindFake(d, &discardWriter{}, 1, 96)
	d.setTarget(LayerHigh)
	tr.addDown(d)
	tr.forward(LayerHigh, pkt(1, 0, vp8Key))
	tr.forward(LayerHigh, pkt(2, 3000, vp8Delta))
	s := tr.stats.forwardLatency.snapshot()
	if s.Count != 2 {
		t.Fatalf("%d observations for 2 packets", s.Count)
	}
	if s.Counts[0] != 0 || s.Sum < 2*300*time.Microsecond {
		t.Fatalf("latency not measured across the fan-out: counts %v, sum %v", s.Counts, s.Sum)
	}
}
