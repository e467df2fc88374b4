package signaling

import (
	"log/slog"
	"sort"
	"sync"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/pion/webrtc/v4"
)

// conference is the live side of one conference: who is in it, where every
// invited bridge is, and who receives whose media.
//
// The policy until floor control lands: every room receives the hub's
// camera (at the best layer being sent) and microphone; the hub receives
// every room's low layer and microphone for its wall.
type conference struct {
	srv    *Server
	id     string
	router *sfu.Router
	log    *slog.Logger

	joinMu  sync.Mutex // one admission at a time: a bridge never gets two peers
	mu      sync.Mutex
	members map[string]*member // by bridge ID ("hub" for the host)
	roll    map[string]*wire.RosterEntry
	order   []string       // roster order: by bridge ID
	pins    map[string]int // technicians' layer caps, by bridge ID
}

type member struct {
	ss   *session
	peer *sfu.Peer
}

func newConference(s *Server, c controlplane.Conference) (*conference, error) {
	router, err := s.cfg.SFU.Router(c.ID)
	if err != nil {
		return nil, err
	}
	invited, err := s.cfg.Store.InvitedBridges(c)
	if err != nil {
		return nil, err
	}
	conf := &conference{
		srv:     s,
		id:      c.ID,
		router:  router,
		log:     s.log.With("conference", c.ID),
		members: map[string]*member{},
		roll:    map[string]*wire.RosterEntry{},
		pins:    map[string]int{},
	}
	for _, b := range invited {
		conf.roll[b.ID] = &wire.RosterEntry{Bridge: bridgeToWire(b), State: wire.StateAbsent}
		conf.order = append(conf.order, b.ID)
	}
	sort.Strings(conf.order)
	router.OnTrack(conf.onTrack)
	return conf, nil
}

// admit makes ss the conference's member for its bridge. A bridge is in a
// conference once: an older connection for the same bridge is ended and
// its media closed before the new one gets its own.
func (c *conference) admit(ss *session) (*sfu.Peer, error) {
	c.joinMu.Lock()
	defer c.joinMu.Unlock()
	id := ss.adm.Bridge.ID
	c.mu.Lock()
	old := c.members[id]
	delete(c.members, id)
	c.mu.Unlock()
	if old != nil {
		old.ss.log.Info("replaced by a new connection")
		old.ss.end(wire.ByeReplaced)
		old.peer.Close()
	}
	opts := sfu.PeerOptions{}
	if ss.adm.Role == controlplane.RoleHost {
		opts.StartBitrate = sfu.HubStartBitrate // the hub is on the city's fibre
	}
	c.mu.Lock()
	if pin, ok := c.pins[id]; ok {
		opts.Pinned, opts.Pin = true, pin
	}
	c.mu.Unlock()
	peer, err := c.router.NewPeerWith(id, ss, opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.members[id] = &member{ss: ss, peer: peer}
	c.mu.Unlock()
	c.setState(ss.adm.Bridge, wire.StateConnecting)
	return peer, nil
}

// leave takes ss out of the conference, if it is still the member for its
// bridge, and closes its media.
func (c *conference) leave(ss *session) {
	id := ss.adm.Bridge.ID
	c.mu.Lock()
	m := c.members[id]
	if m == nil || m.ss != ss {
		c.mu.Unlock()
		return
	}
	delete(c.members, id)
	c.mu.Unlock()
	m.peer.Close()
	ss.log.Info("left")
	c.setState(ss.adm.Bridge, wire.StateLeft)
}

// mediaStateChanged updates presence from the member's connection states:
// connected once both its connections that are in use are.
func (c *conference) mediaStateChanged(ss *session) {
	c.mu.Lock()
	m := c.members[ss.adm.Bridge.ID]
	c.mu.Unlock()
	if m == nil || m.ss != ss {
		return
	}
	state := wire.StateConnecting
	if m.peer.ConnectionState(sfu.Publish) == webrtc.PeerConnectionStateConnected ||
		m.peer.ConnectionState(sfu.Subscribe) == webrtc.PeerConnectionStateConnected {
		state = wire.StateConnected
	}
	c.setState(ss.adm.Bridge, state)
}

// setState records a bridge's presence and tells the host.
func (c *conference) setState(b controlplane.Bridge, state string) {
	if b.Kind == controlplane.KindHub {
		return
	}
	c.mu.Lock()
	e := c.roll[b.ID]
	if e == nil { // joined, but not invited when the roster was built
		e = &wire.RosterEntry{Bridge: bridgeToWire(b)}
		c.roll[b.ID] = e
		c.order = append(c.order, b.ID)
		sort.Strings(c.order)
	}
	if e.State == state {
		c.mu.Unlock()
		return
	}
	e.State = state
	entry := *e
	host := c.members[controlplane.HubBridge.ID]
	c.mu.Unlock()
	if host != nil {
		host.ss.send(wire.Presence{RosterEntry: entry})
	}
}

func (c *conference) roster() []wire.RosterEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]wire.RosterEntry, 0, len(c.order))
	for _, id := range c.order {
		out = append(out, *c.roll[id])
	}
	return out
}

func (c *conference) sessionList() []*session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*session, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m.ss)
	}
	return out
}

func (c *conference) memberList() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	return out
}

// onTrack applies the policy to a newly published track.
func (c *conference) onTrack(pub *sfu.Peer, t *sfu.Track) {
	for _, m := range c.memberList() {
		if m.peer != pub {
			c.subscribe(m, t)
		}
	}
}

// subscribeExisting gives a newly joined member what the policy says it
// receives of the tracks already published.
func (c *conference) subscribeExisting(ss *session) {
	c.mu.Lock()
	m := c.members[ss.adm.Bridge.ID]
	c.mu.Unlock()
	if m == nil || m.ss != ss {
		return
	}
	for _, t := range c.router.Tracks() {
		if t.PublisherID() != m.peer.ID() {
			c.subscribe(m, t)
		}
	}
}

// subscribe applies the policy for one member and one track.
func (c *conference) subscribe(m *member, t *sfu.Track) {
	hubTrack := t.PublisherID() == controlplane.HubBridge.ID
	isHost := m.ss.adm.Role == controlplane.RoleHost
	var maxLayer int
	switch {
	case hubTrack && !isHost:
		maxLayer = sfu.LayerHigh // rooms see the hub at the best layer sent
	case !hubTrack && isHost:
		maxLayer = sfu.LayerLow // the hub's wall shows every room small
	default:
		return // rooms do not receive each other until floor control
	}
	if _, err := m.peer.Subscribe(t, maxLayer); err != nil {
		m.ss.log.Warn("subscribe", "track", t.ID(), "err", err)
	}
}

// pin caps the layers bridge receives (a technician's override); it holds
// for the bridge's later connections too. layer LayerHigh lifts the cap.
func (c *conference) pin(bridge string, layer int) {
	c.mu.Lock()
	if layer >= sfu.LayerHigh {
		delete(c.pins, bridge)
	} else {
		c.pins[bridge] = layer
	}
	m := c.members[bridge]
	c.mu.Unlock()
	if m != nil {
		m.peer.SetPin(layer)
	}
	c.log.Info("layer pinned", "bridge", bridge, "max_layer", sfu.RIDForLayer(layer))
}
