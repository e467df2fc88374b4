package controlplane

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// Host and technician links. The first start prints one of each; they are
// secrets that end up on screens and in mail, so an administrator can
// issue more (one per technician, named, so that one can be withdrawn
// without the others) and revoke them: rotating a link is issuing a new
// one and revoking the old.

type accessLink struct {
	Conference string `json:"conference,omitempty"`
	Name       string `json:"name,omitempty"`
	Token      string `json:"token"`
	// Path is the page the link opens, token included.
	Path    string    `json:"path"`
	Expires time.Time `json:"expires,omitzero"`
}

// linkRequest is the body a link's issue may carry: a technician link's
// name (required there, refused elsewhere) and, for every link, when it
// expires.
type linkRequest struct {
	Name string `json:"name,omitempty"`
	// Expires is an RFC 3339 time ("2026-12-08T17:00:00+07:00") or a
	// duration from now ("8h", "90m"). Without it a link is valid until
	// revoked, but a viewer link, which lasts DefaultViewerLinkTTL.
	Expires string `json:"expires,omitempty"`
}

// DefaultViewerLinkTTL is how long a viewer link lasts unless its issue
// says otherwise: viewers are handed out for one meeting.
const DefaultViewerLinkTTL = 24 * time.Hour

// maxLinkTTL bounds an expiry given at issue (a typo of a year).
const maxLinkTTL = 5 * 366 * 24 * time.Hour

// readLinkRequest reads the optional body of a link's issue and works out
// when the link expires (zero: never; def when the body names no time).
// It answers 400 itself.
func (a *API) readLinkRequest(w http.ResponseWriter, r *http.Request, def time.Duration) (linkRequest, time.Time, bool) {
	var req linkRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be empty or {"expires": "RFC 3339 time or duration"}`)
		return req, time.Time{}, false
	}
	now := time.Now()
	if req.Expires == "" {
		if def == 0 {
			return req, time.Time{}, true
		}
		return req, now.Add(def), true
	}
	exp, err := time.Parse(time.RFC3339, req.Expires)
	if err != nil {
		d, derr := time.ParseDuration(req.Expires)
		if derr != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "expires must be an RFC 3339 time (2026-12-08T17:00:00+07:00) or a duration (8h)")
			return req, time.Time{}, false
		}
		exp = now.Add(d)
	}
	if !exp.After(now) || exp.Sub(now) > maxLinkTTL {
		writeError(w, http.StatusBadRequest, "bad_request", "expires must be in the future, within five years")
		return req, time.Time{}, false
	}
	return req, exp, true
}

// SeedTechnicianName names the technician link the first start creates.
const SeedTechnicianName = "technician"

var linkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (a *API) registerAccessLinks(mux auditMux) {
	mux.HandleFunc("POST /api/conferences/{id}/host-links", a.newHostLink)
	mux.HandleFunc("DELETE /api/conferences/{id}/host-links", a.revokeHostLinks)
	mux.HandleFunc("POST /api/technician-links", a.newTechnicianLink)
	mux.HandleFunc("DELETE /api/technician-links/{name}", a.revokeTechnicianLinks)
}

func adminOnly(g Grant, _ string) bool { return g.Role == RoleAdmin }

func (a *API) newHostLink(w http.ResponseWriter, r *http.Request) {
	c, ok := a.openConference(w, r, adminOnly)
	if !ok {
		return
	}
	req, exp, ok := a.readLinkRequest(w, r, 0)
	if !ok || !noName(w, req) {
		return
	}
	a.issueLink(w, Grant{Role: RoleHost, Conference: c.ID, Expires: exp}, func(tok string) any {
		return accessLink{Conference: c.ID, Token: tok, Path: "/host#t=" + url.QueryEscape(tok), Expires: exp}
	}, "host link issued", "conference", c.ID)
}

func (a *API) revokeHostLinks(w http.ResponseWriter, r *http.Request) {
	c, ok := a.conferenceOf(w, r, adminOnly)
	if !ok {
		return
	}
	n, err := a.store.RevokeHostLinks(c.ID)
	a.revokedLinks(w, n, err, "host links revoked", "conference", c.ID)
}

func (a *API) newTechnicianLink(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin); !ok {
		return
	}
	body, exp, ok := a.readLinkRequest(w, r, 0)
	if !ok {
		return
	}
	if !linkName.MatchString(body.Name) {
		writeError(w, http.StatusBadRequest, "bad_request", `want {"name": "..."}: 1-64 letters, digits, dots, dashes or underscores`)
		return
	}
	a.issueLink(w, Grant{Role: RoleTechnician, Name: body.Name, Expires: exp}, func(tok string) any {
		return accessLink{Name: body.Name, Token: tok, Path: "/tech#t=" + url.QueryEscape(tok), Expires: exp}
	}, "technician link issued", "name", body.Name)
}

func (a *API) revokeTechnicianLinks(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin); !ok {
		return
	}
	name := r.PathValue("name")
	if !linkName.MatchString(name) {
		writeError(w, http.StatusBadRequest, "bad_request", "not a link name")
		return
	}
	n, err := a.store.RevokeTechnicianLinks(name)
	if err == nil && n == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no technician link has that name")
		return
	}
	a.revokedLinks(w, n, err, "technician links revoked", "name", name)
}

// noName refuses a name on a link that has none (only technician links
// are named), answering 400 itself.
func noName(w http.ResponseWriter, req linkRequest) bool {
	if req.Name != "" {
		writeError(w, http.StatusBadRequest, "bad_request", "only technician links have a name")
		return false
	}
	return true
}
