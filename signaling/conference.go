package signaling

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/sfu/record"
	"citybridge/signaling/wire"

	"github.com/pion/webrtc/v4"
)

// conference is the live side of one conference: who is in it, where every
// invited bridge is, and who receives whose media.
//
// Who receives whose media is floor control's business (floor.go).
type conference struct {
	srv    *Server
	id     string
	router *sfu.Router
	log    *slog.Logger

	// Admissions: one at a time per bridge (a bridge never gets two
	// peers), any number of bridges at once (each admission waits on the
	// store: after a failover the whole conference joins within a second,
	// and one at a time, the last waited for all the others' writes).
	// Viewers, counted against a limit, are admitted one at a time.
	admitting map[string]*bridgeLock // by bridge ID, guarded by mu
	viewerMu  sync.Mutex
	mu        sync.Mutex
	members   map[string]*member // by bridge ID ("hub" for the host)
	roll      map[string]*wire.RosterEntry
	order     []string       // roster order: by bridge ID
	pins      map[string]int // technicians' layer caps, by bridge ID

	// Floor state (floor.go), guarded by mu; stored on every change.
	state   controlplane.State
	holder  string          // the bridge holding the floor, "" for none
	unmuted map[string]bool // bridges whose microphone reaches the others
	locked  bool
	hands   []string // raised hands, oldest first
	screen  string   // the host's shared-screen track ID
	speaker string   // the active speaker
	// selfTest holds the bridges running the readiness check, until
	// when: each receives its own camera back (linkmon.go).
	selfTest map[string]time.Time

	// Recording (recording.go): whether the conference is recorded
	// (guarded by mu, stored with the floor state), who started it, and
	// the recorder, made on first use.
	recording  bool
	recBy      string
	recResumed bool   // recording restored from the store: the run resumes
	recStopBy  string // who stops it when no person does ("system": diskwatch.go)
	recMu      sync.Mutex
	rec        *record.Recorder

	policyMu sync.Mutex // one reconciliation of subscriptions at a time
}

type member struct {
	ss     *session // the session that has (or last had) the member's place
	peer   *sfu.Peer
	link   *memberLink // what the SFU talks to: the current session, or nobody
	resume string      // the token that takes the place back after a loss
	since  time.Time   // when it joined, or when its connection was lost
	joined time.Time   // when it joined
	grace  *time.Timer // running while the connection is lost
	wall   wallView    // the host console's tiles on screen (wall.go); guarded by the conference's mu
}

// memberLink passes the SFU's events to the member's current session; while
// the connection is lost they go nowhere (a pending offer is sent again on
// resume, and the page restarts ICE if its connections stalled).
type memberLink struct {
	ss atomic.Pointer[session]
}

func (l *memberLink) set(ss *session)    { l.ss.Store(ss) }
func (l *memberLink) get() *session      { return l.ss.Load() }
func (l *memberLink) OnOffer(sdp string) { l.with(func(ss *session) { ss.OnOffer(sdp) }) }
func (l *memberLink) OnCandidate(pc sfu.PC, c webrtc.ICECandidateInit) {
	l.with(func(ss *session) { ss.OnCandidate(pc, c) })
}
func (l *memberLink) OnConnectionState(pc sfu.PC, s webrtc.PeerConnectionState) {
	l.with(func(ss *session) { ss.OnConnectionState(pc, s) })
}
func (l *memberLink) OnLayer(e sfu.LayerEvent) { l.with(func(ss *session) { ss.OnLayer(e) }) }

