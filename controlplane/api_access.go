package controlplane

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
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
	Path string `json:"path"`
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
	a.issueLink(w, Grant{Role: RoleHost, Conference: c.ID}, func(tok string) any {
		return accessLink{Conference: c.ID, Token: tok, Path: "/host#t=" + url.QueryEscape(tok)}
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
	var body struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || !linkName.MatchString(body.Name) {
		writeError(w, http.StatusBadRequest, "bad_request", `want {"name": "..."}: 1-64 letters, digits, dots, dashes or underscores`)
		return
	}
	a.issueLink(w, Grant{Role: RoleTechnician, Name: body.Name}, func(tok string) any {
		return accessLink{Name: body.Name, Token: tok, Path: "/tech#t=" + url.QueryEscape(tok)}
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
