package controlplane

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// PresenceFunc returns the presence state of each bridge of a conference
// (by bridge ID) as the signaling server sees it; nil if nobody joined yet.
type PresenceFunc func(conferenceID string) map[string]string

// MediaControl is what the API may ask of the media side.
type MediaControl interface {
	// PinLayer caps the simulcast layer ("q", "h" or "f") a bridge receives
	// in a conference.
	PinLayer(conferenceID, bridge, layer string) error
	// TechAction carries out a technician's action on a joined bridge:
	// one of the Tech constants. It returns ErrNotJoined when the bridge
	// has no session in the conference.
	TechAction(conferenceID, bridge, action string) error
}

// Technicians' actions on a bridge (MediaControl.TechAction).
const (
	TechICERestart = "ice_restart" // the terminal restarts ICE on both connections
	TechRejoin     = "rejoin"      // the terminal leaves and joins afresh, rebuilding its media
	TechReload     = "reload"      // the terminal reloads its page
	TechKeyframe   = "keyframe"    // the SFU asks for keyframes of everything the bridge sends and receives
	TechKick       = "kick"        // the bridge is sent away (it may come back with its link)
)

// TechActions lists the Tech constants.
var TechActions = []string{TechICERestart, TechRejoin, TechReload, TechKeyframe, TechKick}

// ErrNotJoined: the bridge has no session in that conference.
var ErrNotJoined = errors.New("controlplane: bridge not joined")

// API is the JSON API the pages use. Every route checks the caller's
// bearer token and role; errors are JSON objects with a code and a message.
type API struct {
	store    *Store
	presence PresenceFunc
	media    MediaControl
	floor    FloorControl
	minutes  MinutesControl
	monitor  *Monitor // link quality (api_links.go)
	// readiness runs the pre-conference checks (api_readiness.go).
	readiness *Readiness
	log       *slog.Logger
	origins   *Origins    // pages that may use a login cookie
	guard     *loginGuard // failed logins per address and name
	// changed is told of a conference changed through the API (its state:
	// the live side sends everyone away when it ends).
	changed func(Conference)
	// peers are a cluster's other nodes (nil on one machine), nodes what
	// GET /api/nodes answers (api_nodes.go).
	peers Peers
	nodes func() NodesView
	// recordings are the recorded files on disk (api_recordings.go).
	recordings RecordingArchive
}

// OnConferenceChange registers f to be told of conferences the API changes.
func (a *API) OnConferenceChange(f func(Conference)) { a.changed = f }

// SetOrigins sets the origins, besides the server's own, whose pages may
// use a login cookie (see Origins).
func (a *API) SetOrigins(o *Origins) { a.origins = o }

// SetMedia connects the API to the media side (layer pins).
func (a *API) SetMedia(m MediaControl) { a.media = m }

// NewAPI builds the API on a store. The login limits start from the
// failed logins of the audit log's last accountWindow, so a restart does
// not give a guesser a fresh count.
func NewAPI(store *Store, presence PresenceFunc, log *slog.Logger) *API {
	a := &API{store: store, presence: presence, log: log, guard: newLoginGuard()}
	failed, err := store.FailedLogins(time.Now().Add(-pairWindow))
	if err != nil {
		log.Error("failed logins not read back from the audit log: login limits start from zero", "err", err)
	}
	for i := len(failed) - 1; i >= 0; i-- { // oldest first, as they happened
		e := failed[i]
		addr, err := netip.ParseAddr(e.Remote)
		if err != nil {
			continue
		}
		a.guard.fail(addr, e.Who, e.At)
	}
	return a
}

