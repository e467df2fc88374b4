// Package signaling is the WebSocket protocol between the pages (or any
// client speaking signaling/wire) and the server: join with a token,
// offer/answer on two peer connections, trickle ICE, presence, leave. It
// admits participants through the control plane and wires their media
// through the SFU.
package signaling

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

// Config sets up a signaling server.
type Config struct {
	Store  *controlplane.Store
	SFU    *sfu.SFU
	Logger *slog.Logger
	// ICEServers gives the servers handed to a page at join (the
	// embedded TURN relay with credentials for this participant). Nil
	// hands none: the SFU's own candidates are enough on an open city
	// network, and a page must never be sent to a public STUN server.
	ICEServers func(participant string) []wire.ICEServer
	// CheckOrigin decides which pages may open the WebSocket; nil accepts
	// only pages served from the same host.
	CheckOrigin func(*http.Request) bool
	// JoinTimeout bounds how long a new connection may take to join (default 10 s).
	JoinTimeout time.Duration
	// Monitor, if set, is given every joined bridge's link once a second
	// and told of joins, leaves, drops and reconnects.
	Monitor *controlplane.Monitor
	// MaxViewers bounds the WHEP viewers of one conference (default
	// DefaultMaxViewers).
	MaxViewers int
	// Cluster, when set, decides which conferences this node serves.
	Cluster Cluster
	// ReconnectGrace is how long a participant whose connection was lost
	// keeps its place (media, floor, attendance interval) for a resume.
	// Zero means the default, 30 s; negative means none.
	ReconnectGrace time.Duration
	// Recordings configures recording (recording.go); a zero Dir refuses it.
	Recordings RecordingConfig
}

// iceServers is what a page is given at join; never null on the wire.
func (s *Server) iceServers(participant string) []wire.ICEServer {
	if s.cfg.ICEServers == nil {
		return []wire.ICEServer{}
	}
	if l := s.cfg.ICEServers(participant); l != nil {
		return l
	}
	return []wire.ICEServer{}
}

// DefaultReconnectGrace is how long a lost participant keeps its place.
const DefaultReconnectGrace = 30 * time.Second

// Limits on what a client may send.
const (
	maxMessageBytes = 1 << 20 // the hub's answer lists one m-line per room track
	sendQueue       = 256     // messages waiting for a slow client before it is dropped
	writeTimeout    = 10 * time.Second
	pingEvery       = 20 * time.Second
	pongTimeout     = 60 * time.Second
)

// Server accepts signaling connections.
type Server struct {
	cfg      Config
	log      *slog.Logger
	upgrader websocket.Upgrader

	fails *failedJoins

	mu          sync.Mutex
	conferences map[string]*conference
	closed      bool
	wg          sync.WaitGroup

	stopObserving chan struct{}
	observing     sync.WaitGroup
	roundMu       sync.Mutex
	round         chan struct{} // closed after each round of samples

	reconnects atomic.Uint64 // sessions resumed within the grace period
	// resumesRefused counts joins whose resume token this cluster did not
	// know (a failover should leave none).
	resumesRefused atomic.Uint64
	// clusterRefused counts joins refused for want of the cluster's store.
	clusterRefused atomic.Uint64

	media resources  // WHIP and WHEP sessions (whip.go)
	space spaceWatch // free space for recordings (diskwatch.go)

	minutes minutesState // the minutes videos' renders (minutes.go)
}

// Reconnects counts the participants that came back within the
// reconnection grace period, for the metrics.
func (s *Server) Reconnects() uint64 { return s.reconnects.Load() }

// ResumesRefused counts the joins whose resume token no node knew.
func (s *Server) ResumesRefused() uint64 { return s.resumesRefused.Load() }

// New builds a signaling server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 10 * time.Second
	}
	if cfg.ReconnectGrace == 0 {
		cfg.ReconnectGrace = DefaultReconnectGrace
	}
	s := &Server{
		cfg: cfg,
		log: cfg.Logger,
		upgrader: websocket.Upgrader{
			CheckOrigin:     cfg.CheckOrigin, // nil: gorilla's same-origin check
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
		},
		conferences:   map[string]*conference{},
		fails:         newFailedJoins(),
		stopObserving: make(chan struct{}),
		round:         make(chan struct{}),
	}
	if cfg.Monitor != nil {
		s.every(observeEvery, s.observe)
	}
	s.every(credentialEvery, func(time.Time) { s.checkCredentials() })
	if cfg.Recordings.Dir != "" {
		every := cfg.Recordings.SpaceCheckEvery
		if every <= 0 {
			every = DefaultSpaceCheckEvery
		}
		s.every(every, s.checkSpace)
	}
	s.startRetention()
	return s
}

