package controlplane

import (
	"errors"
	"net/http"
	"time"
)

// The minutes video of a conference's recording (rendered by ffmpeg in
// the background, sfu/record/minutes.go): its job's state on the
// recording's GET, a render on demand, and a cancel.

// MinutesJob is one render of a conference's minutes video.
type MinutesJob struct {
	Conference string    `json:"conference"`
	State      string    `json:"state"` // queued, rendering, done, failed, cancelled
	Percent    int       `json:"percent"`
	File       string    `json:"file,omitempty"` // in the conference's recording directory, once done
	DurationMS int64     `json:"durationMs,omitempty"`
	Queued     time.Time `json:"queued"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// RecordingStatus is what GET /api/conferences/{id}/recording says.
type RecordingStatus struct {
	Conference string      `json:"conference"`
	Recording  bool        `json:"recording"`
	Minutes    *MinutesJob `json:"minutes"` // the newest render, null when none
}

// Errors of MinutesControl.
var (
	ErrNothingToRender = errors.New("nothing recorded to render for this conference")
	ErrNoMinutesJob    = errors.New("no minutes video is being rendered for this conference")
)

// MinutesControl renders the live conferences' minutes videos.
type MinutesControl interface {
	RecordingStatus(conferenceID string) (RecordingStatus, error)
	// RenderMinutes queues a render (ErrNothingToRender without one
	// segment recorded); one already under way is returned as it is.
	RenderMinutes(conferenceID string) (MinutesJob, error)
	// CancelMinutes stops the render under way (ErrNoMinutesJob).
	CancelMinutes(conferenceID string) (MinutesJob, error)
}

// SetMinutes connects the API to the minutes renders.
func (a *API) SetMinutes(m MinutesControl) { a.minutes = m }

func (a *API) registerMinutes(mux auditMux) {
	mux.HandleFunc("GET /api/conferences/{id}/recording", a.minutesCall(watches, func(id string) (any, int, error) {
		st, err := a.minutes.RecordingStatus(id)
		return st, http.StatusOK, err
	}))
	mux.HandleFunc("POST /api/conferences/{id}/recording/minutes", a.minutesCall(chairsOrAdmin, func(id string) (any, int, error) {
		j, err := a.minutes.RenderMinutes(id)
		return j, http.StatusAccepted, err
	}))
	mux.HandleFunc("DELETE /api/conferences/{id}/recording/minutes", a.minutesCall(chairsOrAdmin, func(id string) (any, int, error) {
		j, err := a.minutes.CancelMinutes(id)
		return j, http.StatusOK, err
	}))
}

// minutesCall checks the caller and the conference, then answers do's
// result.
func (a *API) minutesCall(allowed func(Grant, string) bool, do func(id string) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := a.conferenceOf(w, r, allowed)
		if !ok {
			return
		}
		if a.minutes == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "recording is not running on this server")
			return
		}
		v, status, err := do(c.ID)
		switch {
		case errors.Is(err, ErrNothingToRender):
			writeError(w, http.StatusConflict, "bad_state", err.Error())
		case errors.Is(err, ErrNoMinutesJob):
			writeError(w, http.StatusNotFound, "not_found", err.Error())
		case err != nil:
			a.internal(w, err)
		default:
			writeJSON(w, status, v)
		}
	}
}
