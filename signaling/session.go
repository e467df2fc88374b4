package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// session is one WebSocket connection. Its reader runs on the HTTP
// handler's goroutine and handles messages in order; a writer goroutine
// owns the socket's write side. Anything that wants to talk to the client
// queues a message with send, which never blocks: a client that falls
// sendQueue messages behind is dropped.
type session struct {
	srv    *Server
	conn   *websocket.Conn
	remote string
	cookie string // the login session cookie of the upgrade request, if any
	// headless is "whip" or "whep" for a session negotiated over HTTP:
	// it has no WebSocket, and what would be sent to it is dropped.
	headless string
	// joinCounted: the upgrade was held against the address's allowance of
	// failed joins until the join's outcome settles it (settled).
	joinCounted bool
	settled     atomic.Bool
	// The terminal's latest report, and the freezes it reported since the
	// monitor last looked (linkmon.go).
	report  atomic.Pointer[wire.Report]
	freezes atomic.Int64
	log     *slog.Logger
	out     chan []byte

	// Set once by join, read-only afterwards.
	adm  controlplane.Admission
	conf *conference
	peer *sfu.Peer

	// worstLink is the worst link state written to the attendance record
	// for this session (rank in linkStates).
	worstLink atomic.Int32

	// who names the caller in the audit log, and cred is what admitted
	// it: checked again while it lasts (revoke.go). Both set by join.
	who  string
	cred controlplane.Credential

	// How often the client may send messages at all, offers and control
	// actions (limits.go; reader goroutine only).
	messages, offers, controls, walls allowance

	// What the member's media say (offers, candidates, layers) waits
	// for the joined message: a bridge's peer exists, and can be
	// offered another bridge's newly published track, before its join
	// is answered, and a terminal takes an offer that comes before
	// joined as one for the media connections it had before.
	heldMu sync.Mutex
	told   bool // joined was sent
	held   []wire.Message

	closeOnce sync.Once
	done      chan struct{} // closed when the session ends
	byeReason string        // guarded by closeOnce
}

func newSession(s *Server, conn *websocket.Conn, remote string) *session {
	return &session{
		srv:      s,
		conn:     conn,
		remote:   remote,
		log:      s.log.With("remote", remote),
		out:      make(chan []byte, sendQueue),
		done:     make(chan struct{}),
		messages: newAllowance(messageRate, messageBurst),
		offers:   newAllowance(offerRate, offerBurst),
		controls: newAllowance(controlRate, controlBurst),
		walls:    newAllowance(wallRate, wallBurst),
	}
}

func (ss *session) run() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		ss.writeLoop()
	}()
	ss.conn.SetReadLimit(maxMessageBytes)
	ss.conn.SetPongHandler(func(string) error {
		return ss.conn.SetReadDeadline(time.Now().Add(pongTimeout))
	})
	_ = ss.conn.SetReadDeadline(time.Now().Add(ss.srv.cfg.JoinTimeout))
	ss.readLoop()
	ss.end("")
	if ss.conf != nil {
		ss.conf.leave(ss)
	}
	<-writerDone
	_ = ss.conn.Close()
}

func (ss *session) readLoop() {
	for {
		typ, b, err := ss.conn.ReadMessage()
		if err != nil {
			if ss.peer != nil && !errors.Is(err, websocket.ErrCloseSent) {
				ss.log.Info("signaling connection ended", "err", err)
			}
			return
		}
		if typ != websocket.TextMessage {
			ss.sendError(wire.CodeBadMessage, "binary messages are not part of the protocol", "")
			if ss.peer == nil {
				return // a connection that cannot even join properly goes away
			}
			continue
		}
		if ok, drop := ss.messages.take(); !ok {
			if drop {
				ss.log.Warn("disconnected: kept sending over the message limit")
				ss.sendError(wire.CodeRateLimited, "too many messages; disconnected", "")
				return
			}
			ss.sendError(wire.CodeRateLimited, "too many messages; wait", "")
			continue
		}
		m, err := wire.Decode(b)
		if err != nil {
			code := wire.CodeBadMessage
			if errors.Is(err, wire.ErrUnknownType) {
				code = wire.CodeUnknownType
			}
			ss.sendError(code, err.Error(), "")
			if ss.peer == nil {
				return // a connection that cannot even join properly goes away
			}
			continue
		}
		if !ss.handle(m) {
			return
		}
	}
}