func (l *memberLink) with(f func(*session)) {
	if ss := l.ss.Load(); ss != nil {
		f(ss)
	}
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
		srv:       s,
		id:        c.ID,
		router:    router,
		log:       s.log.With("conference", c.ID),
		members:   map[string]*member{},
		admitting: map[string]*bridgeLock{},
		roll:      map[string]*wire.RosterEntry{},
		pins:      map[string]int{},
		state:     c.State,
		unmuted:   map[string]bool{},

		selfTest: map[string]time.Time{},
	}
	conf.restoreLive()
	for _, b := range invited {
		conf.roll[b.ID] = &wire.RosterEntry{Bridge: bridgeToWire(b), State: wire.StateAbsent}
		conf.order = append(conf.order, b.ID)
	}
	sort.Strings(conf.order)
	router.OnTrack(conf.onTrack)
	// The active speaker is the loudest of those who can be heard: the
	// hub and the unmuted rooms. The host's wall shows it.
	router.SetAudible(func(pub string) bool {
		if pub == controlplane.HubBridge.ID {
			return true
		}
		conf.mu.Lock()
		defer conf.mu.Unlock()
		return conf.unmuted[pub]
	})
	router.OnActiveSpeaker(conf.speakerChanged)
	return conf, nil
}

// admit makes ss the conference's member for its bridge. A bridge is in a
// conference once. With the resume token of the member it had (within the
// reconnection grace period), ss takes that member's place: same peer
// connections, subscriptions, floor and mute state. Otherwise an older
// connection for the same bridge is ended and its media closed before the
// new one gets its own. resumed reports which.
func (c *conference) admit(ss *session, resume string) (m *member, resumed bool, err error) {
	// By the bridge asked for: a host console that placeLocked renames
	// still waits on the hub's admissions (a WHIP encoder's).
	defer c.lockBridge(ss.adm.Bridge.ID)()
	if ss.adm.Role == controlplane.RoleViewer {
		// The viewers' limit is checked where the member is also taken:
		// two viewers at once cannot both pass a check only one may.
		c.viewerMu.Lock()
		defer c.viewerMu.Unlock()
	}
	c.mu.Lock()
	if err := c.placeLocked(ss); err != nil {
		c.mu.Unlock()
		return nil, false, err
	}
	id := ss.adm.Bridge.ID
	// A locked conference keeps the bridges it has: one that was in it
	// may come back, a new one may not. The roll of a node that took the
	// conference over starts empty: the store's attendance says who was
	// in.
	e := c.roll[id]
	askStore := c.locked && ss.adm.Role == controlplane.RoleRoom && (e == nil || e.State == wire.StateAbsent)
	ended := c.state == controlplane.StateEnded
	c.mu.Unlock()
	if ended {
		return nil, false, refuse(wire.CodeConferenceEnded, "the conference has ended")
	}
	if askStore && !c.srv.cfg.Store.Attended(c.id, id) {
		return nil, false, refuse(wire.CodeConferenceLocked, "the host has locked the conference")
	}
	c.mu.Lock()
	old := c.members[id]
	if old != nil && resume != "" && old.resume == resume {
		prev := old.ss
		old.ss = ss
		old.link.set(ss)
		if old.grace != nil {
			old.grace.Stop()
			old.grace = nil
		}
		c.mu.Unlock()
		if prev != ss {
			prev.end(wire.ByeReplaced) // its leave finds it is no longer the member
		}
		away := time.Since(old.since).Round(time.Millisecond)
		ss.log.Info("resumed", "away", away)
		c.srv.reconnects.Add(1)
		c.event(id, controlplane.EventReconnect, "resumed", "away "+away.String())
		return old, true, nil
	}
	delete(c.members, id)
	if old != nil && old.grace != nil {
		old.grace.Stop()
	}
	c.mu.Unlock()
	moved := false
	if old == nil && resume != "" {
		moved = c.resumedElsewhere(ss, resume)
	}
	if old != nil {
		old.ss.log.Info("replaced by a new connection")
		old.ss.end(wire.ByeReplaced)
		old.peer.Close()
	}
	opts := sfu.PeerOptions{ClientOffers: ss.headless == headlessWHEP}
	if ss.adm.Role == controlplane.RoleHost {
		opts.StartBitrate = sfu.HubStartBitrate // the hub is on the city's fibre
	}
	c.mu.Lock()
	if pin, ok := c.pins[id]; ok {
		opts.Pinned, opts.Pin = true, pin
	}
	c.mu.Unlock()
	// The interval is on disk before the page hears it joined (a bridge
	// that reconnects continues the interval it has open). Viewers are
	// nobody's bridge: no attendance.
	viewer := ss.adm.Role == controlplane.RoleViewer
	if !viewer {
		if err := c.srv.cfg.Store.AttendanceJoin(c.id, id); err != nil {
			return nil, false, err
		}
	}
	link := &memberLink{}
	link.set(ss)
	peer, err := c.router.NewPeerWith(id, link, opts)
	if err != nil {
		if !viewer {
			_ = c.srv.cfg.Store.AttendanceLeave(c.id, id, controlplane.EndDropped, time.Now())
		}
		return nil, false, err
	}
	now := time.Now()
	m = &member{ss: ss, peer: peer, link: link, resume: controlplane.NewToken(), since: now, joined: now}
	if c.srv.cfg.Cluster != nil && !viewer {
		// Kept in the store: after a failover the next node knows the
		// bridge coming back.
		if err := c.srv.cfg.Store.SetResume(c.id, id, m.resume); err != nil {
			ss.log.Warn("resume token not kept in the store", "err", err)
		}
	}
	c.mu.Lock()
	c.members[id] = m
	c.mu.Unlock()
	if moved {
		c.event(id, controlplane.EventReconnect, "resumed", "came back after the conference changed node")
	} else {
		c.event(id, controlplane.EventJoin, string(ss.adm.Role), "from "+ss.remote)
	}
	c.setState(ss.adm.Bridge, wire.StateConnecting)
	return m, false, nil
}

