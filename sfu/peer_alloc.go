package sfu

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"
)

// LayerEvent tells a subscriber which layer of a video track it now
// receives, and why.
type LayerEvent struct {
	Track     string // the down track's ID (the upstream track's)
	Publisher string // the publishing peer's ID
	Layer     int    // the layer chosen, -1 when paused
	Reason    string // ReasonBest, ReasonBandwidth, ReasonPaused, ReasonPinned, ReasonLimit
	Estimate  int    // the subscriber's bandwidth estimate, bits per second
}

// LayerListener is implemented by PeerListeners that want to hear of their
// subscriber's layer changes (the signaling session tells the page).
type LayerListener interface {
	OnLayer(LayerEvent)
}

// PeerOptions tune a new peer.
type PeerOptions struct {
	// StartBitrate is where the subscriber's bandwidth estimate starts
	// (default DefaultStartBitrate).
	StartBitrate int
	// Pinned, with Pin, caps every video layer the peer receives (a
	// technician's override).
	Pinned bool
	Pin    int
	// ClientOffers makes a WHEP peer: its subscribing connection is
	// negotiated once, by the client's offer (AnswerSubscriber).
	ClientOffers bool
}

// allocState is a subscriber's allocation state; guarded by Peer.allocMu.
type allocState struct {
	bwe          atomic.Pointer[cc.BandwidthEstimator]
	remb         atomic.Int64 // newest REMB value, bits per second
	rembAt       atomic.Int64 // when it came (monotonic ns), 0 never
	twccAt       atomic.Int64 // when transport-wide feedback last came
	lossCap      atomic.Int64 // cap from receiver-reported loss; 0 = none
	lossAt       atomic.Int64 // when a report last said 2% or more was lost
	heavyLossAt  atomic.Int64 // when a report last said over 10% was lost
	rtcpAt       atomic.Int64 // when the subscriber's last RTCP came
	outageEnd    atomic.Int64 // until then, loss reports describe an outage
	sentBits     atomic.Int64 // bits per second sent to the subscriber, all tracks
	rtxRate      atomic.Int64 // what retransmissions may add, bits per second (the estimate allocated to)
	congestedAt  atomic.Int64 // when GCC last lowered its target on overuse
	held         int          // the estimate as the allocator uses it (heldEstimate)
	dips         int          // estimate falls not taken: GCC saw no congestion
	lastDipLog   int64
	lastEstimate int
	lastDecrease int64 // when the estimate last went down
	lastFallLog  int64
	lastChange   int64 // when the allocation last changed
	// floor is the rate a successful probe vouched for, 0 = none. It holds
	// until the link shows congestion (the held estimate falls): GCC's own
	// target seldom climbs to what a room on a fast link receives (in its
	// increase state it stays under 1.5x what the feedback says arrived,
	// and a busy machine's feedback says less). A floor that expired after
	// 10 s moved rooms on fast links from 1280x720 to 640x360 until the
	// next probe, 5 s later.
	floor        int
	probing      bool
	probeEnd     int64 // when the probe's verdict is due
	probeStart   int64
	probeTarget  int
	probeStep    []int // the allocation to apply if the probe succeeds
	backoff      time.Duration
	backoffUntil int64
	tracks       []allocTrack
	downs        []*DownTrack
	plan, step   []int
	reason       string // the reason of the newest layer decision
	freed        int    // what tracks hidden since the last congestion carried, bits per second (hide.go)
}

// SetPin caps the layer of every video track this peer receives (a
// technician's override, for a bridge whose link is known to be poor);
// LayerHigh removes the cap.
func (p *Peer) SetPin(layer int) {
	p.pin.Store(int32(min(max(layer, LayerLow), LayerHigh)))
	p.allocate()
}

// Pin returns the technician's cap on this peer's layers.
func (p *Peer) Pin() int { return int(p.pin.Load()) }

