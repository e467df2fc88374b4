package controlplane

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// The technicians' link routes: every bridge's link now, its history, the
// event log, alerts, and actions on one bridge. Technicians and
// administrators only (logins or technician links).

// SetMonitor connects the API to the link-quality monitor. Without one the
// routes answer from the store alone: no links, no alerts.
func (a *API) SetMonitor(m *Monitor) { a.monitor = m }

// LinkView is one bridge's link with its registry entry.
type LinkView struct {
	BridgeLink
	Name string `json:"name"`
	Area string `json:"area,omitempty"`
	Kind Kind   `json:"kind,omitempty"`
	// Node is the cluster node that serves the bridge's conference
	// (empty on one machine).
	Node string `json:"node,omitempty"`
}

// LinksView is what the dashboard shows: every link, then the active
// alerts and the recently cleared ones.
type LinksView struct {
	Links  []LinkView `json:"links"`
	Alerts []Alert    `json:"alerts"`
	// Missing names the cluster's nodes that did not answer: their
	// bridges are not in this view.
	Missing []string `json:"missing_nodes,omitempty"`
}

// maxEventsAnswer bounds one answer of GET /api/events; defaultEvents is
// its size when no limit is given.
const (
	maxEventsAnswer = 100_000
	defaultEvents   = 1000
)

// defaultHistory is the span of GET /api/bridges/{id}/history without from.
const defaultHistory = time.Hour

func (a *API) registerLinks(m auditMux) {
	m.HandleFunc("GET /api/links", a.links)
	m.HandleFunc("GET /api/bridges/{id}/history", a.bridgeHistory)
	m.HandleFunc("GET /api/events", a.events)
	m.HandleFunc("GET /api/alerts", a.alerts)
	m.HandleFunc("POST /api/conferences/{id}/bridges/{bridge}/actions/{action}", a.techAction)
}

// LinksView returns every bridge the monitor knows, joined with the
// registry (a bridge since removed from it keeps its ID as its name), and
// the active and recent alerts.
func (a *API) LinksView() (LinksView, error) {
	out := LinksView{Links: []LinkView{}, Alerts: []Alert{}}
	if a.monitor == nil {
		return out, nil
	}
	bs, err := a.store.Bridges()
	if err != nil {
		return out, err
	}
	reg := make(map[string]Bridge, len(bs)+1)
	reg[HubBridge.ID] = HubBridge
	for _, b := range bs {
		reg[b.ID] = b
	}
	for _, l := range a.monitor.Links() {
		v := LinkView{BridgeLink: l, Name: l.Bridge}
		if b, ok := reg[l.Bridge]; ok {
			v.Name, v.Area, v.Kind = b.Name, b.Area, b.Kind
		}
		if v.Spark == nil {
			v.Spark = []int{}
		}
		out.Links = append(out.Links, v)
	}
	if al := a.monitor.Alerts(true); al != nil {
		out.Alerts = al
	}
	return out, nil
}

// links serves GET /api/links: in a cluster, every node's links (another
// node asking gets this node's own).
func (a *API) links(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleTechnician, RoleAdmin); !ok {
		return
	}
	var v LinksView
	var err error
	if Forwarded(r) {
		v, err = a.ownLinksView()
	} else {
		v, err = a.ClusterLinksView(callerAuth(r))
	}
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// timeRange reads the from and to query parameters (RFC 3339), answering
// 400 itself on a bad one.
func timeRange(w http.ResponseWriter, r *http.Request) (from, to time.Time, ok bool) {
	for name, t := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := r.URL.Query().Get(name); v != "" {
			p, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", name+" must be an RFC 3339 time, e.g. 2026-12-01T08:00:00+07:00")
				return from, to, false
			}
			*t = p
		}
	}
	return from, to, true
}

// bridgeHistory serves GET /api/bridges/{id}/history[?from=][&to=]: the
// bridge's points, by default those of the last hour.
func (a *API) bridgeHistory(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleTechnician, RoleAdmin); !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := a.store.Bridge(id); err != nil {
		a.notFoundOr(w, err, "bridge")
		return
	}
	from, to, ok := timeRange(w, r)
	if !ok {
		return
	}
	if from.IsZero() {
		end := to
		if end.IsZero() {
			end = a.store.now()
		}
		from = end.Add(-defaultHistory)
	}
	points, err := a.store.History(id, from, to)
	if err != nil {
		a.internal(w, err)
		return
	}
	if points == nil {
		points = []HistoryPoint{}
	}
	writeJSON(w, http.StatusOK, points)
}

// events serves GET /api/events[?bridge=][&conference=][&from=][&to=]
// [&limit=][&format=csv]: the link record, oldest first, the newest limit
// events (default 1000).
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleTechnician, RoleAdmin); !ok {
		return
	}
	from, to, ok := timeRange(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := defaultEvents
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventsAnswer {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be a number from 1 to "+strconv.Itoa(maxEventsAnswer))
			return
		}
		limit = n
	}
	evs, err := a.store.Events(q.Get("conference"), q.Get("bridge"), from, to, limit)
	if err != nil {
		a.internal(w, err)
		return
	}
	if evs == nil {
		evs = []Event{}
	}
	if q.Get("format") != "csv" {
		writeJSON(w, http.StatusOK, evs)
		return
	}
	rows := [][]string{{"at", "conference", "bridge", "kind", "cause", "detail"}}
	for _, e := range evs {
		rows = append(rows, []string{e.At.Format(time.RFC3339Nano), e.Conference, e.Bridge, e.Kind, e.Cause, e.Detail})
	}
	writeCSV(w, "citybridge-events.csv", rows)
}

// alerts serves GET /api/alerts[?recent=1]: the active alerts, newest
// first, then with recent the cleared ones still remembered; in a
// cluster, every node's.
func (a *API) alerts(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleTechnician, RoleAdmin); !ok {
		return
	}
	writeJSON(w, http.StatusOK, a.clusterAlerts(r, r.URL.Query().Get("recent") == "1"))
}

type techActionAnswer struct {
	Action string `json:"action"`
}

// techAction serves POST /api/conferences/{id}/bridges/{bridge}/actions/
// {action}: a technician's action on a joined bridge (TechActions), kept in
// the link record with who asked.
func (a *API) techAction(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleTechnician, RoleAdmin)
	if !ok {
		return
	}
	action := r.PathValue("action")
	if !slices.Contains(TechActions, action) {
		writeError(w, http.StatusBadRequest, "bad_request", "unknown action "+strconv.Quote(action))
		return
	}
	c, err := a.store.Conference(r.PathValue("id"))
	if err != nil {
		a.notFoundOr(w, err, "conference")
		return
	}
	bridge := r.PathValue("bridge")
	if a.media == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "media plane not running")
		return
	}
	if err := a.media.TechAction(c.ID, bridge, action); errors.Is(err, ErrNotJoined) {
		writeError(w, http.StatusConflict, "not_joined", "the bridge is not in the conference")
		return
	} else if err != nil {
		a.internal(w, err)
		return
	}
	ev := Event{Conference: c.ID, Bridge: bridge, Kind: EventAction, Cause: action, Detail: WhoOf(g)}
	if a.monitor != nil {
		a.monitor.Record(ev)
	} else if err := a.store.AddEvents(ev); err != nil {
		a.log.Error("storing link events", "err", err, "events", 1)
	}
	a.log.Info("technician action", "conference", c.ID, "bridge", bridge, "action", action, "who", WhoOf(g))
	writeJSON(w, http.StatusAccepted, techActionAnswer{Action: action})
}