// bridgeLock is one bridge's admission lock, kept while anyone holds or
// waits for it.
type bridgeLock struct {
	sync.Mutex
	users int
}

// lockBridge waits until no other admission of the bridge is under way,
// and returns what ends this one.
func (c *conference) lockBridge(id string) (unlock func()) {
	c.mu.Lock()
	l := c.admitting[id]
	if l == nil {
		l = &bridgeLock{}
		c.admitting[id] = l
	}
	l.users++
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		if l.users--; l.users == 0 {
			delete(c.admitting, id)
		}
		c.mu.Unlock()
	}
}

// resumedElsewhere says whether resume is the token of the bridge's place
// as another node of the cluster served it (the conference changed node):
// the bridge is coming back, not joining. Its media start over here.
func (c *conference) resumedElsewhere(ss *session, resume string) bool {
	if c.srv.cfg.Cluster == nil {
		ss.log.Info("resume token not known (its place was given up): a new place")
		return false
	}
	if err := c.srv.cfg.Store.CheckResume(c.id, ss.adm.Bridge.ID, resume); err != nil {
		ss.log.Warn("resume refused: token not known here", "err", err)
		c.srv.resumesRefused.Add(1)
		return false
	}
	ss.log.Info("resumed after the conference changed node")
	c.srv.reconnects.Add(1)
	return true
}

// errViewersFull: the conference has its most viewers.
var errViewersFull = errors.New("signaling: the conference has all the viewers it may have")

// placeLocked applies the admission limits that depend on who else is in
// the conference (c.mu held, under its bridge's admission lock, and a
// viewer's under viewerMu): a console joining while a WHIP encoder is the
// hub chairs beside it as HubConsole; an encoder cannot
// take the hub's place from a console publishing the camera; a conference
// takes at most Config.MaxViewers viewers.
func (c *conference) placeLocked(ss *session) error {
	hub := c.members[controlplane.HubBridge.ID]
	switch {
	case ss.adm.Role == controlplane.RoleHost && ss.headless == "" && hub != nil && hub.ss.headless == headlessWHIP:
		ss.adm.Bridge = HubConsole
		ss.log = ss.log.With("console", true)
	case ss.headless == headlessWHIP && hub != nil && hub.ss.headless == "":
		return refuse(wire.CodeBadState, "the host console is publishing the hub's camera: close it, or join it after the encoder")
	case ss.adm.Role == controlplane.RoleViewer:
		n := 0
		for _, m := range c.members {
			if m.ss.adm.Role == controlplane.RoleViewer {
				n++
			}
		}
		if n >= c.srv.maxViewers() {
			return errViewersFull
		}
	}
	return nil
}

