package controlplane

import (
	_ "embed"
	"errors"
	"net/http"
	"strings"
	"time"
)

// The administrators' and hosts' half of the API: conferences, the bridge
// registry and the users. Who may call what is in docs/SECURITY.md and in
// openapi.json (x-roles); TestAPIAuthorizationMatrix checks both.

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
}

// notFoundOr answers 404 for ErrNotFound, 500 for anything else.
func (a *API) notFoundOr(w http.ResponseWriter, err error, what string) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such "+what)
		return
	}
	a.internal(w, err)
}

// conferenceBody is what a client sends to create or change a conference.
type conferenceBody struct {
	Title      string    `json:"title"`
	Start      time.Time `json:"start,omitzero"`
	End        time.Time `json:"end,omitzero"`
	AllBridges bool      `json:"all_bridges"`
	Bridges    []string  `json:"bridges,omitempty"`
	AutoRecord bool      `json:"auto_record,omitempty"`
}

const conferenceUsage = `body must be {"title": "...", "start"?: RFC 3339, "end"?: RFC 3339, "all_bridges": true | "bridges": ["id", ...], "auto_record"?: true}`

// createConference: an administrator, or a host with a login, schedules a
// conference.
func (a *API) createConference(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin, RoleHost)
	if !ok {
		return
	}
	if g.Role == RoleHost && g.Conference != "" { // a host link chairs one conference, it does not make others
		forbidden(w)
		return
	}
	var body conferenceBody
	if !decodeBody(w, r, &body, conferenceUsage) {
		return
	}
	c, err := a.store.CreateConference(Conference{Title: body.Title, Start: body.Start, End: body.End,
		AllBridges: body.AllBridges, Bridges: body.Bridges, AutoRecord: body.AutoRecord, State: StateScheduled})
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	a.log.Info("conference created", "conference", c.ID, "by", g.User)
	writeJSON(w, http.StatusCreated, c)
}

func (a *API) getConference(w http.ResponseWriter, r *http.Request) {
	if c, ok := a.conferenceOf(w, r, watches); ok {
		writeJSON(w, http.StatusOK, c)
	}
}

func (a *API) updateConference(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if g.Role != RoleAdmin && !(g.Role == RoleHost && g.Conference == "") {
		forbidden(w)
		return
	}
	var body conferenceBody
	if !decodeBody(w, r, &body, conferenceUsage) {
		return
	}
	if _, err := a.store.Conference(id); err != nil {
		a.notFoundOr(w, err, "conference")
		return
	}
	c, err := a.store.UpdateConference(Conference{ID: id, Title: body.Title, Start: body.Start, End: body.End,
		AllBridges: body.AllBridges, Bridges: body.Bridges, AutoRecord: body.AutoRecord})
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	a.log.Info("conference changed", "conference", id, "by", g.User)
	writeJSON(w, http.StatusOK, c)
}

type stateBody struct {
	State State `json:"state"`
}

// setConferenceState opens, starts or ends a conference (its chair or an
// administrator); the live side follows (an ended conference sends
// everyone away).
func (a *API) setConferenceState(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !chairs(g, id) && g.Role != RoleAdmin {
		forbidden(w)
		return
	}
	var body stateBody
	if !decodeBody(w, r, &body, `body must be {"state": "scheduled" | "open" | "live" | "ended"}`) {
		return
	}
	if _, err := a.store.Conference(id); err != nil {
		a.notFoundOr(w, err, "conference")
		return
	}
	c, err := a.store.SetConferenceState(id, body.State)
	if err != nil {
		writeError(w, http.StatusConflict, "bad_state", err.Error())
		return
	}
	a.log.Info("conference state", "conference", id, "state", string(c.State), "by", g.User)
	if a.changed != nil {
		a.changed(c)
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) listBridges(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin, RoleTechnician, RoleHost); !ok {
		return
	}
	bs, err := a.store.Bridges()
	if err != nil {
		a.internal(w, err)
		return
	}
	if bs == nil {
		bs = []Bridge{}
	}
	writeJSON(w, http.StatusOK, bs)
}

func (a *API) createBridge(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	var b Bridge
	if !decodeBody(w, r, &b, `body must be {"id", "name", "kind", "area"?, "contact"?}`) {
		return
	}
	b = b.Trimmed()
	if err := b.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if _, err := a.store.Bridge(b.ID); err == nil {
		writeError(w, http.StatusConflict, "exists", "a bridge with that id exists")
		return
	}
	if err := a.store.PutBridges([]Bridge{b}); err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info("bridge added", "bridge", b.ID, "by", g.User)
	writeJSON(w, http.StatusCreated, b)
}

