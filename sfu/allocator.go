package sfu

import "time"

// The allocator decides, for each subscriber, which simulcast layer of each
// video track it receives, from the subscriber's bandwidth estimate and the
// bitrates the publishers' layers actually have. Audio is served first and
// never paused. The rules:
//
//   - Down at once: when the estimate no longer covers a layer, the track
//     drops to the highest layer that fits; it pauses when not even the
//     lowest fits for pauseHold.
//   - Up slowly and only with proof: after the allocation and the estimate
//     have been quiet for allocHold, the allocator probes the link with
//     padding at the rate the next step needs; only if the estimator sees
//     no congestion during the probe does the step happen. A failed probe
//     backs off (doubling, up to maxProbeBackoff).
//   - A layer is a step up only when it fits with upHeadroom to spare; the
//     layer being received is kept while the estimate covers keepFraction
//     of it, so one noisy estimate does not make a room flap; but not while
//     the subscriber reports heavy loss (lossyKeep): then it must fit. GCC
//     answers any overuse signal by dropping to 85% of the rate received,
//     and a sender held back by its layers is always "received" at less
//     than its link carries: a busy terminal's jitter alone would otherwise
//     ratchet it down a layer at a time. Real congestion (a link smaller than the
//     layer) drops the estimate far below 60% within a second.

// Allocation tuning.
const (
	upHeadroom   = 1.15 // a layer must fit with 15% to spare before moving up to it
	keepFraction = 0.60 // the current layer stays while the estimate covers 60% of it
	// drainFraction: a move down on congestion goes to the layers that fit
	// in this share of the estimate. The link's queue is full of the layer
	// that overflowed it and must drain (at 65%, 300 ms of queue drains in
	// about half a second), and GCC's first figure lags the fall: it is
	// 85% of what arrived over a window that still holds the time before
	// it. At 80%, a room on a 600 kbit link went from 1280x720 to 640x360
	// at GCC's first figure (740 kbit/s) and on to 320x180 at its second,
	// 670 ms later: two keyframe waits, a 0.84 s freeze.
	drainFraction = 0.65

	allocHold = 3 * time.Second // quiet time before trying to move up
	// lossMemory is how long a report of heavy loss (over 10%) lets the
	// allocator pause video: without one, delay alone never pauses it.
	lossMemory = 5 * time.Second
	// lossSettle: loss reported within this long of a layer change may
	// still be the previous layer's (above all after a move down: a queue
	// overflowing before the switch, and a receiver report covering up to a
	// second before it), so it does not count against the layer moved to.
	lossSettle = 1500 * time.Millisecond
	// lossyKeep: a report of heavy loss (over 10%) withdraws the keep
	// allowance of the layers being received for this long: each must then
	// fit the estimate whole. Also right after a move down, when the loss
	// may still be the larger layer's: a link that just overflowed is no
	// place to give a layer the benefit of the doubt. Seen: a room kept at
	// 640x360 on a 600 kbit link for 8 s, losing 23-50% of it, because its
	// estimate (about 450 kbit) still covered 60% of the layer; and, with
	// the loss of the first 1.5 s after the move not counted, 2 s at
	// 3-9 frames/s before moving on to 320x180.
	lossyKeep = 2 * time.Second
	// blindResume: a paused track comes back at its lowest layer after
	// this long without heavy loss, even if no probe vouched for it.
	blindResume = 8 * time.Second
	// outageGap: no RTCP at all from a subscriber for this long means its
	// line was down; for outageReports after it comes back, its loss
	// reports (which count the outage) do not cap the estimate.
	outageGap       = 1500 * time.Millisecond
	outageReports   = 2500 * time.Millisecond
	pauseHold       = 2 * time.Second        // the estimate stays under the lowest layer this long before video pauses
	probeDuration   = 1 * time.Second        // how long a probe sends padding
	probeGrace      = 600 * time.Millisecond // feedback still arriving after a probe
	minProbeBackoff = 2 * time.Second
	maxProbeBackoff = 8 * time.Second
	// restoreMemory: a layer a pin or the publisher took away, and that
	// can be had again within this long, is given back without a probe
	// when the link has shown no congestion since. After longer, the link
	// is probed again.
	restoreMemory    = time.Minute
	nominalAudioRate = 48_000 // bits per second counted for audio before it is measured
)

// nominalRates are the bitrates assumed for layers not measured yet
// (Chromium's 720p simulcast: q, h, f).
var nominalRates = [MaxLayers]int{150_000, 500_000, 2_500_000}

// Reasons a subscriber receives the layer it does, as told to its page.
const (
	ReasonBest      = "best"      // the best layer the publisher sends
	ReasonBandwidth = "bandwidth" // a better layer is sent but does not fit the link
	ReasonPaused    = "paused"    // not even the lowest layer fits: video paused, audio goes on
	ReasonPinned    = "pinned"    // a technician capped this bridge's layer
	ReasonLimit     = "limit"     // the conference's policy caps it (the hub's wall gets small layers)
	ReasonHidden    = "hidden"    // the subscriber does not show it (LayerOff): nothing is sent
)