// Register mounts the API's routes on mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/login", a.login) // audits its attempts itself
	m := auditMux{a: a, mux: mux}              // every other change goes in the audit log
	m.HandleFunc("POST /api/logout", a.logout)
	m.HandleFunc("GET /api/me", a.whoami)
	m.HandleFunc("GET /api/openapi.json", serveOpenAPI)
	m.HandleFunc("GET /api/conferences", a.listConferences)
	m.HandleFunc("POST /api/conferences", a.createConference)
	m.HandleFunc("GET /api/conferences/{id}", a.getConference)
	m.HandleFunc("PUT /api/conferences/{id}", a.updateConference)
	m.HandleFunc("POST /api/conferences/{id}/state", a.setConferenceState)
	m.HandleFunc("GET /api/conferences/{id}/bridges", a.conferenceBridges)
	m.HandleFunc("GET /api/bridges", a.listBridges)
	m.HandleFunc("POST /api/bridges", a.createBridge)
	m.HandleFunc("GET /api/bridges.csv", a.exportBridges)
	m.HandleFunc("POST /api/bridges/import", a.importBridges)
	m.HandleFunc("PUT /api/bridges/{id}", a.updateBridge)
	m.HandleFunc("DELETE /api/bridges/{id}", a.deleteBridge)
	m.HandleFunc("DELETE /api/bridges/{id}/terminal-links", a.revokeTerminalLinks)
	m.HandleFunc("GET /api/users", a.listUsers)
	m.HandleFunc("POST /api/users", a.createUser)
	m.HandleFunc("DELETE /api/users/{name}", a.deleteUser)
	m.HandleFunc("PUT /api/users/{name}/password", a.setUserPassword)
	m.HandleFunc("GET /api/backup", a.backup)
	m.HandleFunc("GET /api/audit", a.auditLog)
	m.HandleFunc("POST /api/bridges/{id}/terminal-links", a.newTerminalLink)
	m.HandleFunc("PUT /api/conferences/{id}/bridges/{bridge}/max-layer", a.pinLayer)
	a.registerFloor(m)
	a.registerMinutes(m)
	a.registerReadiness(m)
	a.registerViewers(m)
	a.registerAccessLinks(m)
	a.registerLinks(m)
	a.registerNodes(m)
	a.registerRecordings(m)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API route")
	})
}

// apiError is the body of every error answer.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

// WriteError answers an API error ({"code", "message"}) for a route
// answered outside the API (a cluster node's forward to another).
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code, msg)
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(tok)
	}
	return ""
}

