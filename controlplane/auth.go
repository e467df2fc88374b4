package controlplane

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
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

// login checks a name and password and sets the session cookie. Nothing
// is written, counted or logged for a request that cannot be a login (a
// name no login can have, a password no login can have, another site's
// page); an address or a name refused by the login guard is answered 429
// before bcrypt runs, and only a real attempt (the password checked) goes
// in the audit log, which the guard thus bounds per address.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var body loginBody
	if !decodeBodyLimit(w, r, &body, 4096, `body must be {"name": "...", "password": "..."}`) {
		return
	}
	if !userName.MatchString(body.Name) || len(body.Password) > MaxPassword {
		writeError(w, http.StatusBadRequest, "bad_request", "no login has that name or that password")
		return
	}
	if !a.origins.FromOwnPage(r) {
		writeError(w, http.StatusForbidden, "csrf", "log in from citybridge's own page")
		return
	}
	ip := remoteAddr(r)
	u, ok := a.checkPassword(w, r, ip, body.Name, body.Password)
	if !ok {
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
	a.log.Info("logged in", "user", u.Name, "role", string(u.Role), "remote", ip.String())
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

// checkPassword checks name's password through the login guard: 429 when
// the guard refuses (nothing written, one warning per refused streak), else
// bcrypt, and a failure is counted, logged and audited. It answers the
// errors itself.
func (a *API) checkPassword(w http.ResponseWriter, r *http.Request, ip netip.Addr, name, password string) (User, bool) {
	now := time.Now()
	attempt, refusal := a.guard.take(ip, name, now)
	switch refusal {
	case refusedAddress:
		a.log.Debug("login refused: too many failures from this address", "remote", ip.String())
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, string(refusal), "too many failed logins from this address; wait a minute")
		return User{}, false
	case refusedPair:
		a.log.Debug("login refused: too many failures for this name from this address", "user", name, "remote", ip.String())
		w.Header().Set("Retry-After", "900")
		writeError(w, http.StatusTooManyRequests, string(refusal), "too many failed logins for this name from this address; wait 15 minutes, or log in from your usual machine")
		return User{}, false
	}
	u, err := a.store.CheckPassword(name, password)
	a.guard.settle(attempt, errors.Is(err, ErrBadLogin), time.Now())
	if errors.Is(err, ErrBadLogin) {
		a.log.Warn("login failed", "user", name, "remote", ip.String())
		a.audit(r, Grant{User: name}, "login", "", "bad_login")
		writeError(w, http.StatusUnauthorized, "bad_login", err.Error())
		return User{}, false
	} else if err != nil {
		a.internal(w, err)
		return User{}, false
	}
	return u, true
}

// checkCurrentPassword checks a logged-in caller's own password before it
// is changed, through the login guard (a wrong one is a failed login).
func (a *API) checkCurrentPassword(w http.ResponseWriter, r *http.Request, name, current string) bool {
	if current == "" || len(current) > MaxPassword {
		writeError(w, http.StatusBadRequest, "bad_request", `changing your own password needs your current one: {"password": "new", "current": "old"}`)
		return false
	}
	_, ok := a.checkPassword(w, r, remoteAddr(r), name, current)
	return ok
}

// remoteAddr is the request's remote address (unspecified if unreadable).
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	return ap.Addr().Unmap()
}

// decodeBody reads a small JSON body strictly, answering 400 itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, usage string) bool {
	return decodeBodyLimit(w, r, v, 64<<10, usage)
}

// decodeBodyLimit is decodeBody with a size of its own.
func decodeBodyLimit(w http.ResponseWriter, r *http.Request, v any, limit int64, usage string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", usage)
		return false
	}
	return true
}
