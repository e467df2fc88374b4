package sfu

import (
	"fmt"
	"testing"
)

// Chromium's 720p simulcast, roughly: q 150 kbps, h 500 kbps, f 2.5 Mbps.
var hub3 = [MaxLayers]int{150_000, 500_000, 2_500_000}

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name   string
		budget int
		tracks []allocTrack
		want   []int
	}{
		{"fibre: the full layer", 10_000_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer}}, []int{LayerHigh}},
		{"600 kbit: the middle layer fits with headroom", 600_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer}}, []int{LayerMid}},
		{"550 kbit: not enough headroom to move up to h from q", 550_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerLow}}, []int{LayerLow}},
		{"350 kbit: h is kept while 60% of it is covered", 350_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerMid}}, []int{LayerMid}},
		{"350 kbit, h losing packets: h must fit whole, down to q", 350_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerMid, lossy: true}}, []int{LayerLow}},
		{"520 kbit, h losing packets: h still fits whole", 520_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerMid, lossy: true}}, []int{LayerMid}},
		{"250 kbit: h no longer covered, down to q", 250_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerMid}}, []int{LayerLow}},
		{"80 kbit: paused", 80_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerLow}}, []int{noLayer}},
		{"pinned at h on fibre", 10_000_000,
			[]allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerMid, cur: noLayer}}, []int{LayerMid}},
		{"policy caps the wall at q", 10_000_000,
			[]allocTrack{{rates: hub3, policy: LayerLow, pin: LayerHigh, cur: noLayer}}, []int{LayerLow}},
		{"f not sent: h is the best", 10_000_000,
			[]allocTrack{{rates: [MaxLayers]int{150_000, 500_000, 0}, policy: LayerHigh, pin: LayerHigh, cur: LayerHigh}}, []int{LayerMid}},
		{"only f sent, cap q: the lowest sent still shows", 10_000_000,
			[]allocTrack{{rates: [MaxLayers]int{0, 0, 2_500_000}, policy: LayerLow, pin: LayerHigh, cur: noLayer}}, []int{LayerHigh}},
		{"publisher sends nothing: keep", 10_000_000,
			[]allocTrack{{policy: LayerHigh, pin: LayerHigh, cur: LayerMid}}, []int{LayerMid}},
		{"two tracks: the first is served first", 800_000, []allocTrack{
			{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer},
			{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer},
		}, []int{LayerMid, LayerLow}},
		{"two tracks, room for one: the second pauses", 200_000, []allocTrack{
			{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer},
			{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer},
		}, []int{LayerLow, noLayer}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := make([]int, len(c.tracks))
			plan(c.budget, c.tracks, out)
			if fmt.Sprint(out) != fmt.Sprint(c.want) {
				t.Errorf("plan(%d) = %v, want %v", c.budget, out, c.want)
			}
		})
	}
}

func TestStepUp(t *testing.T) {
	for _, c := range []struct {
		name   string
		tracks []allocTrack
		want   []int
		ok     bool
	}{
		{"paused to q", []allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: noLayer}}, []int{LayerLow}, true},
		{"q to h, one step at a time", []allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerLow}}, []int{LayerMid}, true},
		{"h to f", []allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerMid}}, []int{LayerHigh}, true},
		{"h skips an unsent layer to none", []allocTrack{{rates: [MaxLayers]int{150_000, 500_000, 0}, policy: LayerHigh, pin: LayerHigh, cur: LayerMid}}, []int{LayerMid}, false},
		{"at the pin: nothing to do", []allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerMid, cur: LayerMid}}, []int{LayerMid}, false},
		{"at the best: nothing to do", []allocTrack{{rates: hub3, policy: LayerHigh, pin: LayerHigh, cur: LayerHigh}}, []int{LayerHigh}, false},
		{"the wall: many paused rooms resume together", []allocTrack{
			{rates: hub3, policy: LayerLow, pin: LayerHigh, cur: noLayer},
			{rates: hub3, policy: LayerLow, pin: LayerHigh, cur: noLayer},
			{rates: hub3, policy: LayerLow, pin: LayerHigh, cur: LayerLow},
		}, []int{LayerLow, LayerLow, LayerLow}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := make([]int, len(c.tracks))
			ok := stepUp(c.tracks, out)
			if ok != c.ok || fmt.Sprint(out) != fmt.Sprint(c.want) {
				t.Errorf("stepUp = %v %v, want %v %v", out, ok, c.want, c.ok)
			}
		})
	}
}

func TestReason(t *testing.T) {
	for _, c := range []struct {
		t     allocTrack
		layer int
		want  string
	}{
		{allocTrack{rates: hub3, policy: LayerHigh, pin: LayerHigh}, LayerHigh, ReasonBest},
		{allocTrack{rates: hub3, policy: LayerHigh, pin: LayerHigh}, LayerMid, ReasonBandwidth},
		{allocTrack{rates: hub3, policy: LayerHigh, pin: LayerHigh}, noLayer, ReasonPaused},
		{allocTrack{rates: hub3, policy: LayerHigh, pin: LayerMid}, LayerMid, ReasonPinned},
		{allocTrack{rates: hub3, policy: LayerHigh, pin: LayerMid}, LayerLow, ReasonBandwidth},
		{allocTrack{rates: hub3, policy: LayerLow, pin: LayerHigh}, LayerLow, ReasonLimit},
		{allocTrack{rates: [MaxLayers]int{150_000, 500_000, 0}, policy: LayerHigh, pin: LayerHigh}, LayerMid, ReasonBest},
	} {
		if got := reason(&c.t, c.layer); got != c.want {
			t.Errorf("reason(%+v, %d) = %q, want %q", c.t, c.layer, got, c.want)
		}
	}
}