// leave takes ss out of the conference, if it is still the member for its
// bridge. A connection that was lost (no goodbye, no replacement, no
// shutdown) keeps the bridge's place and media for the reconnection grace
// period: the bridge shows "reconnecting", and a join with the resume token
// takes the place back. Otherwise the media close now.
func (c *conference) leave(ss *session) {
	id := ss.adm.Bridge.ID
	c.mu.Lock()
	m := c.members[id]
	if m == nil || m.ss != ss {
		c.mu.Unlock()
		return
	}
	if grace := c.srv.cfg.ReconnectGrace; ss.byeReason == "" && grace > 0 {
		m.link.set(nil)
		if m.grace == nil { // else the media were lost first: that is when it started
			m.since = time.Now()
			m.grace = time.AfterFunc(grace, func() { c.expire(m) })
		}
		c.mu.Unlock()
		ss.log.Info("connection lost; keeping the bridge's place", "grace", grace)
		c.event(id, controlplane.EventDrop, "signaling", "connection lost; its place is kept for "+grace.String())
		c.setState(ss.adm.Bridge, wire.StateReconnecting)
		return
	}
	delete(c.members, id)
	c.mu.Unlock()
	m.peer.Close()
	c.syncRecording()
	cause, state := controlplane.EndDropped, wire.StateDropped
	switch ss.byeReason {
	case wire.ByeLeft:
		cause, state = controlplane.EndLeft, wire.StateLeft
	case wire.ByeServerShutdown:
		cause = controlplane.EndServerStopped
	case wire.ByeEnded:
		cause, state = controlplane.EndEnded, wire.StateLeft
	case wire.ByeRevoked:
		cause, state = controlplane.EndRevoked, wire.StateLeft
	}
	// A bridge sent to another node: its interval was closed by the hand-
	// over, or is closed by the node taking the conference (this one lost
	// its lease, and perhaps etcd with it).
	if ss.byeReason == wire.ByeMoved {
		cause = controlplane.EndMoved
	} else if ss.adm.Bridge.Kind != controlplane.KindViewer {
		if err := c.srv.cfg.Store.AttendanceLeave(c.id, id, cause, time.Now()); err != nil {
			ss.log.Error("attendance", "err", err)
		}
	}
	ss.log.Info("left", "cause", cause)
	c.event(id, controlplane.EventLeave, cause, ss.byeReason)
	c.forget(id, cause)
	c.setState(ss.adm.Bridge, state)
}

// expire ends a lost member's grace period: its media close and the bridge
// is dropped, its attendance interval ending when the connection was lost.
func (c *conference) expire(m *member) {
	id := m.ss.adm.Bridge.ID
	c.mu.Lock()
	ss := m.link.get()
	if c.members[id] != m || (ss != nil && m.peer.ConnectionState(sfu.Publish) == webrtc.PeerConnectionStateConnected) {
		c.mu.Unlock()
		return
	}
	delete(c.members, id)
	m.grace = nil
	lost := m.since
	c.mu.Unlock()
	if ss != nil { // its socket had not noticed: end it, the page starts over
		ss.end("")
	}
	m.peer.Close()
	c.syncRecording()
	if m.ss.adm.Bridge.Kind != controlplane.KindViewer {
		if err := c.srv.cfg.Store.AttendanceLeave(c.id, id, controlplane.EndDropped, lost); err != nil {
			c.log.Error("attendance", "bridge", id, "err", err)
		}
	}
	c.log.Info("dropped: did not come back within the grace period", "bridge", id)
	c.event(id, controlplane.EventLeave, controlplane.EndDropped, "did not come back within the grace period")
	c.forget(id, controlplane.EndDropped)
	c.setState(m.ss.adm.Bridge, wire.StateDropped)
}

