package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"citybridge/signaling/wire"
)

// FloorControl is what the API may ask of the live conferences: the same
// floor actions the host console sends over signaling, checked by the same
// rules (signaling/floor.go).
type FloorControl interface {
	// Control applies a host's action to a conference (see wire.Control).
	Control(conferenceID string, c wire.Control) error
	// Floor returns a conference's floor state.
	Floor(conferenceID string) (wire.Floor, error)
}

// ControlRefusal is implemented by the errors Control returns for a
// refused action: WireCode is the signaling error code.
type ControlRefusal interface {
	error
	WireCode() string
}

// SetFloor connects the API to the live conferences (floor control).
func (a *API) SetFloor(f FloorControl) { a.floor = f }

func (a *API) registerFloor(mux auditMux) {
	mux.HandleFunc("GET /api/conferences/{id}/floor", a.getFloor)
	mux.HandleFunc("POST /api/conferences/{id}/floor", a.floorAction(wire.ActionGiveFloor))
	mux.HandleFunc("DELETE /api/conferences/{id}/floor", a.floorAction(wire.ActionTakeFloor))
	mux.HandleFunc("POST /api/conferences/{id}/bridges/{bridge}/mute", a.floorAction(wire.ActionMute))
	mux.HandleFunc("DELETE /api/conferences/{id}/bridges/{bridge}/mute", a.floorAction(wire.ActionUnmute))
	mux.HandleFunc("POST /api/conferences/{id}/mute-all", a.floorAction(wire.ActionMuteAll))
	mux.HandleFunc("POST /api/conferences/{id}/lock", a.floorAction(wire.ActionLock))
	mux.HandleFunc("DELETE /api/conferences/{id}/lock", a.floorAction(wire.ActionUnlock))
	mux.HandleFunc("DELETE /api/conferences/{id}/hands/{bridge}", a.floorAction(wire.ActionLowerHand))
	mux.HandleFunc("GET /api/conferences/{id}/attendance", a.attendance)
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
	g, ok := a.caller(w, r)
	if !ok {
		return Conference{}, false
	}
	id := r.PathValue("id")
	if !allowed(g, id) {
		forbidden(w)
		return Conference{}, false
	}
	c, err := a.store.Conference(id)
	if err != nil {
		a.notFoundOr(w, err, "conference")
		return c, false
	}
	return c, true
}

// conferenceFor is conferenceOf for the floor routes, which also need the
// live conferences.
func (a *API) conferenceFor(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, bool) {
	c, ok := a.conferenceOf(w, r, allowed)
	if !ok {
		return c, false
	}
	if a.floor == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "live conferences not running")
		return c, false
	}
	return c, true
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
func (a *API) floorAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := a.conferenceFor(w, r, chairs)
		if !ok {
			return
		}
		ctl := wire.Control{Action: action, Bridge: r.PathValue("bridge")}
		if action == wire.ActionGiveFloor {
			var body giveFloor
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil || body.Bridge == "" {
				writeError(w, http.StatusBadRequest, "bad_request", `body must be {"bridge": "<bridge id>"}`)
				return
			}
			ctl.Bridge = body.Bridge
		}
		if err := a.floor.Control(c.ID, ctl); err != nil {
			var refusal ControlRefusal
			if !errors.As(err, &refusal) {
				a.internal(w, err)
				return
			}
			status := http.StatusConflict
			switch refusal.WireCode() {
			case wire.CodeUnknownBridge:
				status = http.StatusNotFound
			case wire.CodeBadMessage:
				status = http.StatusBadRequest
			case wire.CodeForbidden:
				status = http.StatusForbidden
			}
			writeError(w, status, refusal.WireCode(), refusal.Error())
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