// handle processes one message; false ends the session.
func (ss *session) handle(m wire.Message) bool {
	if j, ok := m.(*wire.Join); ok {
		if ss.peer != nil {
			ss.sendError(wire.CodeAlreadyJoined, "this connection has joined already", wire.TypeJoin)
			return true
		}
		return ss.join(j)
	}
	if ss.peer == nil {
		ss.sendError(wire.CodeNotJoined, "join first", m.MessageType())
		return false
	}
	switch m := m.(type) {
	case *wire.Offer:
		if ok, drop := ss.offers.take(); !ok {
			return ss.rateLimited(drop, wire.TypeOffer)
		}
		if m.PC != wire.PCPublish {
			ss.sendError(wire.CodeBadMessage, `clients offer on "pub" only`, wire.TypeOffer)
			return true
		}
		if !mayPublish(ss.adm.Role) {
			ss.sendError(wire.CodeForbidden, "your role does not publish", wire.TypeOffer)
			return true
		}
		answer, err := ss.peer.AcceptOffer(m.SDP)
		if err != nil {
			ss.log.Warn("offer refused", "err", err)
			ss.sendError(wire.CodeNegotiationFailed, err.Error(), wire.TypeOffer)
			return true
		}
		ss.send(wire.Answer{PC: wire.PCPublish, SDP: answer})
	case *wire.Answer:
		if m.PC != wire.PCSubscribe {
			ss.sendError(wire.CodeBadMessage, `clients answer on "sub" only`, wire.TypeAnswer)
			return true
		}
		if err := ss.peer.AcceptAnswer(m.SDP); err != nil {
			ss.log.Warn("answer refused", "err", err)
			ss.sendError(wire.CodeNegotiationFailed, err.Error(), wire.TypeAnswer)
		}
	case *wire.Candidate:
		pc, ok := pcFromWire(m.PC)
		if !ok {
			ss.sendError(wire.CodeBadMessage, fmt.Sprintf("unknown pc %q", m.PC), wire.TypeCandidate)
			return true
		}
		if err := ss.peer.AddCandidate(pc, candidateFromWire(m.Candidate)); err != nil {
			ss.log.Debug("candidate refused", "pc", m.PC, "err", err)
			ss.sendError(wire.CodeBadMessage, err.Error(), wire.TypeCandidate)
		}
	case *wire.Leave:
		ss.end(wire.ByeLeft)
		return false
	case *wire.Restart:
		if m.PC != wire.PCSubscribe {
			ss.sendError(wire.CodeBadMessage, `the server restarts "sub" only; restart "pub" by offering`, wire.TypeRestart)
			return true
		}
		ss.log.Info("ICE restart asked")
		ss.peer.RestartICE()
	case *wire.Report:
		if m.Path != "" && !wire.ValidPath(m.Path) {
			ss.sendError(wire.CodeBadMessage, "unknown path "+strconv.Quote(m.Path), wire.TypeReport)
			return true
		}
		if err := checkReport(m); err != nil {
			ss.sendError(wire.CodeBadMessage, err.Error(), wire.TypeReport)
			return true
		}
		if m.Path != "" {
			ss.conf.setPath(ss.adm.Bridge, m.Path)
		}
		ss.noteReport(m)
	case *wire.Control:
		if ok, drop := ss.controls.take(); !ok {
			return ss.rateLimited(drop, wire.TypeControl)
		}
		ss.control(*m)
	case *wire.Wall:
		if ok, drop := ss.walls.take(); !ok {
			return ss.rateLimited(drop, wire.TypeWall)
		}
		ss.showWall(m)
	default:
		ss.sendError(wire.CodeBadMessage, "clients do not send "+m.MessageType(), m.MessageType())
	}
	return true
}

