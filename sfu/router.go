package sfu

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// ErrPeerExists is returned by NewPeer when the router already has a peer
// with that ID; the caller closes the old one first.
var ErrPeerExists = errors.New("sfu: a peer with this ID is already in the router")

// Router holds one conference's peers and the tracks they publish. Who
// subscribes to what is decided by its user: the router reports new tracks
// through OnTrack and serves the subscriptions it is given.
type Router struct {
	id  string
	sfu *SFU
	log *slog.Logger

	mu        sync.Mutex
	peers     map[string]*Peer
	onTrack   func(*Peer, *Track)
	onSpeaker func(publisherID string)
	audible   func(publisherID string) bool
	speaker   string // the active speaker, "" for nobody
	closed    bool
	stop      chan struct{}
	done      chan struct{}

	// Touched only by refreshLoop.
	detector speakerDetector
	levels   []speakerLevel
}

func newRouter(s *SFU, id string) *Router {
	r := &Router{
		id:    id,
		sfu:   s,
		log:   s.log.With("conference", id),
		peers: map[string]*Peer{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go r.refreshLoop()
	return r
}

// ID is the router's identifier (the conference's).
func (r *Router) ID() string { return r.id }

// OnTrack sets the function called when a peer starts publishing a track
// (once per track, at its first layer). It runs on its own goroutine.
func (r *Router) OnTrack(f func(*Peer, *Track)) {
	r.mu.Lock()
	r.onTrack = f
	r.mu.Unlock()
}

// OnActiveSpeaker sets the function called when the active speaker
// changes: the publisher ID of the new one, "" when nobody speaks any more.
// It runs on the router's loop (every Config.LayerRefresh), in order, and
// must not block.
func (r *Router) OnActiveSpeaker(f func(publisherID string)) {
	r.mu.Lock()
	r.onSpeaker = f
	r.mu.Unlock()
}

// SetAudible sets the filter of publishers who may be heard, and so be the
// active speaker (a muted bridge may not); nil, the default, lets everyone.
// A muted active speaker loses the floor at the next refresh. f runs on the
// router's loop, once per audio track per refresh, and must be quick.
func (r *Router) SetAudible(f func(publisherID string) bool) {
	r.mu.Lock()
	r.audible = f
	r.mu.Unlock()
}

// ActiveSpeaker returns the publisher ID of the active speaker, "" when
// nobody speaks. See speakerDetector.update for how it is chosen.
func (r *Router) ActiveSpeaker() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.speaker
}

// Peer returns the peer with this ID, if it is in the router.
func (r *Router) Peer(id string) *Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[id]
}

// Peers returns the peers in the router.
func (r *Router) Peers() []*Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, p)
	}
	return out
}

// Tracks returns every track published in the router.
func (r *Router) Tracks() []*Track {
	var out []*Track
	for _, p := range r.Peers() {
		out = append(out, p.Tracks()...)
	}
	return out
}

// NewPeer adds a peer to the router. l receives what must be sent to it.
func (r *Router) NewPeer(id string, l PeerListener) (*Peer, error) {
	return r.NewPeerWith(id, l, PeerOptions{})
}

// NewPeerWith adds a peer with options.
func (r *Router) NewPeerWith(id string, l PeerListener, opts PeerOptions) (*Peer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.peers[id]; ok {
		return nil, ErrPeerExists
	}
	p, err := newPeer(r, id, l, opts)
	if err != nil {
		return nil, err
	}
	r.peers[id] = p
	return p, nil
}

func (r *Router) removePeer(p *Peer) {
	r.mu.Lock()
	if r.peers[p.id] == p {
		delete(r.peers, p.id)
	}
	r.mu.Unlock()
}

func (r *Router) trackPublished(p *Peer, t *Track) {
	r.mu.Lock()
	f := r.onTrack
	r.mu.Unlock()
	if f != nil {
		go f(p, t)
	}
}

// refreshLoop measures every layer's bitrate, re-allocates every
// subscriber's layers, so down tracks follow both their links and the
// layers their publishers actually send, and updates the active speaker.
func (r *Router) refreshLoop() {
	defer close(r.done)
	tick := time.NewTicker(r.sfu.cfg.LayerRefresh)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case at := <-tick.C:
			now := r.sfu.clock()
			tracks := r.Tracks()
			for _, t := range tracks {
				t.updateRates(now)
				t.rerequestKeyframes()
			}
			r.detectSpeaker(now, tracks)
			for _, p := range r.Peers() {
				p.tick(at.Sub(last))
			}
			last = at
		}
	}
}

// detectSpeaker updates the active speaker from the audible publishers'
// audio levels, and reports a change.
func (r *Router) detectSpeaker(now int64, tracks []*Track) {
	r.mu.Lock()
	audible, notify := r.audible, r.onSpeaker
	r.mu.Unlock()
	r.levels = publisherLevels(r.levels[:0], now, tracks, audible)
	who, changed := r.detector.update(now, r.levels)
	if !changed {
		return
	}
	r.mu.Lock()
	r.speaker = who
	r.mu.Unlock()
	r.log.Debug("active speaker", "publisher", who)
	if notify != nil {
		notify(who)
	}
}

// Close closes every peer and stops the router.
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	peers := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	for _, p := range peers {
		p.Close()
	}
	close(r.stop)
	<-r.done
	r.sfu.forgetRouter(r)
}
