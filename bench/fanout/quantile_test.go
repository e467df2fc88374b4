package main

import (
	"math"
	"testing"
)

func TestQuantileMs(t *testing.T) {
	inf := math.Inf(1)
	before := []bucket{{0.001, 10}, {0.0025, 10}, {0.005, 10}, {inf, 10}}
	// In the window: 50 observations up to 1 ms, 50 in (1, 2.5] ms.
	after := []bucket{{0.001, 60}, {0.0025, 110}, {0.005, 110}, {inf, 110}}
	for _, c := range []struct{ q, want float64 }{
		{0.25, 0.5},  // halfway through the first bucket
		{0.50, 1.0},  // its upper bound
		{0.75, 1.75}, // halfway through (1, 2.5]
		{0.99, 2.47},
	} {
		if got := quantileMs(before, after, c.q); math.Abs(got-c.want) > 0.001 {
			t.Errorf("q %.2f: %.4f ms, want %.4f", c.q, got, c.want)
		}
	}
	// Beyond the last finite bound: that bound.
	over := []bucket{{0.001, 10}, {0.0025, 10}, {0.005, 10}, {inf, 20}}
	if got := quantileMs(before, over, 0.5); got != 5 {
		t.Errorf("all beyond 5 ms: %.4f, want 5", got)
	}
	if got := quantileMs(before, before, 0.5); got != 0 {
		t.Errorf("nothing observed: %.4f, want 0", got)
	}
}
