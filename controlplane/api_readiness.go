package controlplane

import (
	"errors"
	"net/http"
)

// SetReadiness connects the API to the readiness checks.
func (a *API) SetReadiness(r *Readiness) { a.readiness = r }

func (a *API) registerReadiness(mux auditMux) {
	mux.HandleFunc("POST /api/conferences/{id}/readiness", a.startReadiness)
	mux.HandleFunc("GET /api/conferences/{id}/readiness", a.getReadiness)
}

// startReadiness starts a readiness check of every bridge invited to the
// conference (technicians and administrators): 202 with the running
// report, 409 while one runs.
func (a *API) startReadiness(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleTechnician, RoleAdmin)
	if !ok {
		return
	}
	c, err := a.store.Conference(r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such conference")
		return
	} else if err != nil {
		a.internal(w, err)
		return
	}
	if c.State == StateEnded {
		writeError(w, http.StatusConflict, "conference_ended", "the conference has ended")
		return
	}
	if a.readiness == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "readiness checks are not available on this server")
		return
	}
	rep, err := a.readiness.Start(c, WhoOf(g))
	if errors.Is(err, ErrReadinessRunning) {
		writeError(w, http.StatusConflict, "running", err.Error())
		return
	} else if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, rep)
}

// getReadiness returns the running or last readiness report of a
// conference, as JSON or (format=csv) CSV.
func (a *API) getReadiness(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleTechnician, RoleAdmin); !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := a.store.Conference(id); errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such conference")
		return
	} else if err != nil {
		a.internal(w, err)
		return
	}
	if a.readiness == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "readiness checks are not available on this server")
		return
	}
	rep, ok, err := a.readiness.Report(id)
	if err != nil {
		a.internal(w, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no readiness check has run for this conference")
		return
	}
	if rep.Bridges == nil {
		rep.Bridges = []ReadinessRow{}
	}
	if r.URL.Query().Get("format") != "csv" {
		writeJSON(w, http.StatusOK, rep)
		return
	}
	writeCSV(w, "citybridge-readiness-"+id+".csv", rep.CSVRows())
}
