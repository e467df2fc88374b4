package controlplane

import (
	"encoding/json"
	"errors"
	"io"
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
	From       time.Time `json:"from,omitzero"` // the range rendered; absent: the whole recording
	To         time.Time `json:"to,omitzero"`
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
	// ErrRangeNotRecorded: a range with nothing recorded in it (wrapped
	// with what the recording covers).
	ErrRangeNotRecorded = errors.New("the range is outside the recording")
)

// MinutesRange is the part of the meeting a minutes video shows, on the
// wall clock: both zero for the whole recording.
type MinutesRange struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Whole reports whether r asks for the whole recording.
func (r MinutesRange) Whole() bool { return r.From.IsZero() && r.To.IsZero() }

// MinutesControl renders the live conferences' minutes videos.
type MinutesControl interface {
	RecordingStatus(conferenceID string) (RecordingStatus, error)
	// RenderMinutes queues a render of the whole recording or of a range
	// of it (ErrNothingToRender without one segment recorded,
	// ErrRangeNotRecorded for a range outside it); the same render
	// already under way is returned as it is.
	RenderMinutes(conferenceID string, r MinutesRange) (MinutesJob, error)
	// CancelMinutes stops the render under way (ErrNoMinutesJob).
	CancelMinutes(conferenceID string) (MinutesJob, error)
}

// SetMinutes connects the API to the minutes renders.
func (a *API) SetMinutes(m MinutesControl) { a.minutes = m }

func (a *API) registerMinutes(mux auditMux) {
	mux.HandleFunc("GET /api/conferences/{id}/recording", a.minutesCall(watches, func(id string, _ *http.Request) (any, int, error) {
		st, err := a.minutes.RecordingStatus(id)
		return st, http.StatusOK, err
	}))
	mux.HandleFunc("POST /api/conferences/{id}/recording/minutes", a.minutesCall(chairsOrAdmin, func(id string, r *http.Request) (any, int, error) {
		rng, err := readMinutesRange(r)
		if err != nil {
			return nil, 0, err
		}
		j, err := a.minutes.RenderMinutes(id, rng)
		return j, http.StatusAccepted, err
	}))
	mux.HandleFunc("DELETE /api/conferences/{id}/recording/minutes", a.minutesCall(chairsOrAdmin, func(id string, _ *http.Request) (any, int, error) {
		j, err := a.minutes.CancelMinutes(id)
		return j, http.StatusOK, err
	}))
}

// badMinutesRange: a POST's body that is not a range.
type badMinutesRange string

func (e badMinutesRange) Error() string { return string(e) }

const minutesRangeUsage = `body must be empty (the whole recording) or {"from": "<RFC 3339 time>", "to": "<RFC 3339 time>"}, from before to`

// readMinutesRange reads a render's optional body: nothing (or {}) for
// the whole recording, or both ends of a range, from before to.
func readMinutesRange(r *http.Request) (MinutesRange, error) {
	var rng MinutesRange
	dec := json.NewDecoder(io.LimitReader(r.Body, 1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rng); err != nil && !errors.Is(err, io.EOF) {
		return rng, badMinutesRange(minutesRangeUsage + ": " + err.Error())
	}
	if dec.More() {
		return rng, badMinutesRange(minutesRangeUsage + ": more than one JSON value")
	}
	if rng.Whole() {
		return rng, nil
	}
	if rng.From.IsZero() || rng.To.IsZero() {
		return rng, badMinutesRange(minutesRangeUsage + ": both from and to, or neither")
	}
	if !rng.From.Before(rng.To) {
		return rng, badMinutesRange(minutesRangeUsage + ": from is not before to")
	}
	rng.From, rng.To = rng.From.UTC(), rng.To.UTC()
	return rng, nil
}

// minutesCall checks the caller and the conference, then answers do's
// result.
func (a *API) minutesCall(allowed func(Grant, string) bool, do func(id string, r *http.Request) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := a.conferenceOf(w, r, allowed)
		if !ok {
			return
		}
		if a.minutes == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "recording is not running on this server")
			return
		}
		v, status, err := do(c.ID, r)
		var bad badMinutesRange
		switch {
		case errors.As(err, &bad):
			writeError(w, http.StatusBadRequest, "bad_request", bad.Error())
		case errors.Is(err, ErrNothingToRender), errors.Is(err, ErrRangeNotRecorded):
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
