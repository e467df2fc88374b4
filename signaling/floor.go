package signaling

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/sfu/record"
	"citybridge/signaling/wire"

	"github.com/pion/webrtc/v4"
)

// Floor control, enforced here and nowhere else: the pages only ask.
//
// Who receives what:
//   - every room receives the hub's tracks (camera, microphone, shared
//     screen) at the best layer its link carries;
//   - the hub receives every room's video small (its wall), the floor
//     holder's at the best layer;
//   - a room receives another room's video only while that room holds the
//     floor;
//   - everyone receives a room's microphone only while that room is
//     unmuted. Rooms are muted when they join; giving a room the floor
//     unmutes it, taking the floor back mutes it again.
//
// A muted room's audio is not forwarded to anyone: the server holds no
// subscription to it, so packets its terminal sends stop at the SFU.

// actor is who asks for a control action: the host, a room (by bridge
// ID), or the API on the host's behalf.
type actor struct {
	role   controlplane.Role
	bridge string
}

// ControlError is a refused join (the conference locked or over, the
// hub's place taken), with the wire error code. A refused floor action is
// a *controlplane.FloorRefusal.
type ControlError struct {
	Code    string
	Message string
}

func (e *ControlError) Error() string { return e.Message }

func refuse(code, msg string) error { return &ControlError{Code: code, Message: msg} }

// refuseAction refuses a floor action, saying why in the control plane's
// words.
func refuseAction(why controlplane.RefusalReason, msg string) error {
	return &controlplane.FloorRefusal{Reason: why, Message: msg}
}

// refusalCode is the wire's error code for a refused floor action.
func refusalCode(why controlplane.RefusalReason) string {
	switch why {
	case controlplane.RefusedBadAction:
		return wire.CodeBadMessage
	case controlplane.RefusedForbidden:
		return wire.CodeForbidden
	case controlplane.RefusedUnknownBridge:
		return wire.CodeUnknownBridge
	case controlplane.RefusedNoFloor:
		return wire.CodeNoFloor
	case controlplane.RefusedEnded:
		return wire.CodeConferenceEnded
	case controlplane.RefusedBadState:
		return wire.CodeBadState
	case controlplane.RefusedNoSpace:
		return wire.CodeNoSpace
	}
	return wire.CodeInternal
}

// control applies one action for who, or refuses it. It is the one place
// the floor rules live; the signaling message and the REST API both come
// here. Who may send what, on whom, is the role table's (roles.go).
func (c *conference) control(who actor, req controlplane.FloorRequest) (changed bool, err error) {
	target, err := permit(who, req)
	if err != nil {
		return false, err
	}
	host := who.role == controlplane.RoleHost
	c.mu.Lock()
	ended := c.state == controlplane.StateEnded
	c.mu.Unlock()
	if ended {
		return false, refuseAction(controlplane.RefusedEnded, "the conference has ended")
	}
	if controlRules[who.role][req.Action] != whole && !c.invited(target) {
		return false, refuseAction(controlplane.RefusedUnknownBridge, "no such bridge in this conference: "+target)
	}
	var change func()
	switch req.Action {
	case controlplane.ActionGiveFloor:
		change = func() {
			if c.holder != "" && c.holder != target {
				delete(c.unmuted, c.holder)
			}
			c.holder = target
			c.unmuted[target] = true
			c.hands = slices.DeleteFunc(c.hands, func(b string) bool { return b == target })
		}
	case controlplane.ActionTakeFloor:
		change = func() {
			if c.holder != "" {
				delete(c.unmuted, c.holder)
			}
			c.holder = ""
		}
	case controlplane.ActionMute:
		change = func() { delete(c.unmuted, target) }
	case controlplane.ActionUnmute:
		c.mu.Lock()
		holds := c.holder == target
		c.mu.Unlock()
		if !host && !holds {
			return false, refuseAction(controlplane.RefusedNoFloor, "a room may unmute itself only while it holds the floor")
		}
		change = func() { c.unmuted[target] = true }
	case controlplane.ActionMuteAll:
		change = func() { clear(c.unmuted) }
	case controlplane.ActionLock, controlplane.ActionUnlock:
		change = func() { c.locked = req.Action == controlplane.ActionLock }
	case controlplane.ActionRaiseHand:
		change = func() {
			if !slices.Contains(c.hands, target) && c.holder != target {
				c.hands = append(c.hands, target)
			}
		}
	case controlplane.ActionLowerHand:
		change = func() { c.hands = slices.DeleteFunc(c.hands, func(b string) bool { return b == target }) }
	case controlplane.ActionShareScreen:
		if len(req.Track) > 128 {
			return false, refuseAction(controlplane.RefusedBadAction, "track ID too long")
		}
		change = func() { c.screen = req.Track }
	case controlplane.ActionStart, controlplane.ActionEnd:
		return c.setConferenceState(req.Action)
	case controlplane.ActionRecord:
		c.mu.Lock()
		already := c.recording
		c.mu.Unlock()
		if !already {
			if err := c.mayRecord(); errors.Is(err, record.ErrLowSpace) {
				return false, refuseAction(controlplane.RefusedNoSpace, err.Error())
			} else if err != nil {
				return false, refuseAction(controlplane.RefusedBadState, err.Error())
			}
		}
		by := req.By
		if by == "" {
			by = who.bridge
		}
		change = func() {
			if !c.recording {
				c.recBy = by
			}
			c.recording = true
		}
	case controlplane.ActionStopRecord:
		change = func() { c.recording = false }
	}
	if !c.update(change) {
		return false, nil
	}
	c.log.Info("floor control", "action", string(req.Action), "target", target, "by", who.bridge, "role", string(who.role))
	return true, nil
}

