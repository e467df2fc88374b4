package main

import (
	"testing"
	"time"
)

// TestFreeWatchCounts holds the rules TestBrowserLayerFollowsBandwidth
// judges its unlimited room by, on made-up samples a quarter second
// apart: a stall of the sampling excuses the hold-backs around it and no
// others, and a lower layer labelled "best" counts once the hub has been
// sending its full layer for bestGrace.
func TestFreeWatchCounts(t *testing.T) {
	full := layerInfo{Layer: "f", Reason: "best"}
	const tick = 250 * time.Millisecond
	for _, c := range []struct {
		name             string
		samples          func(add func(l layerInfo, hubFull int), wait func(time.Duration))
		counted, excused int
	}{{
		name: "held back with no stall",
		samples: func(add func(layerInfo, int), _ func(time.Duration)) {
			add(full, 1)
			add(layerInfo{Layer: "h", Reason: "bandwidth"}, 2)
			add(full, 3)
		},
		counted: 1,
	}, {
		name: "held back just after a stall",
		samples: func(add func(layerInfo, int), wait func(time.Duration)) {
			add(full, 1)
			wait(2 * time.Second) // the stall
			for range 8 {
				add(layerInfo{Layer: "h", Reason: "bandwidth"}, 2)
			}
			add(full, 3)
		},
		excused: 8,
	}, {
		name: "held back long after a stall",
		samples: func(add func(layerInfo, int), wait func(time.Duration)) {
			add(full, 1)
			wait(2 * time.Second)
			for i := range 50 { // 12.5 s
				add(full, 2+i)
			}
			add(layerInfo{Layer: "h", Reason: "pinned"}, 100)
			add(full, 101)
		},
		counted: 1,
	}, {
		name: "a stall excuses the hold-backs around it only",
		samples: func(add func(layerInfo, int), wait func(time.Duration)) {
			add(full, 1)
			wait(2 * time.Second)
			for i := range 60 { // 15 s: excused up to stallExcuse after the stall, then counted
				add(layerInfo{Layer: "h", Reason: "bandwidth"}, 2+i)
			}
		},
		counted: 60 - int(stallExcuse/tick) - 1, excused: int(stallExcuse/tick) + 1,
	}, {
		name: "best on a lower layer while the hub sends no full layer",
		samples: func(add func(layerInfo, int), _ func(time.Duration)) {
			add(full, 10)
			for range 20 {
				add(layerInfo{Layer: "h", Reason: "best"}, 10)
			}
		},
	}, {
		name: "best on a lower layer while the hub sends its full layer",
		samples: func(add func(layerInfo, int), _ func(time.Duration)) {
			add(full, 10)
			for i := range 20 { // 5 s of frames: counted after bestGrace
				add(layerInfo{Layer: "h", Reason: "best"}, 11+i)
			}
		},
		counted: 20 - int(bestGrace/tick) + 1,
	}} {
		t.Run(c.name, func(t *testing.T) {
			w := &freeWatch{}
			w.start()
			now := time.Unix(1000, 0)
			c.samples(func(l layerInfo, hubFull int) {
				v := inboundStat{FrameWidth: 1280}
				w.add(now, v, l, hubFull)
				now = now.Add(tick)
			}, func(d time.Duration) { now = now.Add(d) })
			counted, excused, _ := w.heldBack()
			if counted != c.counted || excused != c.excused {
				t.Errorf("counted %d, excused %d; want %d and %d (%v)", counted, excused, c.counted, c.excused, w)
			}
		})
	}
}
