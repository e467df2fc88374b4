package sfu

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// PC names one of a peer's two peer connections. The publishing one carries
// media from the participant (the participant offers); the subscribing one
// carries media to it (the SFU offers). Two connections mean offers never
// cross: each direction has one offerer.
type PC int

const (
	// Publish is the connection the participant sends its media on.
	Publish PC = iota
	// Subscribe is the connection the SFU sends media to the participant on.
	Subscribe
)

func (pc PC) String() string {
	if pc == Subscribe {
		return "sub"
	}
	return "pub"
}

// PeerListener receives what a peer must tell its participant. Calls come
// from pion's goroutines and must not block.
type PeerListener interface {
	// OnOffer carries an offer for the subscribing connection.
	OnOffer(sdp string)
	// OnCandidate carries one of the SFU's ICE candidates.
	OnCandidate(pc PC, c webrtc.ICECandidateInit)
	// OnConnectionState reports a connection's state changes.
	OnConnectionState(pc PC, s webrtc.PeerConnectionState)
}

// Errors returned by a peer.
var (
	// ErrUnexpectedAnswer: an answer arrived while no offer was outstanding.
	ErrUnexpectedAnswer = errors.New("sfu: answer without an outstanding offer")
	// ErrNotOffer: AcceptOffer was given an SDP that does not parse as an offer.
	ErrNotOffer = errors.New("sfu: not a valid offer")
	// ErrOfferTooLarge: the offer is over MaxOfferBytes or has more than
	// MaxMediaSections media sections.
	ErrOfferTooLarge = errors.New("sfu: offer too large")
)

// negotiationDelay gathers track changes that come together (a hub joining
// a conference of 116 rooms) into one offer.
const negotiationDelay = 30 * time.Millisecond

// Peer is one participant in a router.
type Peer struct {
	id     string
	router *Router
	log    *slog.Logger
	l      PeerListener
	// pub is the publishing connection. It is replaced, once, only when the
	// participant's first offer is refused (see AcceptOffer): a refused
	// offer leaves pion's connection half-applied.
	pub     atomic.Pointer[webrtc.PeerConnection]
	sub     *webrtc.PeerConnection
	offerMu sync.Mutex // one offer at a time on the publishing connection

	mu        sync.Mutex
	tracks    map[string]*Track // published, by the publisher's track ID
	downs     map[*DownTrack]*webrtc.RTPSender
	nextTrack int
	offering  bool        // an offer is out, its answer not yet in
	offers    int         // offers sent so far: tells an overdue offer from the next
	overdue   *time.Timer // fires when the offer out has waited AnswerTimeout
	// spareAnswers: copies of the offer out made again (resendLocked),
	// whose answers may still come after the first answer was taken.
	spareAnswers int
	renegotiate  bool // something changed since the last offer
	iceRestart   bool // the next offer restarts ICE
	timer        *time.Timer
	closed       bool
	wg           sync.WaitGroup
	done         chan struct{} // closed by Close

	// clientOffers: a WHEP client negotiates the subscribing connection
	// by its own offer (AnswerSubscriber); the SFU never offers.
	clientOffers bool

	start   int          // where the bandwidth estimate starts
	pin     atomic.Int32 // a technician's cap on received layers
	allocMu sync.Mutex
	as      allocState
	rtx     rtxBudget
	link    peerLink
}

func newPeer(r *Router, id string, l PeerListener, opts PeerOptions) (*Peer, error) {
	p := &Peer{
		id:     id,
		router: r,
		log:    r.log.With("bridge", id),
		l:      l,
		tracks: map[string]*Track{},
		downs:  map[*DownTrack]*webrtc.RTPSender{},
		done:   make(chan struct{}),
		start:  opts.StartBitrate,

		clientOffers: opts.ClientOffers,
	}
	if p.start <= 0 {
		p.start = DefaultStartBitrate
	}
	p.pin.Store(LayerHigh)
	if opts.Pinned {
		p.pin.Store(int32(min(max(opts.Pin, LayerLow), LayerHigh)))
	}
	se := r.sfu.se
	se.LoggerFactory = slogFactory{p.log}
	subIR, err := subscribeInterceptors(p.start, p.setEstimator)
	if err != nil {
		return nil, err
	}
	pub, err := p.newPub()
	if err != nil {
		return nil, err
	}
	p.pub.Store(pub)
	if p.sub, err = r.sfu.subKit.api(se, subIR).NewPeerConnection(webrtc.Configuration{}); err != nil {
		_ = pub.Close()
		return nil, err
	}
	p.listen(Subscribe, p.sub)
	r.sfu.stats.peers.Add(1)
	return p, nil
}