// invited reports whether bridge is on the conference's roster.
func (c *conference) invited(bridge string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.roll[bridge]
	return ok
}

// update changes the floor state under the lock; if that changed
// anything, it stores it, re-applies who receives what and tells everyone.
// An action that changes nothing (a second raised hand, muting a muted
// room) costs no write and no broadcast.
func (c *conference) update(change func()) (changed bool) {
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	c.mu.Lock()
	before, screen := c.liveLocked(), c.screen
	change()
	live := c.liveLocked()
	changed = !live.Equal(before) || c.screen != screen
	c.mu.Unlock()
	if !changed {
		return false
	}
	if err := c.srv.cfg.Store.SaveLiveState(c.id, live); err != nil {
		c.log.Error("store the floor state", "err", err)
	}
	for _, m := range c.memberList() {
		c.reconcileLocked(m)
	}
	c.syncRecording()
	c.broadcastFloor()
	return true
}

func (c *conference) liveLocked() controlplane.LiveState {
	st := controlplane.LiveState{Holder: c.holder, Locked: c.locked, Hands: slices.Clone(c.hands), Recording: c.recording}
	for b := range c.unmuted {
		st.Unmuted = append(st.Unmuted, b)
	}
	slices.Sort(st.Unmuted)
	return st
}

// floorState is the floor state as the API returns it.
func (c *conference) floorState() controlplane.FloorState {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := c.liveLocked()
	f := controlplane.FloorState{
		State: c.state, Holder: live.Holder, Unmuted: live.Unmuted, Locked: live.Locked,
		Hands: live.Hands, Speaker: c.speaker, Recording: live.Recording,
	}
	if e := c.roll[live.Holder]; e != nil {
		f.HolderName = e.Name
	}
	// The host names its screen by the browser's track ID; the rooms see
	// the SFU's. Until its media arrives the screen is not announced
	// (onTrack announces it then).
	if hub := c.members[controlplane.HubBridge.ID]; hub != nil && c.screen != "" {
		if t := hub.peer.PublishedVideo(c.screen); t != nil {
			f.Screen = t.ID()
		}
	}
	if f.Unmuted == nil {
		f.Unmuted = []string{}
	}
	if f.Hands == nil {
		f.Hands = []string{}
	}
	return f
}

// floorMessage is the floor state as the pages see it.
func (c *conference) floorMessage() wire.Floor {
	f := floorToWire(c.floorState())
	if j, ok := c.srv.renderer().Job(c.id); ok {
		f.MinutesState, f.MinutesPercent = j.State, j.Percent
	}
	return f
}

// floorToWire maps the control plane's floor state onto the signaling
// floor message.
func floorToWire(f controlplane.FloorState) wire.Floor {
	return wire.Floor{
		State: string(f.State), Holder: f.Holder, HolderName: f.HolderName, Unmuted: f.Unmuted,
		Locked: f.Locked, Hands: f.Hands, Screen: f.Screen, Speaker: f.Speaker, Recording: f.Recording,
	}
}

func (c *conference) broadcastFloor() {
	f := c.floorMessage()
	for _, ss := range c.sessionList() {
		ss.send(f)
	}
}

// want says whether member m receives track t, and at most at which layer.
func (c *conference) want(m *member, t *sfu.Track) (bool, int) {
	pub := t.PublisherID()
	if pub == m.peer.ID() {
		// Nobody receives themselves, except a room's camera during its
		// readiness check: the picture goes to the server and back.
		c.mu.Lock()
		until, testing := c.selfTest[pub]
		c.mu.Unlock()
		return testing && time.Now().Before(until) && t.Kind() == webrtc.RTPCodecTypeVideo, sfu.LayerHigh
	}
	switch m.ss.headless {
	case headlessWHIP:
		return false, 0 // an encoder only publishes
	case headlessWHEP:
		return pub == controlplane.HubBridge.ID, sfu.LayerHigh // negotiated once: the hub only
	}
	if pub == controlplane.HubBridge.ID {
		return true, sfu.LayerHigh // rooms see the hub at the best layer their link carries
	}
	c.mu.Lock()
	holder, unmuted := c.holder, c.unmuted[pub]
	c.mu.Unlock()
	if t.Kind() == webrtc.RTPCodecTypeAudio {
		return unmuted, 0
	}
	toHost := m.ss.adm.Role == controlplane.RoleHost
	switch {
	case pub == holder:
		return true, sfu.LayerHigh
	case toHost:
		return true, c.wallLayer(m, pub) // small, and only what the wall shows (wall.go)
	}
	return false, 0
}