// rateLimited answers a request over its kind's limit, and says whether
// the session goes on (not when the client kept going: drop).
func (ss *session) rateLimited(drop bool, request string) bool {
	if drop {
		ss.log.Warn("disconnected: kept sending "+request+" over the limit", "refused", maxRefusedInARow)
		ss.sendError(wire.CodeRateLimited, "too many "+request+" requests; disconnected", request)
		return false
	}
	ss.sendError(wire.CodeRateLimited, "too many "+request+" requests; wait", request)
	return true
}

// control carries out a control action (or refuses it) and puts it in
// the audit log, whoever sent it and whatever the outcome. An action that
// changed nothing is answered with the floor state to its sender alone.
func (ss *session) control(m wire.Control) {
	req := controlplane.FloorRequest{Action: controlplane.FloorAction(m.Action), Bridge: m.Bridge, Track: m.Track, By: ss.who}
	changed, err := ss.conf.control(actor{role: ss.adm.Role, bridge: ss.adm.Bridge.ID}, req)
	result := "ok"
	var refusal *controlplane.FloorRefusal
	switch {
	case errors.As(err, &refusal):
		result = refusalCode(refusal.Reason)
		ss.sendError(result, refusal.Message, wire.TypeControl)
	case err != nil:
		result = wire.CodeInternal
		ss.log.Error("control", "action", m.Action, "err", err)
		ss.sendError(wire.CodeInternal, "could not do that", wire.TypeControl)
	case !changed:
		result = "unchanged"
		ss.send(ss.conf.floorMessage())
	}
	target := m.Bridge
	if target == "" {
		target = m.Track
	}
	if len(target) > 128 {
		target = target[:128] + "…"
	}
	if err := ss.srv.cfg.Store.Audit(controlplane.AuditEntry{
		Who: ss.who, Role: ss.adm.Role, Action: "control " + auditAction(req.Action),
		Target: ss.adm.Conference.ID + "/" + target, Result: result, Remote: remoteIP(ss.remote).String(),
	}); err != nil {
		ss.log.Error("audit log write failed", "err", err)
	}
}

// auditAction is the action as the audit log names it: a known one, or
// "unknown" (a client's made-up word does not go in the log).
func auditAction(a controlplane.FloorAction) string {
	if a.Known() {
		return string(a)
	}
	return "unknown"
}

// join admits the session or refuses it with a typed error; a refused
// connection leaves nothing behind.
// settleJoin settles the join attempt with the address's allowance of
// failed joins, once.
func (ss *session) settleJoin(failed bool) {
	if ss.settled.CompareAndSwap(false, true) {
		ss.srv.fails.settle(remoteIP(ss.remote), ss.joinCounted, failed)
	}
}

