package controlplane

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// SessionCookie holds a login session: HttpOnly (no script reads it),
// Secure (HTTPS only), SameSite=Strict (never sent from another site's
// page).
const SessionCookie = "citybridge_session"

// AuthenticateRequest returns what the request's credential grants: an
// "Authorization: Bearer" link token if it carries one, else its session
// cookie. cookie reports which, for the CSRF check.
func (s *Store) AuthenticateRequest(r *http.Request) (g Grant, cookie bool, err error) {
	if tok := BearerToken(r); tok != "" {
		g, err = s.Authenticate(tok)
		return g, false, err
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Grant{}, false, ErrTokenRequired
	}
	g, err = s.SessionGrant(c.Value)
	return g, true, err
}

// sameOrigin reports whether a cookie-carrying request came from one of
// our own pages: its Origin (or, failing that, Referer) names this host.
// Browsers always send Origin on cross-site POST, PUT and DELETE.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = r.Header.Get("Referer")
	}
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// loginLimiter allows a few failed logins per remote address a minute.
type loginLimiter struct {
	mu       sync.Mutex
	failures map[string][]time.Time
}

const (
	loginFailures = 10
	loginWindow   = time.Minute
)

func (l *loginLimiter) blocked(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.failures[ip][:0]
	for _, t := range l.failures[ip] {
		if now.Sub(t) < loginWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(l.failures, ip)
	} else {
		l.failures[ip] = recent
	}
	return len(recent) >= loginFailures
}

func (l *loginLimiter) fail(ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == nil {
		l.failures = map[string][]time.Time{}
	}
	l.failures[ip] = append(l.failures[ip], now)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type loginBody struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

type me struct {
	Role       Role   `json:"role"`
	User       string `json:"user,omitempty"`
	Conference string `json:"conference,omitempty"`
	Bridge     string `json:"bridge,omitempty"`
}

// login checks a name and password and sets the session cookie.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	now := time.Now()
	if a.limiter.blocked(ip, now) {
		a.log.Warn("login refused: too many failures", "remote", ip)
		writeError(w, http.StatusTooManyRequests, "too_many_attempts", "too many failed logins; wait a minute")
		return
	}
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "csrf", "log in from citybridge's own page")
		return
	}
	var body loginBody
	if !decodeBody(w, r, &body, `body must be {"name": "...", "password": "..."}`) {
		return
	}
	u, err := a.store.CheckPassword(body.Name, body.Password)
	if errors.Is(err, ErrBadLogin) {
		a.limiter.fail(ip, now)
		a.log.Warn("login failed", "user", body.Name, "remote", ip)
		writeError(w, http.StatusUnauthorized, "bad_login", err.Error())
		return
	} else if err != nil {
		a.internal(w, err)
		return
	}
	tok, exp, err := a.store.NewSession(u)
	if err != nil {
		a.internal(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: tok, Path: "/", Expires: exp,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	a.log.Info("logged in", "user", u.Name, "role", string(u.Role), "remote", ip)
	writeJSON(w, http.StatusOK, me{Role: u.Role, User: u.Name})
}

// logout ends the caller's session and clears the cookie.
func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := a.store.EndSession(c.Value); err != nil {
			a.internal(w, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	a.log.Info("logged out", "user", g.User)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, me{Role: g.Role, User: g.User, Conference: g.Conference, Bridge: g.Bridge})
}

// decodeBody reads a small JSON body strictly, answering 400 itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, usage string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", usage)
		return false
	}
	return true
}