// reconcile brings m's subscriptions in line with the policy.
func (c *conference) reconcile(m *member) {
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	c.reconcileLocked(m)
}

func (c *conference) reconcileLocked(m *member) {
	have := map[*sfu.Track]*sfu.DownTrack{}
	for _, d := range m.peer.DownTracks() {
		have[d.Track()] = d
	}
	var caps []sfu.LayerCap
	for _, t := range c.router.Tracks() {
		ok, layer := c.want(m, t)
		d := have[t]
		video := t.Kind() == webrtc.RTPCodecTypeVideo
		switch {
		case ok && d == nil:
			d, err := m.peer.Subscribe(t, layer)
			if err != nil && !errors.Is(err, sfu.ErrClosed) {
				m.ss.log.Warn("subscribe", "track", t.ID(), "err", err)
			}
			if err == nil && video {
				d.SetMaxTemporal(c.temporal(m, t))
			}
		case ok && video:
			if tl := c.temporal(m, t); d.MaxLayer() != layer || d.MaxTemporal() != tl {
				caps = append(caps, sfu.LayerCap{Down: d, Layer: layer, Temporal: tl})
			}
		case !ok && d != nil:
			m.peer.Unsubscribe(d)
		}
	}
	if len(caps) > 0 {
		m.peer.SetCaps(caps)
	}
}

// restoreLive loads the floor state a previous run of the server stored.
func (c *conference) restoreLive() {
	st, err := c.srv.cfg.Store.LiveState(c.id)
	if err != nil {
		c.log.Error("load the floor state", "err", err)
		return
	}
	c.holder, c.locked, c.hands, c.recording = st.Holder, st.Locked, st.Hands, st.Recording
	c.recResumed = st.Recording
	for _, b := range st.Unmuted {
		c.unmuted[b] = true
	}
	if st.Holder != "" || st.Locked || len(st.Unmuted) > 0 || st.Recording {
		c.log.Info("floor state restored", "holder", st.Holder, "unmuted", len(st.Unmuted), "locked", st.Locked, "recording", st.Recording)
	}
}

// setConferenceState moves the conference live (start) or ends it.
func (c *conference) setConferenceState(action controlplane.FloorAction) (changed bool, err error) {
	to := controlplane.StateLive
	if action == controlplane.ActionEnd {
		to = controlplane.StateEnded
	}
	conf, err := c.srv.cfg.Store.SetConferenceState(c.id, to)
	if err != nil {
		return false, refuseAction(controlplane.RefusedBadState, err.Error())
	}
	return c.conferenceChanged(conf), nil
}

// conferenceChanged follows a conference's stored state: everyone hears
// of it; when it ends every participant is sent away.
func (c *conference) conferenceChanged(conf controlplane.Conference) (changed bool) {
	c.mu.Lock()
	changed = c.state != conf.State
	c.state = conf.State
	c.mu.Unlock()
	if !changed {
		return false
	}
	c.log.Info("conference state", "state", string(conf.State))
	c.broadcastFloor()
	if conf.State == controlplane.StateLive && conf.AutoRecord {
		c.autoRecord()
	}
	if conf.State == controlplane.StateEnded {
		c.update(func() { c.recording = false })
		for _, ss := range c.sessionList() {
			ss.end(wire.ByeEnded)
		}
	}
	return true
}

// Control applies a host's floor action to a conference on behalf of the
// API (the same rules as the host console's control messages).
func (s *Server) Control(conferenceID string, req controlplane.FloorRequest) error {
	conf, err := s.liveConference(conferenceID)
	if err != nil {
		return err
	}
	_, err = conf.control(actor{role: controlplane.RoleHost, bridge: controlplane.HubBridge.ID}, req)
	return err
}

// Floor returns a conference's floor state.
func (s *Server) Floor(conferenceID string) (controlplane.FloorState, error) {
	conf, err := s.liveConference(conferenceID)
	if err != nil {
		return controlplane.FloorState{}, err
	}
	return conf.floorState(), nil
}

// ConferenceChanged follows a change to a stored conference (its state set
// through the API): pages hear of it, and an ended conference sends
// everyone away.
func (s *Server) ConferenceChanged(c controlplane.Conference) {
	s.mu.Lock()
	conf := s.conferences[c.ID]
	s.mu.Unlock()
	if conf != nil {
		conf.conferenceChanged(c)
		return
	}
	s.autoRecordNew(c)
}

func (s *Server) liveConference(id string) (*conference, error) {
	c, err := s.cfg.Store.Conference(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownConference, id)
	}
	return s.conference(c)
}
