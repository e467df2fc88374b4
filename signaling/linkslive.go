package signaling

import (
	"encoding/json"
	"net/http"
	"time"

	"citybridge/controlplane"

	"github.com/gorilla/websocket"
)

// The technicians' live feed (/api/links/live): a WebSocket on which the
// server sends the links view (controlplane.API.LinksView) once a second.
// A page cannot set an Authorization header on a WebSocket, so the caller
// proves who it is with its login cookie at the upgrade, or with a first
// message {"token": "..."} carrying a technician link. Technicians and
// administrators only.

// liveAuth is the first message of a caller without a login cookie.
type liveAuth struct {
	Token string `json:"token"`
}

// liveError is sent before closing a refused feed.
type liveError struct {
	Error string `json:"error"`
}

// LinksLive serves the live feed of view. view is given the caller's
// credential to present to other nodes (in a cluster it gathers their
// links as the caller: controlplane.API.ClusterLinksView).
func (s *Server) LinksLive(view func(auth func(*http.Request)) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.enter() {
			http.Error(w, "server shutting down", http.StatusServiceUnavailable)
			return
		}
		defer s.wg.Done()

		var g controlplane.Grant
		var cred controlplane.Credential
		var auth func(*http.Request)
		var authed bool
		if c, err := r.Cookie(controlplane.SessionCookie); err == nil {
			if g, err = s.cfg.Store.SessionGrant(c.Value); err == nil {
				authed = true
				cred = controlplane.SessionCredential(c.Value, g.Role)
				auth = controlplane.SessionAuth(c.Value)
			}
		}
		conn, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetReadLimit(4096)
		refuse := func(msg string) {
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			_ = conn.WriteJSON(liveError{Error: msg})
			_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, msg))
		}
		if !authed {
			_ = conn.SetReadDeadline(time.Now().Add(s.cfg.JoinTimeout))
			var a liveAuth
			if err := conn.ReadJSON(&a); err != nil {
				refuse("send {\"token\": ...} first")
				return
			}
			if g, err = s.cfg.Store.Authenticate(a.Token); err != nil {
				s.log.Info("live links feed refused", "remote", r.RemoteAddr, "err", err)
				refuse("token refused")
				return
			}
			cred = controlplane.TokenCredential(a.Token)
			auth = controlplane.TokenAuth(a.Token)
		}
		if g.Role != controlplane.RoleTechnician && g.Role != controlplane.RoleAdmin {
			s.log.Info("live links feed refused", "remote", r.RemoteAddr, "role", string(g.Role))
			refuse("technicians and administrators only")
			return
		}
		// Reads only notice the peer closing; nothing it sends matters.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_ = conn.SetReadDeadline(time.Time{})
			for {
				if _, _, err := conn.NextReader(); err != nil {
					return
				}
			}
		}()
		// A view follows each round of samples, so a bridge's change
		// reaches the dashboard as soon as the monitor has it; without a
		// monitor, once a second.
		var tick <-chan time.Time
		if s.cfg.Monitor == nil {
			t := time.NewTicker(observeEvery)
			defer t.Stop()
			tick = t.C
		}
		for {
			next := s.observedRound()
			// The credential is checked again before every view: a revoked
			// or expired link ends the feed within a round.
			if ok, err := s.cfg.Store.StillValid([]controlplane.Credential{cred}); err != nil || !ok[0] {
				s.log.Info("live links feed ended: credential revoked or expired", "remote", r.RemoteAddr)
				refuse("credential revoked or expired")
				return
			}
			v, err := view(auth)
			if err != nil {
				s.log.Error("live links view", "err", err)
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				return
			}
			select {
			case <-closed:
				return
			case <-s.stopObserving:
				return
			case <-next:
			case <-tick:
			}
		}
	})
}
