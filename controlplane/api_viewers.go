package controlplane

import (
	"net/http"
	"net/url"
	"time"
)

// Viewer links: listen-only viewers of one conference, over WHEP
// (POST /whep/{conference} with the link's token as the bearer). The
// chair or an administrator issues them and revokes them all at once.

type viewerLink struct {
	Conference string `json:"conference"`
	Token      string `json:"token"`
	// WHEP is the endpoint a WHEP player is given with the token.
	WHEP    string    `json:"whep"`
	Expires time.Time `json:"expires"`
}

func (a *API) registerViewers(mux auditMux) {
	mux.HandleFunc("POST /api/conferences/{id}/viewer-links", a.newViewerLink)
	mux.HandleFunc("DELETE /api/conferences/{id}/viewer-links", a.revokeViewerLinks)
}

func chairsOrAdmin(g Grant, id string) bool { return chairs(g, id) || g.Role == RoleAdmin }

func (a *API) newViewerLink(w http.ResponseWriter, r *http.Request) {
	c, ok := a.openConference(w, r, chairsOrAdmin)
	if !ok {
		return
	}
	req, exp, ok := a.readLinkRequest(w, r, DefaultViewerLinkTTL)
	if !ok || !noName(w, req) {
		return
	}
	a.issueLink(w, Grant{Role: RoleViewer, Conference: c.ID, Expires: exp}, func(tok string) any {
		return viewerLink{Conference: c.ID, Token: tok, WHEP: "/whep/" + url.PathEscape(c.ID), Expires: exp}
	}, "viewer link issued", "conference", c.ID)
}

func (a *API) revokeViewerLinks(w http.ResponseWriter, r *http.Request) {
	c, ok := a.conferenceOf(w, r, chairsOrAdmin)
	if !ok {
		return
	}
	n, err := a.store.RevokeViewerLinks(c.ID)
	a.revokedLinks(w, n, err, "viewer links revoked", "conference", c.ID)
}
