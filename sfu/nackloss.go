package sfu

import "time"

// The subscriber's NACKs are its fastest word on loss. A receiver report
// comes about once a second and covers the whole second; GCC reads
// congestion from the transport-wide feedback's delays, and took from
// 155 ms to a second after a room's link was limited to say so, a second
// in which the room's picture froze. Chromium asks for a missing packet
// again as soon as the next one arrives, so when a link's queue
// overflows, NACKs for a large share of what is sent come within a round
// trip of the first drop.
//
// Only the first NACK of a packet of the picture being shown counts
// (DownTrack.freshNACKs): a packet asked for again, or one of a layer the
// room has left, says nothing about the layer now sent.

// Tuning of the NACK loss signal.
const (
	// nackWindow is how far back the share of packets asked for again is
	// measured: short, because the signal matters in the first half
	// second of an overflow; the loss then climbs from nothing to most of
	// what is sent.
	nackWindow = 250 * time.Millisecond
	// nackMinPackets is how many packets the window must have sent for a
	// verdict: at 5% random loss, 30 packets show 25% lost about once in
	// 10^4 windows. It also keeps the signal to streams of over about a
	// megabit per second (120 packets a second), where the freeze of an
	// overflowing link is long; the small layers are left to the receiver
	// reports and GCC, as before.
	nackMinPackets = 30
	// nackHeavy is the share asked for again that counts as heavy loss.
	nackHeavy = 0.25
	// nackSampleGap spaces the window's samples.
	nackSampleGap = 25 * time.Millisecond
)

// nackSamples holds the window's history: enough samples for nackWindow
// and then some at nackSampleGap.
const nackSamples = 32

// nackLoss measures the share of one down track's packets its subscriber
// asks for again. It belongs to the goroutine reading the track's RTCP.
type nackLoss struct {
	ring [nackSamples]struct {
		at           int64
		sent, nacked uint64
	}
	n int // samples taken
}

// add records the down track's cumulative packets sent and fresh NACKs at
// now (monotonic ns), and returns the share of the packets sent over the
// last nackWindow that were asked for again, with ok false while the
// window holds fewer than nackMinPackets or its history does not reach
// back that far.
func (w *nackLoss) add(now int64, sent, nacked uint64) (share float64, ok bool) {
	if w.n == 0 || now-w.ring[(w.n-1)%nackSamples].at >= int64(nackSampleGap) {
		s := &w.ring[w.n%nackSamples]
		s.at, s.sent, s.nacked = now, sent, nacked
		w.n++
	}
	// The newest sample at least nackWindow old, if the ring still has it.
	for i := w.n - 1; i >= 0 && i > w.n-1-nackSamples; i-- {
		s := &w.ring[i%nackSamples]
		if now-s.at < int64(nackWindow) {
			continue
		}
		if now-s.at > 2*int64(nackWindow) {
			return 0, false // no sample in between: the reads were apart
		}
		if sent-s.sent < nackMinPackets {
			return 0, false
		}
		return float64(nacked-s.nacked) / float64(sent-s.sent), true
	}
	return 0, false
}

// onNACKLoss applies a share of the packets of a down track asked for
// again over nackWindow. Over nackHeavy it is heavy loss, as a receiver
// report of over 10% is (onReceiverReport), and caps the estimate at what
// the link delivered of what was sent: the loss of an overflowing queue
// is what the link could not carry. It reports whether the loss was heavy.
func (p *Peer) onNACKLoss(d *DownTrack, share float64) bool {
	as := &p.as
	now := p.router.sfu.clock()
	if share <= nackHeavy || now < as.outageEnd.Load() {
		return false
	}
	first := now-as.heavyLossAt.Load() > int64(congestionWindow)
	delivered := int(float64(as.sentBits.Load()) * (1 - share))
	p.heavyLoss(now, delivered)
	if first {
		p.log.Info("heavy loss from NACKs", "track", d.id, "share", share, "cap", max(delivered, minEstimate))
	}
	return true
}