// Estimate returns the subscriber's bandwidth estimate in bits per second:
// GCC's from transport-wide feedback, or the browser's REMB when it sends
// no such feedback, raised to what a recent successful probe vouched for.
func (p *Peer) Estimate() int {
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	return max(p.rawEstimate(p.router.sfu.clock()), p.as.floor)
}

// rawEstimate is the estimator's own figure: GCC's delay-based target,
// capped by what the subscriber's receiver reports say about loss (see
// onReceiverReport). GCC's own loss-based half is not used: it counts every
// transport-wide sequence number the browser's feedback does not confirm,
// and probe padding that the browser drops or acknowledges late then reads
// as heavy loss on a clean link.
func (p *Peer) rawEstimate(now int64) int {
	as := &p.as
	est := p.start
	switch e := as.bwe.Load(); {
	case p.usingREMB(now):
		est = int(as.remb.Load())
	case e != nil:
		est = (*e).GetTargetBitrate()
		if v, ok := (*e).GetStats()["delayTargetBitrate"].(int); ok && v > 0 {
			est = v
		}
	}
	if c := int(as.lossCap.Load()); c > 0 {
		est = min(est, c)
	}
	return est
}

// setEstimator takes the subscriber connection's GCC and listens to its
// target changes: a fall GCC decided on overuse (its rate controller in
// "decrease", or its detector saying "overuse") is congestion, and the
// layers are re-allocated at once rather than at the router's next tick:
// every quarter second a link that overflows keeps the layer it cannot
// carry is a quarter second more of the room's picture frozen.
func (p *Peer) setEstimator(e cc.BandwidthEstimator) {
	p.as.bwe.Store(&e)
	prev := atomic.Int64{}
	prev.Store(int64(p.start))
	e.OnTargetBitrateChange(func(rate int) { // GCC calls it on a goroutine of its own
		if int64(rate) >= prev.Swap(int64(rate)) {
			return
		}
		st := e.GetStats()
		if st["state"] == "decrease" || st["usage"] == "overuse" {
			p.as.congestedAt.Store(p.router.sfu.clock())
			p.allocate()
		}
	})
}

// congestionWindow is how long after a congestion signal (GCC's overuse,
// or a receiver report of heavy loss, over 10%) a fall of the estimate is
// taken as congestion. Lighter loss is not one: a radio link loses a few
// percent at random, and GCC's loss controller only holds its target
// between 2% and 10%. Taken as one, 5% random loss let GCC's delay target,
// which seldom climbs near what a fast link carries, move a room on a
// fast link from 1280x720 to 320x180 (TestLossRecovery, 1 run in 5).
const congestionWindow = time.Second

// heldEstimate is the estimate the allocator works with: rawEstimate, but
// it only falls when the link said so, that is within congestionWindow of
// GCC lowering its target on overuse or of a report of heavy loss. GCC
// also lowers its target without congestion: in its increase state it
// stays under 1.5x what the feedback says arrived, and the feedback's rate
// of a sender held back by its layers, or measured over a window a busy
// machine stretched, dips. Taken as congestion, such dips moved unlimited
// rooms off 1280x720 and failed their probes back up. allocMu is held.
func (p *Peer) heldEstimate(now int64) int {
	as := &p.as
	raw := p.rawEstimate(now)
	switch {
	case as.held == 0 || raw >= as.held || p.usingREMB(now): // a REMB is the browser's own verdict
		as.held = raw
	case now-as.congestedAt.Load() <= int64(congestionWindow) || now-as.heavyLossAt.Load() <= int64(congestionWindow):
		as.held = raw
	default:
		as.dips++
		if raw < as.held*8/10 && now-as.lastDipLog > int64(10*time.Second) {
			as.lastDipLog = now
			p.log.Info("estimate dip not taken: no congestion signal", "held", as.held, "gcc", raw, "dips", as.dips)
		}
	}
	return as.held
}