func (a *API) updateBridge(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	id := r.PathValue("id")
	var b Bridge
	if !decodeBody(w, r, &b, `body must be {"id", "name", "kind", "area"?, "contact"?}`) {
		return
	}
	b = b.Trimmed()
	if b.ID == "" {
		b.ID = id
	}
	if b.ID != id {
		writeError(w, http.StatusBadRequest, "bad_request", "the body's id differs from the path's")
		return
	}
	if err := b.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if _, err := a.store.Bridge(id); err != nil {
		a.notFoundOr(w, err, "bridge")
		return
	}
	if err := a.store.PutBridges([]Bridge{b}); err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info("bridge changed", "bridge", id, "by", g.User)
	writeJSON(w, http.StatusOK, b)
}

func (a *API) deleteBridge(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if err := a.store.DeleteBridge(id); err != nil {
		a.notFoundOr(w, err, "bridge")
		return
	}
	a.log.Info("bridge removed", "bridge", id, "by", g.User)
	w.WriteHeader(http.StatusNoContent)
}

// exportBridges answers the registry as CSV (the import's format).
func (a *API) exportBridges(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin, RoleTechnician); !ok {
		return
	}
	bs, err := a.store.Bridges()
	if err != nil {
		a.internal(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="bridges.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	if err := WriteBridgesCSV(w, bs); err != nil {
		a.log.Error("bridges CSV", "err", err)
	}
}

// importBridges reads a registry CSV (the body). Bad rows are reported by
// line; they stop the whole import unless ?partial=1.
func (a *API) importBridges(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	partial := r.URL.Query().Get("partial") == "1" || r.URL.Query().Get("partial") == "true"
	res, imported, err := a.store.ImportBridgesCSV(http.MaxBytesReader(w, r.Body, 4<<20), partial)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_csv", err.Error())
		return
	}
	a.log.Info("bridges imported", "added", res.Added, "updated", res.Updated, "unchanged", res.Unchanged,
		"bad_rows", len(res.Errors), "imported", imported, "by", g.User)
	status := http.StatusOK
	if !imported {
		status = http.StatusUnprocessableEntity
	}
	writeJSON(w, status, res)
}

// revokeTerminalLinks revokes every terminal link of a bridge (a terminal
// lost or replaced); a new one is issued with POST.
func (a *API) revokeTerminalLinks(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin, RoleTechnician)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := a.store.Bridge(id); err != nil {
		a.notFoundOr(w, err, "bridge")
		return
	}
	n, err := a.store.RevokeTerminalLinks(id)
	if err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info("terminal links revoked", "bridge", id, "links", n, "by", g.User)
	writeJSON(w, http.StatusOK, map[string]any{"bridge": id, "revoked": n})
}

type userBody struct {
	Name     string `json:"name"`
	Role     Role   `json:"role"`
	Display  string `json:"display,omitempty"`
	Password string `json:"password"`
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin); !ok {
		return
	}
	us, err := a.store.Users()
	if err != nil {
		a.internal(w, err)
		return
	}
	if us == nil {
		us = []User{}
	}
	writeJSON(w, http.StatusOK, us)
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	var body userBody
	if !decodeBody(w, r, &body, `body must be {"name", "role": "admin" | "host" | "technician", "display"?, "password"}`) {
		return
	}
	u, err := a.store.AddUser(body.Name, body.Role, body.Display, body.Password)
	switch {
	case errors.Is(err, ErrUserExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	a.log.Info("user added", "user", u.Name, "role", string(u.Role), "by", g.User)
	writeJSON(w, http.StatusCreated, u)
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if name == g.User {
		writeError(w, http.StatusConflict, "self", "an administrator cannot remove their own login")
		return
	}
	if err := a.store.DeleteUser(name); err != nil {
		a.notFoundOr(w, err, "user")
		return
	}
	a.log.Info("user removed", "user", name, "by", g.User)
	w.WriteHeader(http.StatusNoContent)
}

// setUserPassword: an administrator sets anyone's password; a person with
// a login changes their own.
func (a *API) setUserPassword(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if g.Role != RoleAdmin && (g.User == "" || g.User != name) {
		forbidden(w)
		return
	}
	var body struct {
		Password string `json:"password"`
		// Current is the caller's own password, required to change it:
		// a session left open on a desk must not be enough to take the
		// login over.
		Current string `json:"current,omitempty"`
	}
	if !decodeBody(w, r, &body, `body must be {"password": "...", "current": "..."} (current: your own password, to change it)`) {
		return
	}
	if g.User == name {
		if !a.checkCurrentPassword(w, r, name, body.Current) {
			return
		}
	}
	if err := a.store.SetPassword(name, body.Password); err != nil {
		if errors.Is(err, ErrNotFound) {
			a.notFoundOr(w, err, "user")
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", strings.TrimSpace(err.Error()))
		return
	}
	a.log.Info("password changed", "user", name, "by", g.User)
	w.WriteHeader(http.StatusNoContent)
}
