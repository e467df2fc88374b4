package signaling

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"
)

// WHIP ingest and WHEP egress (RFC 9725 and the WHEP draft): media
// sessions negotiated by one HTTP exchange instead of the WebSocket.
//
//   - POST /whip/{conference} with the host's link token: a hardware
//     encoder or OBS publishes the hub's camera (simulcast included). It
//     is the hub; while it publishes, a host console that joins chairs as
//     "hub-console" without being seen. A console already publishing as
//     the hub makes the WHIP request fail with 409.
//   - POST /whep/{conference} with a room's link token: that bridge's
//     receive-only terminal; with a viewer link: a listen-only viewer (at
//     most Config.MaxViewers per conference). Both receive the hub's
//     camera and sound, at the layer their link carries.
//
// A 201 answer carries the SDP answer with every candidate and the
// resource's Location; DELETE on it ends the session, PATCH with an
// application/trickle-ice-sdpfrag body trickles candidates or (new ufrag
// and pwd) restarts ICE. The resource URL is unguessable and every call on
// it must carry the token that made it. Errors are problem documents
// (RFC 9457). Sessions enter the conference like any participant: the
// same roster, floor policy, link monitor and reconnection grace; they
// just have no WebSocket (a headless session).

// Headless session kinds.
const (
	headlessWHIP = "whip"
	headlessWHEP = "whep"
)

// DefaultMaxViewers bounds the WHEP viewers of one conference.
const DefaultMaxViewers = 50

// HubConsole is the bridge a host console chairs as while a WHIP encoder
// is the hub.
var HubConsole = controlplane.Bridge{ID: "hub-console", Name: "Hub console", Kind: controlplane.KindHub}

// resource is one WHIP or WHEP session.
type resource struct {
	kind      string
	conf      *conference
	ss        *session
	tokenHash [32]byte
}

// resources are the live WHIP and WHEP sessions, by their resource ID.
type resources struct {
	mu sync.Mutex
	m  map[string]*resource
}

func (rs *resources) get(id string) *resource {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[id]
	if r != nil {
		select {
		case <-r.ss.done: // ended otherwise: replaced, dropped, the conference ended
			delete(rs.m, id)
			return nil
		default:
		}
	}
	return r
}

func (rs *resources) put(id string, r *resource) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]*resource{}
	}
	for k, old := range rs.m { // forget the ended ones while here
		select {
		case <-old.ss.done:
			delete(rs.m, k)
		default:
		}
	}
	rs.m[id] = r
}

func (rs *resources) remove(id string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.m, id)
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

// WHIP serves POST /whip/{conference} and the resources under it.
func (s *Server) WHIP() http.Handler { return s.mediaHTTP(headlessWHIP) }

// WHEP serves POST /whep/{conference} and the resources under it.
func (s *Server) WHEP() http.Handler { return s.mediaHTTP(headlessWHEP) }

func (s *Server) mediaHTTP(kind string) http.Handler {
	mux := http.NewServeMux()
	base := "/" + kind + "/"
	mux.HandleFunc("POST "+base+"{conference}", func(w http.ResponseWriter, r *http.Request) { s.mediaPost(kind, w, r) })
	mux.HandleFunc("DELETE "+base+"{conference}/{resource}", func(w http.ResponseWriter, r *http.Request) { s.mediaDelete(kind, w, r) })
	mux.HandleFunc("PATCH "+base+"{conference}/{resource}", func(w http.ResponseWriter, r *http.Request) { s.mediaPatch(kind, w, r) })
	mux.HandleFunc(base, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST, DELETE, PATCH")
		writeProblem(w, http.StatusMethodNotAllowed, "POST an offer to "+base+"{conference}; DELETE or PATCH the resource it returns")
	})
	return mux
}

func tokenHash(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// readBody reads a request body of the given media type, at most limit
// bytes, answering the error itself.
func readBody(w http.ResponseWriter, r *http.Request, wantType string, limit int64) (string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != wantType {
		writeProblem(w, http.StatusUnsupportedMediaType, "the body must be "+wantType)
		return "", false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "could not read the body")
		return "", false
	}
	if int64(len(b)) > limit {
		writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", limit))
		return "", false
	}
	return string(b), true
}