// ID is the peer's identifier in its router.
func (p *Peer) ID() string { return p.id }

// Tracks returns the tracks the peer publishes.
func (p *Peer) Tracks() []*Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Track, 0, len(p.tracks))
	for _, t := range p.tracks {
		out = append(out, t)
	}
	return out
}

// DownTracks returns the peer's subscriptions.
func (p *Peer) DownTracks() []*DownTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*DownTrack, 0, len(p.downs))
	for d := range p.downs {
		out = append(out, d)
	}
	return out
}

// ConnectionState returns the state of one of the peer's connections.
func (p *Peer) ConnectionState(pc PC) webrtc.PeerConnectionState {
	if pc == Subscribe {
		return p.sub.ConnectionState()
	}
	return p.pubPC().ConnectionState()
}

// AcceptAnswer applies the participant's answer to the SFU's last offer on
// the subscribing connection, and sends the next offer if tracks changed
// meanwhile.
func (p *Peer) AcceptAnswer(sdp string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.offering {
		if p.spareAnswers > 0 { // an answer to a copy of the offer already answered
			p.spareAnswers--
			return nil
		}
		return ErrUnexpectedAnswer
	}
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return err
	}
	p.offering = false
	p.stopOverdueLocked()
	if p.renegotiate {
		p.scheduleOfferLocked()
	}
	return nil
}

// AddCandidate adds one of the participant's ICE candidates.
func (p *Peer) AddCandidate(pc PC, c webrtc.ICECandidateInit) error {
	if pc == Subscribe {
		return p.sub.AddICECandidate(c)
	}
	return p.pubPC().AddICECandidate(c)
}

// Subscribe sends track t to this peer, at most at layer maxLayer. It is a
// no-op returning the existing down track if the peer already has t.
func (p *Peer) Subscribe(t *Track, maxLayer int) (*DownTrack, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	for d := range p.downs {
		if d.track == t {
			p.mu.Unlock()
			return d, nil
		}
	}
	d := newDownTrack(t, p, t.id, maxLayer)
	sender, err := p.sub.AddTrack(d)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	for _, tr := range p.sub.GetTransceivers() {
		if tr.Sender() == sender {
			if err := tr.SetCodecPreferences(subscriberCodecs(t.codec)); err != nil {
				p.log.Warn("codec preferences", "track", t.id, "err", err)
			}
		}
	}
	p.downs[d] = sender
	p.router.sfu.stats.downTracks.Add(1)
	p.wg.Add(1)
	go p.readSenderRTCP(sender, d)
	p.scheduleOfferLocked()
	p.mu.Unlock()

	if !t.addDown(d) { // the publisher left meanwhile
		p.Unsubscribe(d)
		return nil, ErrClosed
	}
	if d.kind == webrtc.RTPCodecTypeAudio {
		d.setTarget(0)
	} else {
		p.allocate()
	}
	return d, nil
}

