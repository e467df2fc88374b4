// Package terminal is a synthetic room terminal: the same signaling
// protocol and the same reconnection rules as the room page
// (web/static/client.js), on pion, publishing the test clips and receiving
// the hub. The room simulator (cmd/roomsim), the drills and the tests run
// many of them in one process; a Link lets a drill cut a terminal's line.
package terminal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/sfu/sfutest"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// The page's reconnection rules (client.js).
const (
	reconnectMin   = 250 * time.Millisecond
	reconnectMax   = 1500 * time.Millisecond
	connectTimeout = 2500 * time.Millisecond
	stallTimeout   = 2 * time.Second
	// mediaTimeout: media connections built after a join and still not
	// connected this long after are given up and built again from a
	// fresh join (a handshake lost on a loaded server).
	mediaTimeout = 4 * time.Second
)

// Config describes one terminal.
type Config struct {
	// Base is the server's address, https://host:port.
	Base string
	// Token is the bridge's terminal link token; Conference may be empty.
	Token      string
	Conference string
	// Link is the terminal's line (nil: one that never fails).
	Link *Link
	// LocalAddr is the address its media sockets use (default 127.0.0.1):
	// another of this machine's, such as the root side of a veth pair,
	// to reach a server in a network namespace.
	LocalAddr string
	// Layers are the simulcast RIDs published (default q and h: the 180p
	// and 360p clips).
	Layers []string
	// NoCamera publishes the microphone only, and says so in the
	// terminal's reports (a room whose camera is missing).
	NoCamera bool
	Logger   *slog.Logger
}

// reportEvery is how often the terminal reports its side of the link, as
// the page does.
const reportEvery = 2 * time.Second

// States a terminal reports.
const (
	StateStarting     = "starting"
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateReconnecting = "reconnecting"
	StateEnded        = "ended"
)

// ErrRefused wraps a join the server refused for good (bad link, not
// invited, replaced by another terminal, conference ended).
var ErrRefused = errors.New("terminal: refused")

// Terminal is one synthetic room terminal.
type Terminal struct {
	cfg Config
	log *slog.Logger
	// Each media connection has its own UDP socket, as a browser's has:
	// the server tells connections apart by their address.
	socks []io.Closer

	// Owned by Run's goroutine.
	resume    string
	node      string   // the cluster node serving the conference (a redirect names it), else cfg.Base
	redirects int      // in a row since the last join
	nodes     []string // the cluster's nodes, as the last join named them
	pub, sub  *webrtc.PeerConnection
	publisher *sfutest.Publisher
	published bool
	pending   map[string][]webrtc.ICECandidateInit

	send     atomic.Pointer[func(wire.Message)] // the current connection's writer, nil between connections
	pcEvents chan struct{}                      // a media connection changed state

	state     atomic.Value // string
	bridge    atomic.Value // string
	hubVideo  atomic.Int64 // hub video packets received
	lastHub   atomic.Int64 // when the last one came (unix ns)
	joins     atomic.Int64 // fresh joins
	resumes   atomic.Int64 // resumed joins
	iceRestar atomic.Int64 // ICE restarts asked
	actions   atomic.Int64 // technicians' actions received
	keyframes atomic.Int64 // keyframe requests received for its camera
	lastKF    atomic.Int64 // when the last one came (unix ns)
	recording atomic.Int32 // the last floor message: 0 none yet, 1 not recorded, 2 recorded
	crash     atomic.Bool  // stop without a goodbye (a reboot)
}