func (s *Server) mediaPost(kind string, w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeProblem(w, http.StatusServiceUnavailable, "the server is shutting down")
		return
	}
	defer s.wg.Done()

	confID := r.PathValue("conference")
	tok := controlplane.BearerToken(r)
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="citybridge"`)
		writeProblem(w, http.StatusUnauthorized, "an Authorization: Bearer token is required")
		return
	}
	// A refused token counts against the address, as a refused join does.
	ip := remoteIP(r.RemoteAddr)
	ok, counted := s.fails.begin(ip)
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusTooManyRequests, "too many failed attempts from this address")
		return
	}
	failed := false
	defer func() { s.fails.settle(ip, counted, failed) }()
	unavailable := func() {
		w.Header().Set("Retry-After", "2")
		writeProblem(w, http.StatusServiceUnavailable, clusterUnavailableMessage)
	}
	if err := s.unavailable(); err != nil {
		unavailable()
		return
	}
	c, err := s.cfg.Store.Conference(confID)
	if errors.Is(err, controlplane.ErrStoreUnavailable) {
		s.clusterRefused.Add(1)
		unavailable()
		return
	}
	if err != nil {
		writeProblem(w, http.StatusNotFound, "no such conference")
		return
	}
	adm, err := s.cfg.Store.Admit(tok, c.ID)
	switch {
	case errors.Is(err, controlplane.ErrStoreUnavailable):
		s.clusterRefused.Add(1)
		unavailable()
		return
	case errors.Is(err, controlplane.ErrTokenInvalid), errors.Is(err, controlplane.ErrTokenRequired):
		failed = true
		w.Header().Set("WWW-Authenticate", `Bearer realm="citybridge", error="invalid_token"`)
		writeProblem(w, http.StatusUnauthorized, "the token is not valid")
		return
	case errors.Is(err, controlplane.ErrWrongConference), errors.Is(err, controlplane.ErrNotInvited):
		writeProblem(w, http.StatusForbidden, err.Error())
		return
	case errors.Is(err, controlplane.ErrConferenceClosed):
		writeProblem(w, http.StatusConflict, "the conference is not open")
		return
	case err != nil:
		writeProblem(w, http.StatusForbidden, err.Error())
		return
	}
	switch {
	case kind == headlessWHIP && adm.Role != controlplane.RoleHost:
		writeProblem(w, http.StatusForbidden, "WHIP publishes the hub: it takes the host's link")
		return
	case kind == headlessWHEP && adm.Role != controlplane.RoleRoom && adm.Role != controlplane.RoleViewer:
		writeProblem(w, http.StatusForbidden, "WHEP takes a room's link or a viewer link")
		return
	}
	switch serve, to, err := s.claim(adm.Conference.ID); {
	case err != nil:
		s.clusterRefused.Add(1)
		unavailable()
		return
	case !serve:
		// The node that serves the conference takes the same request.
		w.Header().Set("Location", to+r.URL.RequestURI())
		writeProblem(w, http.StatusTemporaryRedirect, "the conference is served by "+to)
		return
	}
	offer, ok := readBody(w, r, "application/sdp", sfu.MaxOfferBytes)
	if !ok {
		return
	}
	if err := sfu.ValidateOffer(offer); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	conf, err := s.conference(adm.Conference)
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	id := controlplane.NewToken()
	if adm.Role == controlplane.RoleViewer {
		adm.Bridge.ID = controlplane.ViewerIDPrefix + id[:10]
	}
	ss := newHeadlessSession(s, kind, r.RemoteAddr, adm, conf)
	ss.cred = controlplane.TokenCredential(tok)
	m, _, err := conf.admit(ss, "")
	var ce *ControlError
	if errors.Is(err, errViewersFull) {
		w.Header().Set("Retry-After", "30")
		writeProblem(w, http.StatusServiceUnavailable, fmt.Sprintf("the conference has its %d viewers", s.maxViewers()))
		return
	} else if errors.As(err, &ce) {
		writeProblem(w, http.StatusConflict, ce.Message)
		return
	} else if err != nil {
		ss.log.Error("media session", "err", err)
		writeProblem(w, http.StatusInternalServerError, "could not create the media session")
		return
	}
	ss.peer = m.peer
	var answer string
	if kind == headlessWHIP {
		answer, err = m.peer.AcceptOfferGathered(offer)
	} else {
		conf.subscribeExisting(ss) // the hub's tracks, before the answer maps them
		answer, err = m.peer.AnswerSubscriber(offer)
	}
	if err != nil {
		ss.log.Info("offer refused", "err", err)
		ss.end(wire.ByeLeft)
		conf.leave(ss)
		status := http.StatusBadRequest
		if errors.Is(err, sfu.ErrGathering) {
			status = http.StatusServiceUnavailable
		}
		writeProblem(w, status, "the offer was refused: "+err.Error())
		return
	}
	s.media.put(id, &resource{kind: kind, conf: conf, ss: ss, tokenHash: tokenHash(tok)})
	loc := "/" + kind + "/" + url.PathEscape(c.ID) + "/" + id
	ss.log.Info(kind+" session started", "resource", id[:8])
	w.Header().Set("Location", loc)
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// resourceOf finds the resource of a DELETE or PATCH and checks its token,
// answering the error itself.
func (s *Server) resourceOf(kind string, w http.ResponseWriter, r *http.Request) (string, *resource, bool) {
	id := r.PathValue("resource")
	res := s.media.get(id)
	if res == nil || res.kind != kind || res.conf.id != r.PathValue("conference") {
		writeProblem(w, http.StatusNotFound, "no such session (it may have ended)")
		return "", nil, false
	}
	h := tokenHash(controlplane.BearerToken(r))
	if subtle.ConstantTimeCompare(h[:], res.tokenHash[:]) != 1 {
		writeProblem(w, http.StatusUnauthorized, "the session belongs to another token")
		return "", nil, false
	}
	return id, res, true
}

func (s *Server) mediaDelete(kind string, w http.ResponseWriter, r *http.Request) {
	id, res, ok := s.resourceOf(kind, w, r)
	if !ok {
		return
	}
	s.media.remove(id)
	res.ss.end(wire.ByeLeft)
	res.conf.leave(res.ss)
	res.ss.log.Info(kind + " session ended by the client")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) mediaPatch(kind string, w http.ResponseWriter, r *http.Request) {
	_, res, ok := s.resourceOf(kind, w, r)
	if !ok {
		return
	}
	frag, ok := readBody(w, r, "application/trickle-ice-sdpfrag", 16<<10)
	if !ok {
		return
	}
	pc := sfu.Publish
	if kind == headlessWHEP {
		pc = sfu.Subscribe
	}
	if !strings.Contains(frag, "a=ice-ufrag:") {
		if err := res.ss.peer.AddClientCandidates(pc, frag); err != nil {
			writeProblem(w, http.StatusBadRequest, "bad candidate: "+err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	answer, err := res.ss.peer.RestartClientICE(pc, frag)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "ICE restart refused: "+err.Error())
		return
	}
	res.ss.log.Info(kind + " ICE restart")
	w.Header().Set("Content-Type", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, answer)
}

// newHeadlessSession is a participant without a WebSocket: what the SFU
// would tell it goes nowhere.
func newHeadlessSession(s *Server, kind, remote string, adm controlplane.Admission, conf *conference) *session {
	ss := newSession(s, nil, remote)
	ss.headless = kind
	ss.adm = adm
	ss.conf = conf
	ss.settled.Store(true)
	ss.who = controlplane.WhoOf(controlplane.Grant{Role: adm.Role, Conference: adm.Conference.ID, Bridge: adm.Bridge.ID})
	ss.log = s.log.With("conference", adm.Conference.ID, "bridge", adm.Bridge.ID, "role", string(adm.Role), "remote", remote, "via", kind)
	return ss
}

func (s *Server) maxViewers() int {
	if s.cfg.MaxViewers > 0 {
		return s.cfg.MaxViewers
	}
	return DefaultMaxViewers
}
