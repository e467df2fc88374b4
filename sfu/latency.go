package sfu

import (
	"sync/atomic"
	"time"
)

// The forwarding loop's latency: from an upstream packet entering
// Track.forward to its last copy written to a subscriber, in a fixed-bucket
// histogram of atomic counters, so that recording costs no lock and no
// allocation.

// latencyBounds are the histogram's bucket upper bounds (inclusive).
var latencyBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
}

// latencyHistogram counts observations per bucket; the last count is for
// those beyond the last bound.
type latencyHistogram struct {
	counts [len(latencyBounds) + 1]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
}

// observe records one duration of d nanoseconds (negative counts as 0).
func (h *latencyHistogram) observe(d int64) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(latencyBounds) && time.Duration(d) > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(d))
}

// LatencyHistogram is a snapshot of a latency histogram.
type LatencyHistogram struct {
	Bounds []time.Duration // bucket upper bounds, inclusive
	Counts []uint64        // per bucket (not cumulative), len(Bounds)+1: the last is beyond the last bound
	Sum    time.Duration
	Count  uint64 // the sum of Counts
}

func (h *latencyHistogram) snapshot() LatencyHistogram {
	s := LatencyHistogram{
		Bounds: append([]time.Duration(nil), latencyBounds[:]...),
		Counts: make([]uint64, len(h.counts)),
		Sum:    time.Duration(h.sum.Load()),
	}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	return s
}
