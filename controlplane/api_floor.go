package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// FloorControl is what the API may ask of the live conferences: the same
// floor actions the host console sends over signaling, checked by the same
// rules (signaling/floor.go).
type FloorControl interface {
	// Control applies a host's request to a conference. A refused one
	// returns a *FloorRefusal.
	Control(conferenceID string, req FloorRequest) error
	// Floor returns a conference's floor state.
	Floor(conferenceID string) (FloorState, error)
}

// SetFloor connects the API to the live conferences (floor control).
func (a *API) SetFloor(f FloorControl) { a.floor = f }

func (a *API) registerFloor(mux auditMux) {
	mux.HandleFunc("GET /api/conferences/{id}/floor", a.getFloor)
	mux.HandleFunc("POST /api/conferences/{id}/floor", a.floorAction(ActionGiveFloor))
	mux.HandleFunc("DELETE /api/conferences/{id}/floor", a.floorAction(ActionTakeFloor))
	mux.HandleFunc("POST /api/conferences/{id}/bridges/{bridge}/mute", a.floorAction(ActionMute))
	mux.HandleFunc("DELETE /api/conferences/{id}/bridges/{bridge}/mute", a.floorAction(ActionUnmute))
	mux.HandleFunc("POST /api/conferences/{id}/mute-all", a.floorAction(ActionMuteAll))
	mux.HandleFunc("POST /api/conferences/{id}/lock", a.floorAction(ActionLock))
	mux.HandleFunc("DELETE /api/conferences/{id}/lock", a.floorAction(ActionUnlock))
	mux.HandleFunc("DELETE /api/conferences/{id}/hands/{bridge}", a.floorAction(ActionLowerHand))
	mux.HandleFunc("GET /api/conferences/{id}/attendance", a.attendance)
	mux.HandleFunc("POST /api/conferences/{id}/recording", a.floorActionBy(ActionRecord, chairsOrAdmin))
	mux.HandleFunc("DELETE /api/conferences/{id}/recording", a.floorActionBy(ActionStopRecord, chairsOrAdmin))
}

// chairs reports whether g may chair conference id: a host token bound to
// it, or a host login (bound to none).
func chairs(g Grant, id string) bool {
	return g.Role == RoleHost && (g.Conference == id || g.Conference == "")
}

// watches reports whether g may read conference id's live state and record.
func watches(g Grant, id string) bool {
	return chairs(g, id) || g.Role == RoleTechnician || g.Role == RoleAdmin
}

// conferenceOf authenticates, checks allowed for the path's conference and
// loads it, answering errors itself.
func (a *API) conferenceOf(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, bool) {
	c, _, ok := a.conferenceAndCaller(w, r, allowed)
	return c, ok
}

// conferenceAndCaller is conferenceOf that also returns the caller.
func (a *API) conferenceAndCaller(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, Grant, bool) {
	g, ok := a.caller(w, r)
	if !ok {
		return Conference{}, g, false
	}
	id := r.PathValue("id")
	if !allowed(g, id) {
		forbidden(w)
		return Conference{}, g, false
	}
	c, err := a.store.Conference(id)
	if err != nil {
		a.notFoundOr(w, err, "conference")
		return c, g, false
	}
	return c, g, true
}

// conferenceFor is conferenceOf for the floor routes, which also need the
// live conferences.
func (a *API) conferenceFor(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, bool) {
	c, _, ok := a.conferenceForCaller(w, r, allowed)
	return c, ok
}

// conferenceForCaller is conferenceFor that also returns the caller.
func (a *API) conferenceForCaller(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, Grant, bool) {
	c, g, ok := a.conferenceAndCaller(w, r, allowed)
	if !ok {
		return c, g, false
	}
	if a.floor == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "live conferences not running")
		return c, g, false
	}
	return c, g, true
}

func (a *API) getFloor(w http.ResponseWriter, r *http.Request) {
	c, ok := a.conferenceFor(w, r, watches)
	if !ok {
		return
	}
	f, err := a.floor.Floor(c.ID)
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

type giveFloor struct {
	Bridge string `json:"bridge"`
}

// floorAction answers one of the host's floor actions with the new floor
// state.
func (a *API) floorAction(action FloorAction) http.HandlerFunc {
	return a.floorActionBy(action, chairs)
}

// floorActionBy is floorAction for the callers allowed says.
func (a *API) floorActionBy(action FloorAction, allowed func(Grant, string) bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, g, ok := a.conferenceForCaller(w, r, allowed)
		if !ok {
			return
		}
		req := FloorRequest{Action: action, Bridge: r.PathValue("bridge"), By: WhoOf(g)}
		if action == ActionGiveFloor {
			var body giveFloor
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil || body.Bridge == "" {
				writeError(w, http.StatusBadRequest, "bad_request", `body must be {"bridge": "<bridge id>"}`)
				return
			}
			req.Bridge = body.Bridge
		}
		if err := a.floor.Control(c.ID, req); err != nil {
			var refusal *FloorRefusal
			if !errors.As(err, &refusal) {
				a.internal(w, err)
				return
			}
			writeError(w, refusalStatus(refusal.Reason), string(refusal.Reason), refusal.Message)
			return
		}
		f, err := a.floor.Floor(c.ID)
		if err != nil {
			a.internal(w, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
	}
}

// refusalStatus is the HTTP status of a refused floor action: the
// conference's state is in the way unless the request itself is wrong.
func refusalStatus(r RefusalReason) int {
	switch r {
	case RefusedUnknownBridge:
		return http.StatusNotFound
	case RefusedBadAction:
		return http.StatusBadRequest
	case RefusedForbidden:
		return http.StatusForbidden
	}
	return http.StatusConflict
}

// attendance answers the record as JSON, or as CSV with ?format=csv or
// Accept: text/csv.
func (a *API) attendance(w http.ResponseWriter, r *http.Request) {
	c, ok := a.conferenceOf(w, r, watches)
	if !ok {
		return
	}
	id := c.ID
	rec, err := a.store.Attendance(id)
	if err != nil {
		a.internal(w, err)
		return
	}
	if r.URL.Query().Get("format") == "csv" || strings.Contains(r.Header.Get("Accept"), "text/csv") {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="attendance-`+id+`.csv"`)
		w.Header().Set("Cache-Control", "no-store")
		if err := WriteAttendanceCSV(w, rec); err != nil {
			a.log.Error("attendance CSV", "conference", id, "err", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"conference": id, "bridges": rec})
}