// allocTrack is what the allocator knows of one video down track.
type allocTrack struct {
	rates  [MaxLayers]int // bits per second of each upstream layer; 0 = not being sent
	policy int            // highest layer the subscription allows
	pin    int            // highest layer a technician allows
	cur    int            // layer allocated now; noLayer when paused or not started
	// lossy: the subscriber reported heavy loss (over 10%) within
	// lossyKeep, so the estimate must cover all of the layer to keep it.
	lossy bool
}

// cap is the highest layer the track may get.
func (t *allocTrack) cap() int { return min(t.policy, t.pin) }

// need is what layer l costs against the estimate, given the current one.
func (t *allocTrack) need(l int) int {
	r := t.rates[l]
	switch {
	case l > t.cur:
		return int(float64(r) * upHeadroom)
	case l == t.cur && !t.lossy:
		return int(float64(r) * keepFraction)
	}
	return r
}

// lowest is the lowest layer being sent that the track may get: the lowest
// sent layer at or under its cap, else the lowest sent at all (a cap below
// everything the publisher sends still shows something). ok is false when
// the publisher sends nothing.
func (t *allocTrack) lowest() (int, bool) {
	first := noLayer
	for l := 0; l < MaxLayers; l++ {
		if t.rates[l] > 0 {
			if first == noLayer {
				first = l
			}
			if l <= t.cap() {
				return l, true
			}
		}
	}
	return first, first != noLayer
}

// nextUp is the next layer above cur being sent and allowed, or noLayer.
func (t *allocTrack) nextUp() int {
	low, ok := t.lowest()
	if !ok {
		return noLayer
	}
	if t.cur == noLayer || t.cur < low {
		return low
	}
	for l := t.cur + 1; l <= t.cap() && l < MaxLayers; l++ {
		if t.rates[l] > 0 {
			return l
		}
	}
	return noLayer
}

// plan fills out with the layer each track gets within budget (bits per
// second left after audio). Tracks come in priority order. Every track first
// gets its lowest layer, in order, while the budget lasts; then each, in
// order, is raised as high as the rest of the budget allows. A track whose
// publisher sends nothing keeps its layer and costs nothing. It returns the
// budget used.
func plan(budget int, tracks []allocTrack, out []int) int {
	used := 0
	for i := range tracks {
		t := &tracks[i]
		out[i] = noLayer
		low, ok := t.lowest()
		if !ok {
			out[i] = t.cur
			continue
		}
		if c := t.need(low); used+c <= budget {
			out[i] = low
			used += c
		}
	}
	for i := range tracks {
		t := &tracks[i]
		if out[i] == noLayer || t.rates[max(out[i], 0)] == 0 {
			continue
		}
		for l := t.cap(); l > out[i]; l-- {
			if t.rates[l] == 0 {
				continue
			}
			if c := used - t.need(out[i]) + t.need(l); c <= budget {
				used = c
				out[i] = l
				break
			}
		}
	}
	return used
}

// cost is what an allocation costs against the estimate.
func cost(tracks []allocTrack, layers []int) int {
	c := 0
	for i := range tracks {
		if l := layers[i]; l != noLayer && tracks[i].rates[l] > 0 {
			c += tracks[i].need(l)
		}
	}
	return c
}

// stepUp fills out with the next step up from the current allocation: every
// track that can go higher goes one layer up, in priority order, as long as
// the step's cost stays within reach (twice what is sent now, or that plus
// stepReach, whichever is more); the first such track always goes. It
// returns false when no track can go higher.
func stepUp(tracks []allocTrack, out []int) bool {
	const stepReach = 3_000_000
	now := 0
	for i := range tracks {
		out[i] = tracks[i].cur
		if l := tracks[i].cur; l != noLayer && tracks[i].rates[l] > 0 {
			now += tracks[i].rates[l]
		}
	}
	reach := max(2*now, now+stepReach)
	stepped := false
	for i := range tracks {
		up := tracks[i].nextUp()
		if up == noLayer {
			continue
		}
		out[i] = up
		if stepped && cost(tracks, out) > reach {
			out[i] = tracks[i].cur
			continue
		}
		stepped = true
	}
	return stepped
}

// reason explains a track's planned layer to its subscriber.
func reason(t *allocTrack, layer int) string {
	if layer == noLayer {
		return ReasonPaused
	}
	best := noLayer
	for l := MaxLayers - 1; l >= 0; l-- {
		if t.rates[l] > 0 {
			best = l
			break
		}
	}
	switch {
	case layer >= best:
		return ReasonBest
	case layer >= t.pin && t.pin < t.policy:
		return ReasonPinned
	case layer >= t.policy:
		return ReasonLimit
	}
	return ReasonBandwidth
}

// grow returns s with length n, reusing its array when it is large enough.
func grow(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}