// closeLost closes the members still in their grace period (the server is
// stopping): they count as there until now. cause is how their intervals
// end; "" writes nothing (the conference moved: see Server.Release).
func (c *conference) closeLost(cause string) {
	c.mu.Lock()
	var lost []*member
	for id, m := range c.members {
		if m.link.get() == nil {
			lost = append(lost, m)
			delete(c.members, id)
			if m.grace != nil {
				m.grace.Stop()
			}
		}
	}
	c.mu.Unlock()
	for _, m := range lost {
		m.peer.Close()
		if cause == "" {
			c.forget(m.ss.adm.Bridge.ID, controlplane.EndMoved)
			continue
		}
		if m.ss.adm.Bridge.Kind != controlplane.KindViewer {
			_ = c.srv.cfg.Store.AttendanceLeave(c.id, m.ss.adm.Bridge.ID, cause, time.Now())
		}
		c.forget(m.ss.adm.Bridge.ID, cause)
	}
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
	pub, sub := m.peer.ConnectionState(sfu.Publish), m.peer.ConnectionState(sfu.Subscribe)
	switch {
	case pub == webrtc.PeerConnectionStateConnected || sub == webrtc.PeerConnectionStateConnected:
		state = wire.StateConnected
	case interrupted(pub) || interrupted(sub):
		state = wire.StateReconnecting
	}
	// Media lost with the signaling connection apparently still up (a cut
	// line: the socket does not know yet) starts the grace period too.
	c.mu.Lock()
	switch {
	case state == wire.StateReconnecting && m.grace == nil && c.srv.cfg.ReconnectGrace > 0:
		m.since = time.Now()
		m.grace = time.AfterFunc(c.srv.cfg.ReconnectGrace, func() { c.expire(m) })
		defer c.event(ss.adm.Bridge.ID, controlplane.EventDrop, "media", fmt.Sprintf("media connections %s/%s", pub, sub))
	case state == wire.StateConnected && m.grace != nil && m.link.get() != nil:
		// The media came back by themselves (ICE on the same line, no
		// new signaling connection): the log says so, as it says a resume.
		m.grace.Stop()
		m.grace = nil
		away := time.Since(m.since).Round(time.Millisecond)
		defer c.event(ss.adm.Bridge.ID, controlplane.EventReconnect, "media", "media connections back after "+away.String())
	}
	c.mu.Unlock()
	c.setState(ss.adm.Bridge, state)
}

func interrupted(s webrtc.PeerConnectionState) bool {
	return s == webrtc.PeerConnectionStateDisconnected || s == webrtc.PeerConnectionStateFailed
}

// setPath records how a bridge's media reaches the server and tells the
// host when it changed.
func (c *conference) setPath(b controlplane.Bridge, path string) {
	c.updateRoll(b, func(e *wire.RosterEntry) bool {
		changed := e.Path != path
		e.Path = path
		return changed
	})
}

// setState records a bridge's presence and tells the host.
func (c *conference) setState(b controlplane.Bridge, state string) {
	c.updateRoll(b, func(e *wire.RosterEntry) bool {
		changed := e.State != state
		e.State = state
		return changed
	})
}

// updateRoll applies change to a bridge's roster entry (made if the
// bridge joined without being on the roster built at the start) and sends
// the host the entry when change says it changed. The hub has no entry.
func (c *conference) updateRoll(b controlplane.Bridge, change func(*wire.RosterEntry) bool) {
	if b.Kind == controlplane.KindHub || b.Kind == controlplane.KindViewer {
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
	if !change(e) {
		c.mu.Unlock()
		return
	}
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
			c.reconcile(m)
		}
	}
	c.mu.Lock()
	sharing := c.screen != "" && pub.ID() == controlplane.HubBridge.ID && t.Kind() == webrtc.RTPCodecTypeVideo
	c.mu.Unlock()
	if sharing { // perhaps the shared screen's media, announced now
		c.broadcastFloor()
	}
	c.syncRecording()
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
	c.reconcile(m)
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

// speakerChanged tells the host who is speaking now (called from the
// router's loop: it must not block, and send does not).
func (c *conference) speakerChanged(bridge string) {
	c.mu.Lock()
	c.speaker = bridge
	host := c.members[controlplane.HubBridge.ID]
	follow := host != nil && host.wall != nil
	c.mu.Unlock()
	if host != nil {
		host.ss.send(wire.Speaker{Bridge: bridge})
	}
	if follow { // the speaker is received whatever the wall shows
		go c.reconcile(host)
	}
}