// resendTwice reports whether the subscriber's retransmissions go out
// twice (see DownTrack.sendAgain): yes, unless its link said it is
// congested within congestionWindow. Loss from a full queue is the
// congestion controller's business, and copies would only add to the
// queue. Random loss is not congestion, and there the copies cost what the
// retransmissions do: the loss rate times the media rate.
func (p *Peer) resendTwice(now int64) bool {
	return now-p.as.congestedAt.Load() > int64(congestionWindow)
}

// usingREMB reports whether the estimate comes from the browser's REMB: it
// sends REMB and no transport-wide feedback.
func (p *Peer) usingREMB(now int64) bool {
	rembAt, twccAt := p.as.rembAt.Load(), p.as.twccAt.Load()
	return rembAt != 0 && now-rembAt < int64(2*time.Second) && (twccAt == 0 || now-twccAt > int64(2*time.Second))
}

// onReceiverReport applies the subscriber's report of the media it lost
// (RFC 3550 fraction lost, per media stream): over 10% lost caps the
// estimate below what is being sent, as GCC's loss controller would; 2% or
// more holds the cap where it is. relaxLossCap lifts it once reports stop
// saying so. It reports whether the loss was heavy: the caller then
// re-allocates at once, as for GCC's overuse.
func (p *Peer) onReceiverReport(fraction float64) bool {
	as := &p.as
	if fraction < 0.02 || p.router.sfu.clock() < as.outageEnd.Load() {
		return false // little loss; or the loss of a line that was down, now back
	}
	as.lossAt.Store(p.router.sfu.clock())
	if fraction <= 0.10 {
		return false
	}
	sent := int(as.sentBits.Load())
	p.heavyLoss(p.router.sfu.clock(), int(float64(max(sent, minEstimate))*(1-0.5*fraction)))
	return true
}

// heavyLoss records heavy loss at now, a congestion signal (see
// heldEstimate) and loss like any other (lossAt), and lowers the loss cap
// to capBits if that is lower.
func (p *Peer) heavyLoss(now int64, capBits int) {
	as := &p.as
	as.lossAt.Store(now)
	as.heavyLossAt.Store(now)
	if c := int(as.lossCap.Load()); c == 0 || capBits < c {
		as.lossCap.Store(int64(max(capBits, minEstimate)))
	}
}

// relaxLossCap raises the loss cap 25% per second (GCC's loss controller:
// +5% every 200 ms) while no report has said 2% or more was lost for a
// second, until it no longer binds. It goes by time, not by report: a
// paused room's terminal reports only on its audio, every few seconds, and
// the cap must not keep the room paused after its link recovered.
func (p *Peer) relaxLossCap(now int64, elapsed time.Duration) {
	as := &p.as
	c := as.lossCap.Load()
	if c == 0 || now-as.lossAt.Load() < int64(time.Second) {
		return
	}
	next := int64(float64(c) * math.Pow(1.25, min(elapsed.Seconds(), 1)))
	if next > maxEstimate {
		next = 0
	}
	as.lossCap.Store(next)
}

// rtxBudget is what a subscriber's retransmissions may still send, in
// bits; see Peer.spendOnRetransmission.
type rtxBudget struct {
	mu     sync.Mutex
	tokens float64
	at     int64 // when tokens was last filled; 0 never
}

// rtxWindow is how much of the estimate the retransmission budget holds:
// retransmissions may burst to the estimate over this long, no further.
const rtxWindow = 500 * time.Millisecond

// spendOnRetransmission takes bits from the subscriber's retransmission
// budget, which fills at its bandwidth estimate and holds rtxWindow of it,
// as libwebrtc's retransmission rate limiter does. It reports false, and
// takes nothing, when the budget cannot pay. Without it, a link that
// overflows loses hundreds of packets a second, the subscriber asks for
// each of them again, every ~100 ms, and the answers overflow it further.
func (p *Peer) spendOnRetransmission(bits int, now int64) bool {
	rate := float64(p.as.rtxRate.Load())
	if rate == 0 {
		rate = float64(p.start) // before the first allocation
	}
	limit := rate * rtxWindow.Seconds()
	b := &p.rtx
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.at == 0 {
		b.tokens = limit
	} else {
		b.tokens = min(b.tokens+rate*float64(now-b.at)/1e9, limit)
	}
	b.at = now
	if b.tokens < float64(bits) {
		return false
	}
	b.tokens -= float64(bits)
	return true
}