// New prepares a terminal.
func New(cfg Config) (*Terminal, error) {
	if len(cfg.Layers) == 0 {
		cfg.Layers = []string{"q", "h"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Terminal{cfg: cfg, log: cfg.Logger, pcEvents: make(chan struct{}, 8)}
	t.state.Store(StateStarting)
	t.bridge.Store("")
	return t, nil
}

// newPC makes a media connection on a loopback UDP socket of its own,
// behind the terminal's line.
func (t *Terminal) newPC() (*webrtc.PeerConnection, error) {
	local := net.ParseIP(t.cfg.LocalAddr)
	if local == nil {
		local = net.IPv4(127, 0, 0, 1)
	}
	udp, err := net.ListenPacket("udp4", net.JoinHostPort(local.String(), "0"))
	if err != nil {
		return nil, err
	}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: t.cfg.Link.PacketConn(udp)})
	t.socks = append(t.socks, mux, udp)
	api, err := sfutest.ClientAPIWith(true, func(se *webrtc.SettingEngine) {
		if !local.IsLoopback() { // its own address only, to whatever the server offers
			se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(local) })
			se.SetRemoteIPFilter(func(net.IP) bool { return true })
			se.SetInterfaceFilter(func(string) bool { return true })
		}
		se.SetICEUDPMux(mux)
		// As quick to notice a dead line as Chromium's consent checks.
		se.SetICETimeouts(2*time.Second, 15*time.Second, 500*time.Millisecond)
	})
	if err != nil {
		return nil, err
	}
	return api.NewPeerConnection(webrtc.Configuration{})
}

// State is where the terminal is: starting, connecting, connected,
// reconnecting, ended.
func (t *Terminal) State() string { return t.state.Load().(string) }

// Bridge is the bridge the server admitted this terminal as.
func (t *Terminal) Bridge() string { return t.bridge.Load().(string) }

// HubPackets counts the hub's video packets received; LastHub is when the
// last one came.
func (t *Terminal) HubPackets() int64 { return t.hubVideo.Load() }