func (ss *session) join(j *wire.Join) bool {
	// A node cut from the cluster's store can check no credential and
	// knows no owner: it says so at once rather than after the store's
	// timeout. Its running meetings go on.
	if err := ss.srv.unavailable(); err != nil {
		ss.settleJoin(false)
		ss.log.Info("join refused: the cluster's store is out of reach", "err", err)
		ss.sendError(wire.CodeClusterUnavailable, clusterUnavailableMessage, wire.TypeJoin)
		return false
	}
	var adm controlplane.Admission
	var err error
	pass := ""
	switch {
	case j.Token == "" && ss.cookie != "":
		// A host (or anyone) logged in on the admin page: the session
		// cookie stands for a link token.
		var g controlplane.Grant
		if g, err = ss.srv.cfg.Store.SessionGrant(ss.cookie); err == nil {
			ss.who = controlplane.WhoOf(g)
			ss.cred = controlplane.SessionCredential(ss.cookie, g.Role)
			adm, err = ss.srv.cfg.Store.AdmitGrant(g, j.Conference)
		} else {
			err = controlplane.ErrTokenInvalid
		}
		if err == nil && ss.srv.cfg.Cluster != nil {
			// For the join at another node (a failover, a hand-over).
			var perr error
			if pass, perr = ss.srv.cfg.Store.SessionPass(ss.cookie); perr != nil {
				ss.log.Warn("no pass for another node: the console will need its login there", "err", perr)
			}
		}
	case j.Token == "" && j.Pass != "":
		// The same login at another node of the cluster.
		var g controlplane.Grant
		if g, ss.cred, err = ss.srv.cfg.Store.PassGrant(j.Pass); err == nil {
			ss.who = controlplane.WhoOf(g)
			adm, err = ss.srv.cfg.Store.AdmitGrant(g, j.Conference)
			pass = j.Pass
		} else if !errors.Is(err, controlplane.ErrStoreUnavailable) {
			err = controlplane.ErrTokenInvalid
		}
	default:
		ss.cred = controlplane.TokenCredential(j.Token)
		adm, err = ss.srv.cfg.Store.Admit(j.Token, j.Conference)
	}
	if err == nil && !mayJoin(adm.Role) {
		err = controlplane.ErrRoleCannotJoin // a viewer link is for WHEP
	}
	if errors.Is(err, controlplane.ErrStoreUnavailable) {
		ss.srv.clusterRefused.Add(1)
		ss.settleJoin(false)
		ss.log.Warn("join refused: the cluster's store did not answer", "err", err)
		ss.sendError(wire.CodeClusterUnavailable, clusterUnavailableMessage, wire.TypeJoin)
		return false
	}
	if err != nil {
		code, msg := admissionError(err)
		ss.settleJoin(code != wire.CodeConferenceClosed && code != wire.CodeInternal)
		ss.log.Info("join refused", "code", code, "conference", j.Conference)
		ss.sendError(code, msg, wire.TypeJoin)
		return false
	}
	ss.settleJoin(false)
	ss.adm = adm
	if ss.who == "" {
		ss.who = controlplane.WhoOf(controlplane.Grant{Role: adm.Role, Conference: adm.Conference.ID, Bridge: adm.Bridge.ID})
	}
	ss.log = ss.srv.log.With("conference", adm.Conference.ID, "bridge", adm.Bridge.ID, "role", string(adm.Role), "remote", ss.remote)
	// The cluster may hold the join a few seconds (a dead owner's lease
	// running out): that wait is the server's, not the client's.
	_ = ss.conn.SetReadDeadline(time.Now().Add(ss.srv.cfg.JoinTimeout))
	switch serve, to, err := ss.srv.claim(adm.Conference.ID); {
	case err != nil:
		ss.srv.clusterRefused.Add(1)
		ss.log.Warn("join refused: the cluster cannot be asked who serves the conference", "err", err)
		ss.sendError(wire.CodeClusterUnavailable, clusterUnavailableMessage, wire.TypeJoin)
		return false
	case !serve:
		ss.log.Info("join sent to the node serving the conference", "node", to)
		ss.send(wire.Redirect{URL: to})
		return false
	}
	conf, err := ss.srv.conference(adm.Conference)
	if err != nil {
		ss.sendError(wire.CodeInternal, err.Error(), wire.TypeJoin)
		return false
	}
	ss.conf = conf
	m, resumed, err := conf.admit(ss, j.Resume)
	adm = ss.adm // admit names a console beside a WHIP encoder HubConsole
	var ce *ControlError
	if errors.As(err, &ce) {
		ss.log.Info("join refused", "code", ce.Code)
		ss.sendError(ce.Code, ce.Message, wire.TypeJoin)
		return false
	}
	if err != nil {
		ss.log.Error("join failed", "err", err)
		ss.sendError(wire.CodeInternal, "could not create the media session", wire.TypeJoin)
		return false
	}
	ss.peer = m.peer
	_ = ss.conn.SetReadDeadline(time.Now().Add(pongTimeout))
	ss.log.Info("joined", "resumed", resumed)
	ss.sendJoined(wire.Joined{
		Participant: adm.Bridge.ID,
		Role:        string(adm.Role),
		Conference:  wire.Conference{ID: adm.Conference.ID, Title: adm.Conference.Title, State: string(adm.Conference.State)},
		Bridge:      bridgeToWire(adm.Bridge),
		ICEServers:  ss.srv.iceServers(adm.Bridge.ID),
		Resume:      m.resume,
		Resumed:     resumed,
		Nodes:       ss.srv.nodes(),
		Pass:        pass,
	})
	if adm.Role == controlplane.RoleHost {
		ss.send(wire.Roster{Bridges: conf.roster()})
	}
	ss.send(conf.floorMessage())
	if resumed {
		m.peer.ResendOffer() // an offer sent while the connection was down was lost
		conf.mediaStateChanged(ss)
		return true
	}
	conf.subscribeExisting(ss)
	return true
}