// caller authenticates the request (a bearer link token, or a login
// session's cookie), answering 401 itself on failure. A cookie on a
// request that changes something must come from our own page (403 csrf
// otherwise).
func (a *API) caller(w http.ResponseWriter, r *http.Request) (Grant, bool) {
	g, cookie, err := a.store.AuthenticateRequest(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="citybridge"`)
		code := "token_invalid"
		switch {
		case errors.Is(err, ErrTokenRequired):
			code = "token_required"
		case errors.Is(err, ErrSessionInvalid):
			code = "session_invalid"
		}
		writeError(w, http.StatusUnauthorized, code, err.Error())
		return g, false
	}
	if cookie && unsafeMethod(r.Method) && !a.origins.FromOwnPage(r) {
		a.log.Warn("cross-site request refused", "user", g.User, "origin", r.Header.Get("Origin"), "path", r.URL.Path)
		writeError(w, http.StatusForbidden, "csrf", "this request did not come from citybridge's own page")
		return g, false
	}
	return g, true
}

// allow authenticates and checks the caller's role against roles,
// answering 401/403 itself.
func (a *API) allow(w http.ResponseWriter, r *http.Request, roles ...Role) (Grant, bool) {
	g, ok := a.caller(w, r)
	if !ok {
		return g, false
	}
	for _, role := range roles {
		if g.Role == role {
			return g, true
		}
	}
	forbidden(w)
	return g, false
}

func forbidden(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "forbidden", "your role may not do this")
}

type conferenceSummary struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	State   State  `json:"state"`
	Invited int    `json:"invited"`
	// AutoRecord: recorded from the moment it goes live.
	AutoRecord bool `json:"auto_record,omitempty"`
}

func (a *API) listConferences(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	if g.Role != RoleTechnician && g.Role != RoleHost && g.Role != RoleAdmin {
		forbidden(w)
		return
	}
	cs, err := a.store.Conferences()
	if err != nil {
		a.internal(w, err)
		return
	}
	out := []conferenceSummary{}
	for _, c := range cs {
		if g.Role == RoleHost && g.Conference != "" && c.ID != g.Conference {
			continue
		}
		invited, err := a.store.InvitedBridges(c)
		if err != nil {
			a.internal(w, err)
			return
		}
		out = append(out, conferenceSummary{ID: c.ID, Title: c.Title, State: c.State, Invited: len(invited), AutoRecord: c.AutoRecord})
	}
	writeJSON(w, http.StatusOK, out)
}

type bridgePresence struct {
	Bridge
	State string `json:"state"`
}

func (a *API) conferenceBridges(w http.ResponseWriter, r *http.Request) {
	c, ok := a.conferenceOf(w, r, watches)
	if !ok {
		return
	}
	id := c.ID
	invited, err := a.store.InvitedBridges(c)
	if err != nil {
		a.internal(w, err)
		return
	}
	states := a.presence(id)
	out := make([]bridgePresence, 0, len(invited))
	for _, b := range invited {
		st := states[b.ID]
		if st == "" {
			st = "absent"
		}
		out = append(out, bridgePresence{Bridge: b, State: st})
	}
	writeJSON(w, http.StatusOK, out)
}

type terminalLink struct {
	Bridge  string    `json:"bridge"`
	Token   string    `json:"token"`
	Path    string    `json:"path"`
	Expires time.Time `json:"expires,omitzero"`
}

// newTerminalLink provisions a room terminal: a new token bound to one
// bridge. Earlier links of the bridge keep working until revoked.
func (a *API) newTerminalLink(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	if g.Role != RoleTechnician && g.Role != RoleAdmin {
		forbidden(w)
		return
	}
	id := r.PathValue("id")
	if err := checkNotReserved(id); err != nil { // a registry from before IDs were reserved
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	b, err := a.store.Bridge(id)
	if errors.Is(err, ErrNotFound) || (err == nil && b.Kind == KindHub) {
		writeError(w, http.StatusNotFound, "not_found", "no such bridge")
		return
	} else if err != nil {
		a.internal(w, err)
		return
	}
	req, exp, ok := a.readLinkRequest(w, r, 0)
	if !ok || !noName(w, req) {
		return
	}
	a.issueLink(w, Grant{Role: RoleRoom, Bridge: b.ID, Expires: exp}, func(tok string) any {
		return terminalLink{Bridge: b.ID, Token: tok, Path: "/room#t=" + url.QueryEscape(tok), Expires: exp}
	}, "terminal link issued", "bridge", b.ID)
}

// issueLink stores a new link token for grant and answers 201 with the body
// made from it, logging msg and attrs (never the token).
func (a *API) issueLink(w http.ResponseWriter, grant Grant, body func(tok string) any, msg string, attrs ...any) {
	tok, err := a.store.IssueToken(grant)
	if err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info(msg, attrs...)
	writeJSON(w, http.StatusCreated, body(tok))
}

// revokedLinks answers a revocation of n links (err from the store),
// logging msg and attrs.
func (a *API) revokedLinks(w http.ResponseWriter, n int, err error, msg string, attrs ...any) {
	if err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info(msg, append(attrs, "revoked", n)...)
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// openConference is conferenceOf for issuing links: an ended conference
// gets none (409).
func (a *API) openConference(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, bool) {
	c, ok := a.conferenceOf(w, r, allowed)
	if ok && c.State == StateEnded {
		writeError(w, http.StatusConflict, "bad_state", "the conference has ended")
		return Conference{}, false
	}
	return c, ok
}

func (a *API) internal(w http.ResponseWriter, err error) {
	a.log.Error("api", "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

type maxLayer struct {
	Bridge string `json:"bridge,omitempty"`
	Layer  string `json:"layer"` // "q", "h" or "f" ("f" lifts the cap)
}

// pinLayer lets a technician cap the simulcast layer one bridge receives
// (a link known to be poor); "f" lifts the cap.
func (a *API) pinLayer(w http.ResponseWriter, r *http.Request) {
	g, ok := a.caller(w, r)
	if !ok {
		return
	}
	if g.Role != RoleTechnician {
		forbidden(w)
		return
	}
	c, err := a.store.Conference(r.PathValue("id"))
	if err != nil {
		a.notFoundOr(w, err, "conference")
		return
	}
	bridge := r.PathValue("bridge")
	if b, err := a.store.Bridge(bridge); err != nil || b.Kind == KindHub || !c.Invites(bridge) {
		writeError(w, http.StatusNotFound, "not_found", "no such bridge in this conference")
		return
	}
	var body maxLayer
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || (body.Layer != "q" && body.Layer != "h" && body.Layer != "f") {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be {"layer": "q" | "h" | "f"}`)
		return
	}
	if a.media == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "media plane not running")
		return
	}
	if err := a.media.PinLayer(c.ID, bridge, body.Layer); err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info("max layer set", "conference", c.ID, "bridge", bridge, "layer", body.Layer)
	writeJSON(w, http.StatusOK, maxLayer{Bridge: bridge, Layer: body.Layer})
}