// LastHub is when the hub's last video packet arrived (zero: never).
func (t *Terminal) LastHub() time.Time {
	if ns := t.lastHub.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Joins and Resumes count fresh and resumed joins.
func (t *Terminal) Joins() int64   { return t.joins.Load() }
func (t *Terminal) Resumes() int64 { return t.resumes.Load() }

// ICERestarts counts the ICE restarts the terminal asked for; Actions the
// technicians' actions it received.
func (t *Terminal) ICERestarts() int64 { return t.iceRestar.Load() }
func (t *Terminal) Actions() int64     { return t.actions.Load() }

// KeyframeRequests counts the keyframe requests (PLI, FIR) the server sent
// for the terminal's camera, over all its connections.
func (t *Terminal) KeyframeRequests() int64 { return t.keyframes.Load() }

// LastKeyframeRequest is when the last keyframe request came (zero: none).
func (t *Terminal) LastKeyframeRequest() time.Time {
	if ns := t.lastKF.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Recording is what the last floor message said of the recording
// indicator (known false before the first).
func (t *Terminal) Recording() (on, known bool) {
	v := t.recording.Load()
	return v == 2, v != 0
}

func (t *Terminal) setState(s string) {
	if t.state.Swap(s) != s {
		t.log.Debug("terminal state", "state", s)
	}
}

// Run keeps the terminal in its conference until ctx ends (then it says
// goodbye) or the server refuses it for good. It never gives up otherwise.
func (t *Terminal) Run(ctx context.Context) error {
	defer t.teardown()
	attempt := 0
	for {
		joined, fresh, err := t.session(ctx)
		if ctx.Err() != nil {
			t.setState(StateEnded)
			return nil
		}
		if errors.Is(err, ErrRefused) {
			t.setState(StateEnded)
			return err
		}
		if errors.Is(err, errRedirected) && t.redirects < 3 {
			continue // straight to the node named (not round and round)
		}
		if joined {
			attempt = 0
			t.redirects = 0
		} else if !errors.Is(err, errRedirected) {
			t.node = t.nextNode() // the node may be gone: try the next address
		}
		t.cfg.Link.noticed()
		t.setState(StateReconnecting)
		if fresh {
			t.resume = ""
		}
		ceiling := min(reconnectMax, reconnectMin<<min(attempt, 8))
		attempt++
		delay := ceiling/2 + time.Duration(rand.Int64N(int64(ceiling/2)+1))
		select {
		case <-ctx.Done():
			t.setState(StateEnded)
			return nil
		case <-time.After(delay):
		}
	}
}

// session is one signaling connection: join (resuming if it can), then
// follow the server until the connection or the media is lost. joined
// reports whether it got in; fresh asks the next one to start over.
func (t *Terminal) session(ctx context.Context) (joined, fresh bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	dialer := websocket.Dialer{
		NetDialContext:   t.cfg.Link.DialContext,
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true}, // the city's own server, often self-signed
		HandshakeTimeout: connectTimeout,
	}
	base := t.cfg.Base
	if t.node != "" {
		base = t.node
	}
	url := "wss" + strings.TrimPrefix(base, "https") + "/signal"
	conn, _, err := dialer.DialContext(dctx, url, http.Header{"Origin": {t.cfg.Base}})
	cancel()
	if err != nil {
		return false, false, err
	}
	defer conn.Close()
	var wmu sync.Mutex
	send := func(m wire.Message) {
		b, err := wire.Encode(m)
		if err != nil {
			return
		}
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = conn.WriteMessage(websocket.TextMessage, b)
	}
	t.send.Store(&send)
	defer t.send.Store(nil)
	send(&wire.Join{Token: t.cfg.Token, Conference: t.cfg.Conference, Resume: t.resume})

	msgs := make(chan wire.Message, 64)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			m, err := wire.Decode(b)
			if err != nil {
				continue
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	var stall <-chan time.Time
	var building <-chan time.Time // set when a join builds new media connections
	report := time.NewTicker(reportEvery)
	defer report.Stop()
	var reporting atomic.Bool
	for {
		select {
		case <-report.C:
			// Off the loop: on a cut line the write stalls until its
			// deadline, and the loop must go on noticing the media stall.
			if joined && reporting.CompareAndSwap(false, true) {
				camera, mic := !t.cfg.NoCamera, true
				go func() {
					defer reporting.Store(false)
					send(&wire.Report{Camera: &camera, Microphone: &mic})
				}()
			}
		case <-ctx.Done():
			if !t.crash.Load() {
				send(&wire.Leave{})
			}
			return joined, false, nil
		case <-readErr:
			return joined, false, nil
		case <-building:
			building = nil
			if st := t.mediaState(); st != webrtc.PeerConnectionStateConnected {
				t.log.Info("media not connected after the join: starting over", "state", st)
				return joined, true, nil
			}
		case <-stall:
			stall = nil
			switch t.mediaState() {
			case webrtc.PeerConnectionStateFailed:
				return joined, true, nil
			case webrtc.PeerConnectionStateDisconnected:
				return joined, false, nil // perhaps the signaling is dead too: reconnect, resume, restart ICE
			}
		case <-t.pcEvents:
			if !joined {
				// The media connections of before this join (a node that
				// died, say) failing now: the join starts them over.
				continue
			}
			switch st := t.mediaState(); st {
			case webrtc.PeerConnectionStateFailed:
				t.log.Info("media failed: starting over")
				return joined, true, nil
			case webrtc.PeerConnectionStateDisconnected:
				if stall == nil {
					t.cfg.Link.noticed()
					stall = time.After(stallTimeout)
				}
				t.setState(StateReconnecting)
			case webrtc.PeerConnectionStateConnected:
				stall = nil
				if joined {
					t.setState(StateConnected)
				}
			}
		case m := <-msgs:
			was := joined
			done, fresh, err := t.handle(m, send, &joined)
			if done || err != nil {
				return joined, fresh, err
			}
			if !was && joined && t.mediaState() != webrtc.PeerConnectionStateConnected {
				building = time.After(mediaTimeout)
			}
		}
	}
}

// mediaState sums up both media connections: failed or disconnected if
// either is, connected if both are.
func (t *Terminal) mediaState() webrtc.PeerConnectionState {
	if t.pub == nil || t.sub == nil {
		return webrtc.PeerConnectionStateNew
	}
	a, b := t.pub.ConnectionState(), t.sub.ConnectionState()
	switch {
	case a == webrtc.PeerConnectionStateFailed || b == webrtc.PeerConnectionStateFailed:
		return webrtc.PeerConnectionStateFailed
	case a == webrtc.PeerConnectionStateDisconnected || b == webrtc.PeerConnectionStateDisconnected:
		return webrtc.PeerConnectionStateDisconnected
	case a == webrtc.PeerConnectionStateConnected && b == webrtc.PeerConnectionStateConnected:
		return webrtc.PeerConnectionStateConnected
	}
	return webrtc.PeerConnectionStateConnecting
}

var finalErrors = map[string]bool{
	wire.CodeTokenRequired: true, wire.CodeTokenInvalid: true, wire.CodeWrongConference: true,
	wire.CodeNotInvited: true, wire.CodeRoleCannotJoin: true, wire.CodeConferenceEnded: true,
}

// handle processes one server message; done ends the connection.
// nextNode is the address after the current one among the first one
// (cfg.Base) and the cluster's nodes the last join named.
func (t *Terminal) nextNode() string {
	hosts := []string{t.cfg.Base}
	for _, n := range t.nodes {
		if !slices.Contains(hosts, n) {
			hosts = append(hosts, n)
		}
	}
	cur := t.node
	if cur == "" {
		cur = t.cfg.Base
	}
	return hosts[(slices.Index(hosts, cur)+1)%len(hosts)]
}

// errRedirected: the node asked sent the terminal to another (a cluster's
// node serving the conference).
var errRedirected = errors.New("terminal: sent to another node")

func (t *Terminal) handle(m wire.Message, send func(wire.Message), joined *bool) (done, fresh bool, err error) {
	switch m := m.(type) {
	case *wire.Redirect:
		t.log.Info("sent to the node serving the conference", "node", m.URL)
		t.node = m.URL
		t.redirects++
		return true, false, errRedirected
	case *wire.Nodes:
		t.nodes = m.Nodes
		return false, false, nil
	case *wire.Floor:
		if m.Recording {
			t.recording.Store(2)
		} else {
			t.recording.Store(1)
		}
		return false, false, nil
	case *wire.Joined:
		*joined = true
		t.nodes = m.Nodes
		t.bridge.Store(m.Participant)
		t.resume = m.Resume
		if m.Resumed && t.pub != nil {
			t.resumes.Add(1)
			if t.mediaState() != webrtc.PeerConnectionStateConnected {
				t.restartICE(send)
			} else {
				t.setState(StateConnected)
			}
			return false, false, nil
		}
		t.joins.Add(1)
		t.setState(StateConnecting)
		if err := t.build(send); err != nil {
			return true, true, err
		}
	case *wire.Offer:
		if m.PC != wire.PCSubscribe || t.sub == nil || !*joined {
			return false, false, nil // before joined: not for these media (PROTOCOL.md)
		}
		if err := t.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
			t.log.Warn("sub offer", "err", err)
			return true, true, nil
		}
		t.flush(wire.PCSubscribe)
		answer, err := t.sub.CreateAnswer(nil)
		if err == nil {
			err = t.sub.SetLocalDescription(answer)
		}
		if err != nil {
			t.log.Warn("sub answer", "err", err)
			return true, true, nil
		}
		send(&wire.Answer{PC: wire.PCSubscribe, SDP: t.sub.LocalDescription().SDP})
	case *wire.Answer:
		if m.PC != wire.PCPublish || t.pub == nil {
			return false, false, nil
		}
		if err := t.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			t.log.Warn("pub answer", "err", err)
			return true, true, nil
		}
		t.flush(wire.PCPublish)
		if !t.published {
			t.published = true
			t.publisher.Start()
		}
	case *wire.Candidate:
		c := webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid,
			SDPMLineIndex: m.Candidate.SDPMLineIndex, UsernameFragment: m.Candidate.UsernameFragment}
		pc := t.pc(m.PC)
		if pc == nil {
			return false, false, nil
		}
		if pc.RemoteDescription() == nil {
			t.pending[m.PC] = append(t.pending[m.PC], c)
		} else {
			_ = pc.AddICECandidate(c)
		}
	case *wire.Action:
		t.actions.Add(1)
		t.log.Info("technician action", "action", m.Action)
		switch m.Action {
		case wire.ActionICERestart:
			if t.pub != nil {
				t.restartICE(send)
			}
		case wire.ActionRejoin, wire.ActionReload:
			return true, true, nil // start over, as a reloaded page would
		}
	case *wire.Bye:
		switch m.Reason {
		case wire.ByeReplaced, wire.ByeEnded, wire.ByeLeft, wire.ByeKicked:
			return true, false, fmt.Errorf("%w: %s", ErrRefused, m.Reason)
		}
		return true, true, nil // the server is restarting: it will not know us
	case *wire.Error:
		if m.Request == wire.TypeJoin {
			if finalErrors[m.Code] {
				return true, false, fmt.Errorf("%w: %s: %s", ErrRefused, m.Code, m.Message)
			}
			return true, true, nil // e.g. locked for a moment: try again, fresh
		}
		t.log.Info("server error", "code", m.Code, "request", m.Request)
	}
	return false, false, nil
}

