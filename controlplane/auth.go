package controlplane

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
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

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// loginLimiter counts failed logins per key (a remote address, or an
// account name) within a window.
type loginLimiter struct {
	limit  int
	window time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
}

const (
	// From one address: 10 failures a minute, then 429 for the minute.
	loginFailures = 10
	loginWindow   = time.Minute
	// For one account, from anywhere: 20 failures in 15 minutes lock it
	// for the rest of the 15 minutes, even with the right password (a
	// guesser spread over many addresses). Unknown names are counted the
	// same way, so the answer tells nothing about which names exist.
	accountFailures = 20
	accountWindow   = 15 * time.Minute
	// maxLimiterKeys bounds each table; beyond it new keys are not
	// tracked (the per-address limit still holds).
	maxLimiterKeys = 100_000
)

func newLoginLimiter(limit int, window time.Duration) loginLimiter {
	return loginLimiter{limit: limit, window: window}
}

func (l *loginLimiter) blocked(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.failures[key][:0]
	for _, t := range l.failures[key] {
		if now.Sub(t) < l.window {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(l.failures, key)
	} else {
		l.failures[key] = recent
	}
	return len(recent) >= l.limit
}

func (l *loginLimiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == nil {
		l.failures = map[string][]time.Time{}
	}
	if _, ok := l.failures[key]; !ok && len(l.failures) >= maxLimiterKeys {
		return
	}
	l.failures[key] = append(l.failures[key], now)
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
	if !a.origins.FromOwnPage(r) {
		writeError(w, http.StatusForbidden, "csrf", "log in from citybridge's own page")
		return
	}
	var body loginBody
	if !decodeBody(w, r, &body, `body must be {"name": "...", "password": "..."}`) {
		return
	}
	if a.accounts.blocked(body.Name, now) {
		a.log.Warn("login refused: account locked after failed logins", "user", body.Name, "remote", ip)
		a.audit(r, Grant{User: body.Name}, "login", "", "account_locked")
		writeError(w, http.StatusTooManyRequests, "account_locked", "too many failed logins for this account; wait 15 minutes or ask an administrator")
		return
	}
	u, err := a.store.CheckPassword(body.Name, body.Password)
	if errors.Is(err, ErrBadLogin) {
		a.limiter.fail(ip, now)
		a.accounts.fail(body.Name, now)
		a.log.Warn("login failed", "user", body.Name, "remote", ip)
		a.audit(r, Grant{User: body.Name}, "login", "", "bad_login")
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
	a.audit(r, Grant{User: u.Name, Role: u.Role}, "login", "", "ok")
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