// Unsubscribe stops sending d's track to this peer.
func (p *Peer) Unsubscribe(d *DownTrack) {
	d.track.removeDown(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	sender, ok := p.downs[d]
	if !ok {
		return
	}
	delete(p.downs, d)
	p.router.sfu.stats.downTracks.Add(-1)
	if p.closed {
		return
	}
	if err := p.sub.RemoveTrack(sender); err != nil {
		p.log.Debug("remove track", "track", d.id, "err", err)
	}
	p.scheduleOfferLocked()
}

// scheduleOfferLocked arranges for an offer on the subscribing connection
// shortly, unless one is out already (then it follows the answer).
func (p *Peer) scheduleOfferLocked() {
	p.renegotiate = true
	if p.clientOffers {
		return // what the client's offer negotiated is all it gets
	}
	if p.offering || p.timer != nil || p.closed {
		return
	}
	p.timer = time.AfterFunc(negotiationDelay, p.sendOffer)
}

func (p *Peer) sendOffer() {
	p.mu.Lock()
	p.timer = nil
	if p.offering || p.closed || !p.renegotiate {
		p.mu.Unlock()
		return
	}
	p.renegotiate = false
	var opts *webrtc.OfferOptions
	if p.iceRestart {
		opts, p.iceRestart = &webrtc.OfferOptions{ICERestart: true}, false
	}
	offer, err := p.sub.CreateOffer(opts)
	if err == nil {
		err = p.sub.SetLocalDescription(offer)
	}
	if err != nil {
		p.mu.Unlock()
		p.log.Error("subscriber offer", "err", err)
		return
	}
	p.offering = true
	p.offers++
	p.spareAnswers = 0
	p.armOverdueLocked()
	sdp := p.sub.LocalDescription().SDP
	p.mu.Unlock()
	p.l.OnOffer(sdp)
}

// RestartICE offers the subscribing connection again with new ICE
// credentials (the participant's network changed or stalled); the
// publishing side restarts by the participant's own offer. With an offer
// out, that offer is made again and the restart follows its answer.
func (p *Peer) RestartICE() {
	p.mu.Lock()
	p.iceRestart = true
	p.mu.Unlock()
	p.RestartOffer()
}

// ResendOffer makes the outstanding offer again, if there is one: the
// participant may never have seen it (its signaling went away and came
// back). Otherwise it does nothing.
func (p *Peer) ResendOffer() {
	p.mu.Lock()
	sdp := ""
	if p.offering && !p.closed {
		sdp = p.resendLocked()
	}
	p.mu.Unlock()
	if sdp != "" {
		p.l.OnOffer(sdp)
	}
}

// RestartOffer arranges a fresh offer: at once when none is out; when one
// is, that one is made again (the participant may have lost it) and the
// fresh one follows its answer. pion cannot roll back a local offer, so
// an outstanding offer is never replaced, only repeated.
func (p *Peer) RestartOffer() {
	p.mu.Lock()
	sdp := ""
	switch {
	case p.closed:
	case p.offering:
		p.renegotiate = true
		sdp = p.resendLocked()
	default:
		p.scheduleOfferLocked()
	}
	p.mu.Unlock()
	if sdp != "" {
		p.l.OnOffer(sdp)
	}
}

// resendLocked returns the outstanding offer to be sent again, and gives it
// a new answer deadline. The participant may answer both copies: the
// answer to the one it had already answered is then not an error
// (AcceptAnswer).
func (p *Peer) resendLocked() string {
	ld := p.sub.LocalDescription() // the offer out: its local description is still pending
	if ld == nil {
		return ""
	}
	p.spareAnswers++
	p.armOverdueLocked()
	return ld.SDP
}

// armOverdueLocked (re)starts the answer deadline of the offer out.
func (p *Peer) armOverdueLocked() {
	p.stopOverdueLocked()
	n := p.offers
	p.overdue = time.AfterFunc(p.router.sfu.cfg.AnswerTimeout, func() { p.offerOverdue(n) })
}

// offerOverdue makes offer n again if it is still unanswered: the
// participant lost it or failed to answer it, and would otherwise never
// get the tracks it carries, nor any after them.
func (p *Peer) offerOverdue(n int) {
	p.mu.Lock()
	sdp := ""
	if !p.closed && p.offering && p.offers == n {
		p.log.Warn("subscriber offer unanswered; offering it again", "waited", p.router.sfu.cfg.AnswerTimeout)
		p.router.sfu.stats.offersRepeated.Add(1)
		sdp = p.resendLocked()
	}
	p.mu.Unlock()
	if sdp != "" {
		p.l.OnOffer(sdp)
	}
}

func (p *Peer) stopOverdueLocked() {
	if p.overdue != nil {
		p.overdue.Stop()
		p.overdue = nil
	}
}

// maxRTCPFailures is how many RTCP reads in a row may fail before a
// reader gives up: a closed stream fails every time.
const maxRTCPFailures = 50

// readSenderRTCP reads the subscriber's RTCP for d: keyframe requests
// become (throttled) requests upstream, NACKs are answered from the packet
// cache, REMB and transport-wide feedback feed the allocator.
func (p *Peer) readSenderRTCP(sender *webrtc.RTPSender, d *DownTrack) {
	defer p.wg.Done()
	// Not sender.ReadRTCP: that allocates a buffer for every packet and
	// parses it again after the congestion controller has. Its parse is
	// kept in the attributes the interceptors return.
	buf := make([]byte, receiveMTU)
	failures := 0
	var nl nackLoss
	for {
		n, attrs, err := sender.Read(buf)
		var pkts []rtcp.Packet
		if err == nil {
			pkts, err = attrs.GetRTCPPackets(buf[:n]) // parses when attrs holds no parse (or is nil)
		}
		if err != nil {
			// Closed: done. Otherwise a packet the interceptors refused
			// (transport-wide feedback the congestion controller cannot
			// match, say): skip it, unless nothing but errors comes.
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return
			}
			if failures++; failures > maxRTCPFailures {
				p.log.Warn("subscriber RTCP unreadable, no longer read", "track", d.id, "err", err)
				return
			}
			p.log.Debug("subscriber RTCP skipped", "track", d.id, "err", err)
			continue
		}
		failures = 0
		now := p.router.sfu.clock()
		// Feedback after a silence: the subscriber's line was down (its
		// terminal sends RTCP every second and transport-wide feedback
		// every 100 ms while media flows). The loss its next reports count
		// is the outage's, not congestion: see onReceiverReport.
		if prev := p.as.rtcpAt.Swap(now); prev != 0 && now-prev > int64(outageGap) {
			p.as.outageEnd.Store(now + int64(outageReports))
			p.log.Info("subscriber feedback back after a silence", "silent", time.Duration(now-prev).Round(time.Millisecond))
		}
		heavy := false
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.link.plis.Add(1)
				d.track.requestKeyframe(d.Layer())
			case *rtcp.TransportLayerNack:
				p.link.nacks.Add(1)
				twice := p.resendTwice(now)
				for _, pair := range pkt.Nacks {
					pair.Range(func(seq uint16) bool {
						if d.retransmit(seq, now, twice) {
							p.router.sfu.stats.retransmitted.Add(1)
						}
						return true
					})
				}
			case *rtcp.TransportLayerCC:
				p.as.twccAt.Store(now)
			case *rtcp.ReceiverReport:
				for _, r := range pkt.Reports {
					if r.SSRC == d.ssrc32() {
						heavy = p.onReceiverReport(float64(r.FractionLost)/256) || heavy
						p.link.onReport(d, r, now, time.Now())
					}
				}
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				p.as.remb.Store(int64(pkt.Bitrate))
				p.as.rembAt.Store(now)
			}
		}
		if share, ok := nl.add(now, d.packets.Load(), d.freshNACKs.Load()); ok {
			heavy = p.onNACKLoss(d, share) || heavy
		}
		if heavy {
			p.allocate() // heavy loss is congestion: see setEstimator
		}
	}
}

// Close leaves the router: the peer's tracks stop for every subscriber and
// its connections close. It waits for the peer's goroutines.
func (p *Peer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.stopOverdueLocked()
	tracks := p.tracks
	p.tracks = map[string]*Track{}
	downs := p.downs
	p.downs = map[*DownTrack]*webrtc.RTPSender{}
	p.mu.Unlock()

	p.router.removePeer(p)
	p.router.sfu.stats.tracks.Add(-int64(len(tracks)))
	p.router.sfu.stats.downTracks.Add(-int64(len(downs)))
	for _, t := range tracks {
		for _, d := range t.close() {
			d.sub.Unsubscribe(d)
		}
	}
	for d := range downs {
		d.track.removeDown(d)
	}
	if err := p.pubPC().Close(); err != nil {
		p.log.Debug("close publishing connection", "err", err)
	}
	if err := p.sub.Close(); err != nil {
		p.log.Debug("close subscribing connection", "err", err)
	}
	p.wg.Wait()
	p.router.sfu.stats.peers.Add(-1)
}