func (t *Terminal) pc(name string) *webrtc.PeerConnection {
	switch name {
	case wire.PCPublish:
		return t.pub
	case wire.PCSubscribe:
		return t.sub
	}
	return nil
}

func (t *Terminal) flush(name string) {
	pc := t.pc(name)
	for _, c := range t.pending[name] {
		_ = pc.AddICECandidate(c)
	}
	delete(t.pending, name)
}

// build makes new media connections (a fresh join) and offers to publish.
func (t *Terminal) build(send func(wire.Message)) error {
	t.teardown()
	t.pending = map[string][]webrtc.ICECandidateInit{}
	var err error
	for _, name := range []string{wire.PCPublish, wire.PCSubscribe} {
		pc, e := t.newPC()
		if e != nil {
			return e
		}
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c == nil {
				return
			}
			j := c.ToJSON()
			if s := t.send.Load(); s != nil {
				(*s)(&wire.Candidate{PC: name, Candidate: wire.ICECandidate{Candidate: j.Candidate, SDPMid: j.SDPMid,
					SDPMLineIndex: j.SDPMLineIndex, UsernameFragment: j.UsernameFragment}})
			}
		})
		pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) {
			select {
			case t.pcEvents <- struct{}{}:
			default:
			}
		})
		if name == wire.PCPublish {
			t.pub = pc
		} else {
			t.sub = pc
		}
	}
	t.sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		hub := tr.StreamID() == "hub" && tr.Kind() == webrtc.RTPCodecTypeVideo
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if hub {
				t.hubVideo.Add(1)
				t.lastHub.Store(time.Now().UnixNano())
				t.cfg.Link.hubMedia()
			}
		}
	})
	layers := t.cfg.Layers
	if t.cfg.NoCamera {
		layers = nil
	}
	if t.publisher, err = sfutest.NewPublisher(t.pub, "camera", layers, true); err != nil {
		return err
	}
	t.publisher.OnKeyframeRequest = func(string) { t.keyframes.Add(1); t.lastKF.Store(time.Now().UnixNano()) }
	t.published = false
	offer, err := t.pub.CreateOffer(nil)
	if err == nil {
		err = t.pub.SetLocalDescription(offer)
	}
	if err != nil {
		return err
	}
	send(&wire.Offer{PC: wire.PCPublish, SDP: t.pub.LocalDescription().SDP})
	return nil
}

// restartICE renews both connections' ICE after a resume: a new offer on
// "pub", and a request that the server offer again on "sub".
func (t *Terminal) restartICE(send func(wire.Message)) {
	t.iceRestar.Add(1)
	if t.pub.SignalingState() == webrtc.SignalingStateStable {
		offer, err := t.pub.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
		if err == nil {
			err = t.pub.SetLocalDescription(offer)
		}
		if err == nil {
			send(&wire.Offer{PC: wire.PCPublish, SDP: t.pub.LocalDescription().SDP})
		}
	}
	send(&wire.Restart{PC: wire.PCSubscribe})
}

func (t *Terminal) teardown() {
	for _, pc := range []*webrtc.PeerConnection{t.pub, t.sub} {
		if pc != nil {
			_ = pc.Close()
		}
	}
	if t.publisher != nil && t.published {
		t.publisher.Stop()
	}
	for _, c := range t.socks {
		_ = c.Close()
	}
	t.pub, t.sub, t.publisher, t.published, t.socks = nil, nil, nil, false, nil
}