// allocate re-decides the layer of every video track the peer receives.
// The router's loop calls it every LayerRefresh; subscribing, a new cap or
// a pin call it at once.
func (p *Peer) allocate() {
	p.tick(0)
}

// tick measures what the peer's down tracks sent in the last elapsed (0:
// no measurement) and re-allocates.
func (p *Peer) tick(elapsed time.Duration) {
	now := p.router.sfu.clock()
	p.allocMu.Lock()
	if elapsed > 0 {
		p.measureSent(elapsed)
		p.relaxLossCap(now, elapsed)
	}
	events := p.allocateLocked(now)
	for _, e := range events {
		if e.Reason != ReasonHidden {
			p.as.reason = e.Reason
		}
	}
	p.allocMu.Unlock()
	if ll, ok := p.l.(LayerListener); ok {
		for _, e := range events {
			ll.OnLayer(e)
		}
	}
}

func (p *Peer) allocateLocked(now int64) []LayerEvent {
	as := &p.as
	est := p.heldEstimate(now)
	if est < as.lastEstimate*95/100 {
		as.lastDecrease = now
		as.floor = 0 // congestion: whatever a probe vouched for no longer holds
		as.freed = 0 // nor what hidden tracks carried
		if est < as.lastEstimate*8/10 && now-as.lastFallLog > int64(5*time.Second) {
			as.lastFallLog = now
			args := []any{"from", as.lastEstimate, "to", est}
			if e := as.bwe.Load(); e != nil {
				for k, v := range (*e).GetStats() {
					args = append(args, k, v)
				}
			}
			p.log.Info("link estimate fell", args...)
		}
	}
	if est < as.lastEstimate*95/100 || est > as.lastEstimate {
		as.lastEstimate = est // small dips are not congestion; keep comparing with the level before them
	}
	effective := max(est, as.floor)
	as.rtxRate.Store(int64(effective))

	// Audio first.
	downs := p.DownTracks()
	sort.Slice(downs, func(i, j int) bool { return downs[i].id < downs[j].id })
	budget := effective
	as.tracks, as.downs = as.tracks[:0], as.downs[:0]
	pin := int(p.pin.Load())
	heavyAt := as.heavyLossAt.Load()
	var hidden []LayerEvent
	for _, d := range downs {
		if d.kind == webrtc.RTPCodecTypeAudio {
			if d.target.Load() == noLayer {
				d.setTarget(0)
			}
			budget -= d.track.layerRates()[0]
			continue
		}
		if e, ok := p.showOrHide(d, effective); ok {
			hidden = append(hidden, e)
		}
		if d.hidden.Load() {
			continue // costs nothing, takes no part in probes
		}
		as.downs = append(as.downs, d)
		as.tracks = append(as.tracks, allocTrack{
			rates: d.track.layerRates(), policy: int(d.maxLayer.Load()), pin: pin, cur: d.allocLayer,
			lossy: heavyAt != 0 && now-heavyAt <= int64(lossyKeep),
		})
	}
	n := len(as.tracks)
	if n == 0 {
		return hidden
	}
	as.plan = grow(as.plan, n)
	as.step = grow(as.step, n)
	// A track that may have back a layer a pin or its publisher took away
	// is planned as if it still had it (see mayRestore): keeping a layer
	// costs less of the estimate than moving up to it.
	for i, d := range as.downs {
		if p.mayRestore(d, &as.tracks[i], now) {
			as.tracks[i].cur = d.takenFrom
		}
	}
	plan(max(budget, 0), as.tracks, as.plan)
	for i, d := range as.downs {
		as.tracks[i].cur = d.allocLayer
	}
	if as.lastDecrease == now {
		// Congestion: the estimate lags a queue that is still full, so
		// anything that has to move down moves to what fits in
		// drainFraction of it, in one switch rather than one layer at a
		// time (each switch costs the room a keyframe wait).
		as.step = grow(as.step, n)
		plan(max(budget-int(float64(est)*(1-drainFraction)), 0), as.tracks, as.step)
		for i := range as.plan {
			if as.plan[i] < as.tracks[i].cur && as.step[i] < as.plan[i] && as.step[i] != noLayer {
				as.plan[i] = as.step[i]
			}
		}
	}

	// A probe's verdict: congestion-free while it ran, and feedback came.
	// Congestion is what heldEstimate takes as such (GCC's overuse or a
	// loss report): the delay dips of a busy machine no longer count, so a
	// probe needs no other allowance for them.
	stepOK := false
	if as.probing && now >= as.probeEnd {
		as.probing = false
		clean := as.lastDecrease < as.probeStart
		if clean && as.twccAt.Load() > as.probeStart {
			stepOK = true
			as.floor = as.probeTarget
			as.backoff = 0
			effective = max(effective, as.floor)
		} else {
			p.router.sfu.stats.failedProbes.Add(1)
			as.backoff = min(max(2*as.backoff, minProbeBackoff), maxProbeBackoff)
			as.backoffUntil = now + int64(as.backoff)
			p.log.Info("probe failed", "target", as.probeTarget, "estimate", est, "backoff", as.backoff)
		}
	}

	// Down (and a track's first allocation) at once; up only by a step
	// that a probe vouched for.
	changed := false
	var events []LayerEvent
	for i, d := range as.downs {
		t := &as.tracks[i]
		want := as.plan[i]
		first := d.allocReason == ""
		// Pausing takes the estimate staying under the lowest layer for
		// pauseHold: while a congested queue drains, GCC's estimate dips
		// far below what the link carries, and a room that can show the
		// small layer should not lose its picture to that dip.
		//
		// And it takes loss: a link that cannot carry the smallest picture
		// loses packets (its queue overflows). A delay-based estimate
		// alone falls to 85% of what is received whenever the path's delay
		// wobbles (a busy terminal, a busy server), and with only the
		// smallest layer flowing that would pause a room whose link is
		// fine.
		//
		// The loss must be the present layer's: loss reported just after
		// a move down (lossSettle) is the larger layer's overflow. Seen: a
		// room moved from 720p to 180p on a 600 kbit link paused for 4 s on
		// the loss of the switch itself.
		if want == noLayer && t.cur != noLayer && !first {
			if d.belowSince == 0 {
				d.belowSince = now
			}
			if now-d.belowSince < int64(pauseHold) || !p.lossOf(d, now) {
				if low, ok := t.lowest(); ok {
					want = min(low, t.cur)
				}
			}
		} else {
			d.belowSince = 0
		}
		if want == noLayer && first {
			// A new subscriber starts at the smallest layer even when the
			// estimate it starts with is below it: paused from the start
			// it would send nothing, its estimator would have nothing to
			// measure and collapse, and nothing would ever resume it
			// (seen with 116 WHEP viewers of a single 720p layer). If the
			// link really cannot carry it, its loss pauses it as below.
			if low, ok := t.lowest(); ok {
				want = low
			}
		}
		if want > t.cur && !first {
			if l, ok := p.resumeIntoFreed(t, want); ok {
				want = l
			} else {
				want = t.cur
			}
		}
		// A layer taken away by a technician's pin, or by the publisher
		// (a starved browser stops its top layer for a few seconds), not
		// by the link, is remembered. When it can be had again, the pin
		// lifted (at least partly) or the layer back, it is given back
		// as far as the estimate covers it (mayRestore), instead of by a
		// probe per layer after allocHold: about 9 s from q to f after a
		// pin, 5 s of 640x360 for a room on a fast link after the hub's
		// 720p layer came back.
		if t.cur != noLayer && d.takenFrom == noLayer && !first && (t.cur > t.pin && t.cur <= t.policy || t.rates[t.cur] == 0) {
			d.takenFrom, d.takenAt = t.cur, now
		}
		if l := d.takenFrom; l != noLayer {
			if p.mayRestore(d, t, now) {
				want = max(want, min(l, as.plan[i]))
			}
			if t.cap() >= l && t.rates[l] > 0 || now-d.takenAt > int64(restoreMemory) {
				d.takenFrom = noLayer
			}
		}
		if stepOK && i < len(as.probeStep) && as.probeStep[i] > want {
			if l := as.probeStep[i]; l <= t.cap() && t.rates[l] > 0 {
				want = l
			}
		}
		// A paused picture comes back on its own after blindResume without
		// heavy loss, probe or not: with only audio flowing, the
		// estimator has too little traffic to climb and probes on a busy
		// path can fail for long. If the link still cannot carry the
		// smallest layer, the loss it causes pauses it again.
		if want == noLayer && t.cur == noLayer && !first && d.pausedAt != 0 && now-d.pausedAt > int64(blindResume) {
			if at := as.heavyLossAt.Load(); at == 0 || now-at > int64(lossMemory) {
				if low, ok := t.lowest(); ok {
					want = low
					p.log.Info("video resumed without a probe", "track", d.id, "paused_for", time.Duration(now-d.pausedAt).Round(time.Second))
				}
			}
		}
		if want == noLayer && t.cur != noLayer {
			d.pausedAt = now
		}
		if want != t.cur {
			changed = true
			d.movedAt = now
			// Moving down because the link cannot carry the layer being
			// sent: stop it now rather than flood the link until the lower
			// layer's keyframe comes (a short freeze instead of a long one).
			drop := want < t.cur && t.cur != noLayer && t.rates[t.cur] > effective
			p.applyLayer(d, want, drop)
		}
		t.cur = want
		if r := reason(t, want); r != d.allocReason || want != d.allocLayer {
			d.allocReason = r
			events = append(events, LayerEvent{Track: d.id, Publisher: d.streamID, Layer: want, Reason: r, Estimate: effective})
		}
		d.allocLayer = want
	}
	if changed {
		as.lastChange = now
	}
	events = append(hidden, events...)

	// Try the next step up when things have been quiet.
	quiet := max(as.lastDecrease, as.lastChange)
	if !as.probing && now-quiet >= int64(allocHold) && now >= as.backoffUntil && stepUp(as.tracks, as.step) {
		target := cost(as.tracks, as.step) + (effective - budget) // audio rides along
		if p.startProbe(now, target) {
			as.probeStep = append(as.probeStep[:0], as.step...)
		} else if target <= effective {
			// No way to probe (no RTX towards this subscriber): trust the
			// estimate alone.
			for i, d := range as.downs {
				t := &as.tracks[i]
				if l := as.step[i]; l != t.cur {
					p.applyLayer(d, l, false)
					t.cur, d.allocLayer, d.allocReason, d.movedAt = l, l, reason(t, l), now
					events = append(events, LayerEvent{Track: d.id, Publisher: d.streamID, Layer: l, Reason: d.allocReason, Estimate: effective})
				}
			}
			as.lastChange = now
		}
	}
	return events
}