func admissionError(err error) (code, msg string) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{controlplane.ErrTokenRequired, wire.CodeTokenRequired},
		{controlplane.ErrTokenInvalid, wire.CodeTokenInvalid},
		{controlplane.ErrWrongConference, wire.CodeWrongConference},
		{controlplane.ErrNotInvited, wire.CodeNotInvited},
		{controlplane.ErrConferenceClosed, wire.CodeConferenceClosed},
		{controlplane.ErrRoleCannotJoin, wire.CodeRoleCannotJoin},
	} {
		if errors.Is(err, c.err) {
			return c.code, c.err.Error()
		}
	}
	return wire.CodeInternal, "could not check the token"
}

// send queues a message for the client without blocking.
func (ss *session) send(m wire.Message) {
	if ss.headless != "" {
		return
	}
	b, err := wire.Encode(m)
	if err != nil {
		ss.log.Error("encode", "type", m.MessageType(), "err", err)
		return
	}
	select {
	case <-ss.done:
	case ss.out <- b:
	default:
		ss.log.Warn("client too slow, dropping it", "queued", len(ss.out))
		go ss.end("")
	}
}

func (ss *session) sendError(code, msg, request string) {
	ss.send(wire.Error{Code: code, Message: msg, Request: request})
}

func (ss *session) writeLoop() {
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case b := <-ss.out:
			if !ss.write(websocket.TextMessage, b) {
				ss.end("")
				return
			}
		case <-ping.C:
			if !ss.write(websocket.PingMessage, nil) {
				ss.end("")
				return
			}
		case <-ss.done:
			// Flush what was queued (the error that explains a refusal,
			// the bye), then close politely.
			for {
				select {
				case b := <-ss.out:
					if !ss.write(websocket.TextMessage, b) {
						return
					}
					continue
				default:
				}
				break
			}
			_ = ss.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ss.byeReason), time.Now().Add(time.Second))
			return
		}
	}
}

func (ss *session) write(typ int, b []byte) bool {
	_ = ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return ss.conn.WriteMessage(typ, b) == nil
}

// end ends the session once, from any goroutine: a bye with the reason (if
// any) is queued and the reader is unblocked; the reader's goroutine then
// takes the participant out of its conference.
func (ss *session) end(reason string) {
	ss.closeOnce.Do(func() {
		ss.byeReason = reason
		if reason != "" {
			if b, err := wire.Encode(wire.Bye{Reason: reason}); err == nil {
				select {
				case ss.out <- b:
				default:
				}
			}
		}
		close(ss.done)
		// Unblock the reader if it is still waiting for the client.
		if ss.conn != nil {
			_ = ss.conn.SetReadDeadline(time.Now())
		}
	})
}

// PeerListener implementation: what the SFU wants said to the client.

// sendMedia sends what the member's media say, once the client has been
// told it joined; until then it is held.
func (ss *session) sendMedia(m wire.Message) {
	if ss.headless != "" {
		return // nothing is sent to it (and it is never told joined)
	}
	ss.heldMu.Lock()
	defer ss.heldMu.Unlock()
	if !ss.told {
		ss.held = append(ss.held, m)
		return
	}
	ss.send(m)
}