// enter counts a request in, for Close to wait on; false once closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// ServeHTTP upgrades the request to a WebSocket and runs the session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()

	ip := remoteIP(r.RemoteAddr)
	ok, counted := s.fails.begin(ip)
	if !ok {
		// Too many failed joins from this address: refuse before the
		// upgrade, quietly (a flood must not flood the logs either).
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many failed joins from this address", http.StatusTooManyRequests)
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the request
	}
	ss := newSession(s, conn, r.RemoteAddr)
	ss.joinCounted = counted
	defer ss.settleJoin(false) // a session that never tried to join
	if c, err := r.Cookie(controlplane.SessionCookie); err == nil {
		ss.cookie = c.Value // a logged-in host may join without a link token
	}
	ss.run()
}

// conference returns the live state of conference c, creating it (and its
// SFU router) on first join.
func (s *Server) conference(c controlplane.Conference) (*conference, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errShuttingDown
	}
	if conf, ok := s.conferences[c.ID]; ok {
		return conf, nil
	}
	conf, err := newConference(s, c)
	if err != nil {
		return nil, err
	}
	s.conferences[c.ID] = conf
	return conf, nil
}

var errShuttingDown = errors.New("server shutting down")

// Roster returns the presence of every invited bridge in a conference, or
// nil if nobody has joined it since the server started.
func (s *Server) Roster(conferenceID string) []wire.RosterEntry {
	s.mu.Lock()
	conf := s.conferences[conferenceID]
	s.mu.Unlock()
	if conf == nil {
		return nil
	}
	return conf.roster()
}

// ErrUnknownConference is returned for a conference the store does not have.
var ErrUnknownConference = errors.New("signaling: no such conference")

// PinLayer caps the simulcast layer a bridge receives in a conference (a
// technician's override for a link known to be poor): "q", "h" or "f" (f
// lifts the cap). It applies at once if the bridge is connected, and to its
// later connections.
func (s *Server) PinLayer(conferenceID, bridge, rid string) error {
	layer, ok := sfu.LayerForRID(rid)
	if !ok || rid == "" {
		return fmt.Errorf("signaling: layer %q is not one of q, h, f", rid)
	}
	c, err := s.cfg.Store.Conference(conferenceID)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrUnknownConference, conferenceID)
	}
	if !c.Invites(bridge) {
		return fmt.Errorf("signaling: bridge %q is not invited to %s", bridge, conferenceID)
	}
	conf, err := s.conference(c)
	if err != nil {
		return err
	}
	conf.pin(bridge, layer)
	return nil
}

// Sessions counts joined sessions by role, for the metrics.
func (s *Server) Sessions() controlplane.SessionFigures {
	out := controlplane.SessionFigures{}
	for _, c := range s.conferenceList() {
		for _, ss := range c.sessionList() {
			out[ss.adm.Role]++
		}
	}
	return out
}

// Conferences returns the IDs of the conferences this server holds live
// state for (joined or acted on since it started, and not handed over to
// another node), sorted: what it serves, for the Nodes panel.
func (s *Server) Conferences() []string {
	out := []string{}
	for _, c := range s.conferenceList() {
		out = append(out, c.id)
	}
	slices.Sort(out)
	return out
}

// conferenceList is the live conferences, taken under the lock.
func (s *Server) conferenceList() []*conference {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conference, 0, len(s.conferences))
	for _, c := range s.conferences {
		out = append(out, c)
	}
	return out
}

// every runs f every d, on its own goroutine, until the server closes.
func (s *Server) every(d time.Duration, f func(now time.Time)) {
	s.observing.Add(1)
	go func() {
		defer s.observing.Done()
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-s.stopObserving:
				return
			case now := <-tick.C:
				f(now)
			}
		}
	}()
}

// Close tells every client the server is stopping, closes their sessions
// and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		close(s.stopObserving)
	}
	s.closed = true
	s.mu.Unlock()
	confs := s.conferenceList()
	for _, c := range confs {
		for _, ss := range c.sessionList() {
			ss.end(wire.ByeServerShutdown)
			if ss.headless != "" {
				c.leave(ss) // no reader of its own to leave when it ends
			}
		}
	}
	s.wg.Wait()
	s.observing.Wait()
	for _, c := range confs {
		c.closeLost(controlplane.EndServerStopped)
	}
	for _, c := range confs {
		c.closeRecording() // its open segments closed; the next start resumes it
		c.router.Close()
	}
	s.closeMinutes()
}
