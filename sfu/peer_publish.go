package sfu

import (
	"fmt"
	"strings"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// The publishing side of a peer: the participant's offers, the tracks
// it publishes, and the fresh connection a refused first offer gets.

// newPub makes a publishing connection that reports to the peer.
func (p *Peer) newPub() (*webrtc.PeerConnection, error) {
	se := p.router.sfu.se
	se.LoggerFactory = slogFactory{p.log}
	pc, err := p.router.sfu.pubKit.api(se, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p.listen(Publish, pc)
	pc.OnTrack(p.onRemoteTrack)
	return pc, nil
}

// listen passes pc's candidates and states to the peer's listener.
func (p *Peer) listen(kind PC, pc *webrtc.PeerConnection) {
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			p.l.OnCandidate(kind, c.ToJSON())
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("connection state", "pc", kind.String(), "state", s.String())
		p.l.OnConnectionState(kind, s)
	})
}

// pubPC is the publishing connection.
func (p *Peer) pubPC() *webrtc.PeerConnection { return p.pub.Load() }

// Limits on what a participant may publish in one offer. Chromium's offer
// for a camera with three simulcast layers, a microphone and a shared
// screen is about 10 KB in 3 media sections.
const (
	MaxOfferBytes    = 64 << 10
	MaxMediaSections = 8
)

// checkOffer refuses offers over the limits before pion parses them.
func checkOffer(sdp string) error {
	if len(sdp) > MaxOfferBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrOfferTooLarge, len(sdp), MaxOfferBytes)
	}
	n := strings.Count(sdp, "\nm=")
	if strings.HasPrefix(sdp, "m=") {
		n++
	}
	if n > MaxMediaSections {
		return fmt.Errorf("%w: %d media sections, at most %d", ErrOfferTooLarge, n, MaxMediaSections)
	}
	return nil
}

// AcceptOffer applies the participant's offer for the publishing connection
// and returns the SFU's answer. Candidates follow through OnCandidate.
//
// A refused first offer leaves the peer able to take the next one. pion
// applies an offer in steps (signaling state, codecs, transceivers, ICE
// candidates) and keeps those it made before the one that failed, so the
// next offer would meet a connection waiting for an answer to the bad one.
// Nothing is negotiated yet, so the connection is replaced by a fresh one.
// A refused re-offer keeps the connection as pion leaves it: replacing it
// would drop the media it carries.
func (p *Peer) AcceptOffer(sdp string) (string, error) {
	if err := checkOffer(sdp); err != nil {
		return "", err
	}
	p.offerMu.Lock()
	defer p.offerMu.Unlock()
	pc := p.pubPC()
	first := pc.CurrentRemoteDescription() == nil
	answer, err := acceptOffer(pc, sdp)
	if err != nil && first {
		p.replacePub(pc)
	}
	return answer, err
}

func acceptOffer(pc *webrtc.PeerConnection, sdp string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotOffer, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", err
	}
	return pc.LocalDescription().SDP, nil
}

// replacePub puts a fresh publishing connection in old's place after a
// refused first offer. old is closed quietly: its states and candidates
// are no longer the peer's. Failing to make one, the peer keeps old.
func (p *Peer) replacePub(old *webrtc.PeerConnection) {
	pc, err := p.newPub()
	if err != nil {
		p.log.Warn("publishing connection not renewed after a refused offer", "err", err)
		return
	}
	p.mu.Lock()
	if p.closed { // Close has closed, or will close, old
		p.mu.Unlock()
		_ = pc.Close()
		return
	}
	p.pub.Store(pc)
	p.mu.Unlock()
	old.OnICECandidate(func(*webrtc.ICECandidate) {})
	old.OnConnectionStateChange(func(webrtc.PeerConnectionState) {})
	old.OnTrack(func(*webrtc.TrackRemote, *webrtc.RTPReceiver) {})
	if err := old.Close(); err != nil {
		p.log.Debug("close refused publishing connection", "err", err)
	}
}

func (p *Peer) onRemoteTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	rid := remote.RID()
	layer, ok := LayerForRID(rid)
	if !ok {
		p.log.Warn("unknown simulcast layer ignored", "rid", rid)
		return
	}
	key := remote.ID() + "/" + remote.Kind().String()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	t := p.tracks[key]
	isNew := t == nil
	if isNew {
		p.nextTrack++
		id := fmt.Sprintf("%s-%s-%d", remote.Kind(), p.id, p.nextTrack)
		t = newTrack(id, p.id, remote.Kind(), remote.Codec(), &p.router.sfu.stats, p.router.sfu.clock,
			p.router.sfu.cfg.KeyframeInterval, p.pubPC().WriteRTCP)
		t.fan = p.router.sfu.fan
		if t.kind == webrtc.RTPCodecTypeAudio {
			t.levels.extID = audioLevelID(receiver) // before any read loop starts
		}
		p.tracks[key] = t
		p.router.sfu.stats.tracks.Add(1)
	}
	if !t.layers[layer].reading.CompareAndSwap(false, true) {
		// The layer is being read already: pion re-announces a layer when
		// a new SSRC claims its RID (a sender that retransmits on an RTX
		// stream without the repaired-RID extension does this). The read
		// loop that owns the layer keeps it; a second one would race it.
		p.mu.Unlock()
		p.log.Warn("second stream for a layer ignored", "track", t.id, "rid", rid, "ssrc", uint32(remote.SSRC()))
		return
	}
	t.addLayer(layer, uint32(remote.SSRC()))
	t.liveLayers.Add(1)
	p.wg.Add(2)
	p.mu.Unlock()

	p.log.Info("track layer", "track", t.id, "kind", remote.Kind().String(), "rid", rid,
		"codec", remote.Codec().MimeType, "ssrc", uint32(remote.SSRC()))
	if isNew {
		p.router.trackPublished(p, t)
	}
	go func() {
		defer p.wg.Done()
		for {
			var pkts []rtcp.Packet
			var err error
			if rid != "" {
				pkts, _, err = receiver.ReadSimulcastRTCP(rid)
			} else {
				pkts, _, err = receiver.ReadRTCP()
			}
			if err != nil {
				return
			}
			p.link.pubRTCPAt.Store(p.router.sfu.clock())
			for _, pkt := range pkts {
				if sr, ok := pkt.(*rtcp.SenderReport); ok && sr.SSRC == uint32(remote.SSRC()) {
					t.onSenderReport(layer, sr.NTPTime, sr.RTPTime)
				}
			}
		}
	}()
	defer p.wg.Done()
	err := t.readLoop(layer, remote)
	p.log.Info("track layer ended", "track", t.id, "rid", rid, "err", err)
	t.layers[layer].present.Store(false)
	t.layers[layer].reading.Store(false)
	if t.liveLayers.Add(-1) == 0 {
		p.unpublish(key, t)
	}
}

// unpublish removes a track whose layers have all ended, and with it every
// subscriber's copy.
func (p *Peer) unpublish(key string, t *Track) {
	p.mu.Lock()
	if p.tracks[key] == t {
		delete(p.tracks, key)
		p.router.sfu.stats.tracks.Add(-1)
	}
	p.mu.Unlock()
	for _, d := range t.close() {
		d.sub.Unsubscribe(d)
	}
}

// PublishedVideo returns the video track this peer publishes under the
// browser's track ID (MediaStreamTrack.id, the SDP msid), or nil if its
// media has not arrived yet.
func (p *Peer) PublishedVideo(browserTrackID string) *Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tracks[browserTrackID+"/"+webrtc.RTPCodecTypeVideo.String()]
}