// sendJoined sends the joined message, then whatever the media said
// before it.
func (ss *session) sendJoined(j wire.Joined) {
	ss.heldMu.Lock()
	defer ss.heldMu.Unlock()
	ss.send(j)
	ss.told = true
	for _, m := range ss.held {
		ss.send(m)
	}
	ss.held = nil
}

func (ss *session) OnOffer(sdp string) {
	ss.sendMedia(wire.Offer{PC: wire.PCSubscribe, SDP: sdp})
}

func (ss *session) OnCandidate(pc sfu.PC, c webrtc.ICECandidateInit) {
	ss.log.Debug("local candidate", "pc", pc.String(), "candidate", c.Candidate)
	ss.sendMedia(wire.Candidate{PC: pc.String(), Candidate: candidateToWire(c)})
}

func (ss *session) OnConnectionState(pc sfu.PC, s webrtc.PeerConnectionState) {
	if ss.conf != nil {
		ss.conf.mediaStateChanged(ss)
	}
}

// OnLayer tells the page which layer of a video track it now receives.
func (ss *session) OnLayer(e sfu.LayerEvent) {
	layer := ""
	if e.Layer >= 0 {
		layer = sfu.RIDForLayer(e.Layer)
	}
	lvl := slog.LevelInfo
	if ss.adm.Role == controlplane.RoleHost && e.Publisher != controlplane.HubBridge.ID {
		lvl = slog.LevelDebug // the wall's tiles come and go as the host scrolls
	}
	ss.log.Log(context.Background(), lvl, "layer", "track", e.Track, "publisher", e.Publisher, "layer", layer, "reason", e.Reason, "estimate", e.Estimate)
	ss.sendMedia(wire.Layer{Track: e.Track, Publisher: e.Publisher, Layer: layer, Reason: e.Reason, Estimate: e.Estimate})
	if e.Publisher == controlplane.HubBridge.ID && ss.adm.Role == controlplane.RoleRoom {
		ss.noteLink(e.Reason)
	}
}

func pcFromWire(s string) (sfu.PC, bool) {
	switch s {
	case wire.PCPublish:
		return sfu.Publish, true
	case wire.PCSubscribe:
		return sfu.Subscribe, true
	}
	return 0, false
}

func candidateFromWire(c wire.ICECandidate) webrtc.ICECandidateInit {
	return webrtc.ICECandidateInit{
		Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment,
	}
}

func candidateToWire(c webrtc.ICECandidateInit) wire.ICECandidate {
	return wire.ICECandidate{
		Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment,
	}
}

func bridgeToWire(b controlplane.Bridge) wire.Bridge {
	return wire.Bridge{ID: b.ID, Name: b.Name, Kind: string(b.Kind)}
}

// linkStates ranks the link states the attendance record keeps, from a
// room's view of the hub's video: reduced for the link is fair, paused is
// the worst.
var linkStates = []string{controlplane.LinkGood, controlplane.LinkFair, controlplane.LinkPaused}

// noteLink records in the attendance record that the room's link got
// worse than it has been this session (at most twice a session; written
// off the allocator's goroutine).
func (ss *session) noteLink(reason string) {
	rank := int32(0)
	switch reason {
	case wire.ReasonBandwidth:
		rank = 1
	case wire.ReasonPaused:
		rank = 2
	}
	for {
		cur := ss.worstLink.Load()
		if rank <= cur {
			return
		}
		if ss.worstLink.CompareAndSwap(cur, rank) {
			break
		}
	}
	conf, bridge, state := ss.adm.Conference.ID, ss.adm.Bridge.ID, linkStates[rank]
	if ss.adm.Bridge.Kind == controlplane.KindViewer {
		return // no attendance for viewers
	}
	go func() {
		if err := ss.srv.cfg.Store.AttendanceLink(conf, bridge, state); err != nil {
			ss.log.Error("attendance", "err", err)
		}
	}()
}