// lossOf reports whether the subscriber reported heavy loss (over 10%)
// within lossMemory, of the layer d receives now: not within lossSettle
// of d's last move, when the loss may still be the previous layer's.
// allocMu is held.
func (p *Peer) lossOf(d *DownTrack, now int64) bool {
	at := p.as.heavyLossAt.Load()
	return at != 0 && now-at <= int64(lossMemory) && at-d.movedAt >= int64(lossSettle)
}

// mayRestore says whether d, lowered by a technician's pin or by its
// publisher, may go back towards the layer taken away without a probe: a
// layer above the present one, up to that, can be had again (the pin
// lifted, the layer sent again), the link carried the layer taken away
// until then, and it has shown no congestion since. Only for
// restoreMemory: after longer, the link is probed as for any step up.
func (p *Peer) mayRestore(d *DownTrack, t *allocTrack, now int64) bool {
	if d.takenFrom <= t.cur || t.cur == noLayer || p.as.lastDecrease >= d.takenAt || now-d.takenAt > int64(restoreMemory) {
		return false
	}
	for l := t.cur + 1; l <= min(d.takenFrom, t.cap()); l++ {
		if t.rates[l] > 0 {
			return true
		}
	}
	return false
}

// applyLayer moves d to layer l, or pauses it. With drop, the layer being
// forwarded stops at once instead of at the new layer's keyframe.
func (p *Peer) applyLayer(d *DownTrack, l int, drop bool) {
	p.router.sfu.stats.layerSwitches.Add(1)
	if l == noLayer {
		d.paused.Store(true)
		d.pause()
		p.log.Info("video paused", "track", d.id, "estimate", p.as.lastEstimate)
		return
	}
	d.paused.Store(false)
	if drop {
		d.pause()
	}
	d.setTarget(l)
	p.log.Debug("layer", "track", d.id, "layer", l, "estimate", p.as.lastEstimate, "dropped_old", drop)
}

