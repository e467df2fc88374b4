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

	mu      sync.Mutex
	peers   map[string]*Peer
	onTrack func(*Peer, *Track)
	closed  bool
	stop    chan struct{}
	done    chan struct{}
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

// refreshLoop measures every layer's bitrate and re-allocates every
// subscriber's layers, so down tracks follow both their links and the
// layers their publishers actually send.
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
			for _, t := range r.Tracks() {
				t.updateRates(now)
			}
			for _, p := range r.Peers() {
				p.tick(at.Sub(last))
			}
			last = at
		}
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