// startProbe sends padding so that, with what is being sent already, the
// subscriber's link carries target bits per second for probeDuration. It
// returns false when no down track can carry padding.
func (p *Peer) startProbe(now int64, target int) bool {
	as := &p.as
	var carrier *DownTrack
	for _, d := range as.downs {
		d.mu.Lock()
		ok := d.rtxSSRC != 0 && d.writer != nil && d.started
		d.mu.Unlock()
		if ok {
			carrier = d
			break
		}
	}
	if carrier == nil {
		return false
	}
	sending := 0
	for _, d := range p.DownTracks() {
		sending += d.rateBits
	}
	extra := target - sending
	if extra <= 0 {
		extra = target / 10 // already sending that much: a short confirmation
	}
	as.probing = true
	as.probeStart = now
	as.probeEnd = now + int64(probeDuration+probeGrace)
	as.probeTarget = target
	p.router.sfu.stats.probes.Add(1)
	p.log.Info("probe", "target", target, "padding", extra, "estimate", p.as.lastEstimate)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pad(carrier, extra, probeDuration)
	}()
	return true
}

// pad sends rate bits per second of padding on d for dur, in 10 ms bursts.
func (p *Peer) pad(d *DownTrack, rate int, dur time.Duration) {
	const tick = 10 * time.Millisecond
	perTick := float64(rate) * tick.Seconds() / 8 / float64(12+paddingSize)
	t := time.NewTicker(tick)
	defer t.Stop()
	end := time.Now().Add(dur)
	owed := 0.0
	for now := range t.C {
		if now.After(end) {
			return
		}
		select {
		case <-p.done:
			return
		default:
		}
		owed += perTick
		if n := int(owed); n > 0 {
			owed -= float64(n)
			if d.writePadding(n) == 0 {
				return
			}
		}
	}
}

// measureSent updates the bitrate each down track sends (the router's loop
// calls it with the time since the last call).
func (p *Peer) measureSent(elapsed time.Duration) {
	if elapsed <= 0 {
		return
	}
	total := 0
	for _, d := range p.DownTracks() {
		b := d.bytes.Load()
		d.rateBits = int(float64(b-d.allocSent) * 8 / elapsed.Seconds())
		d.allocSent = b
		total += d.rateBits
	}
	p.as.sentBits.Store(int64(total))
}
