package controlplane

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// The archive of recordings, as the API shows it: each conference's
// recorded files (listed from its manifest), downloaded by the
// administrators and the conference's chair (range requests answered),
// deleted by the administrators. The files are on the server's disk;
// RecordingArchive (signaling's) reads and removes them.

// AlertRecordingSpace is the server's own alert (RaiseNodeAlert) while a
// recording runs with less than twice --recordings-min-free free, or
// after a write found the disk full; cleared when the space is back.
const AlertRecordingSpace = "recording_space"

// RecordingArchive is what the API may ask of the recordings on disk.
type RecordingArchive interface {
	// Recordings lists conference's recordings (empty lists when it was
	// never recorded).
	Recordings(conference string) (Recordings, error)
	// OpenRecording opens one file its manifest names: ErrNoRecording
	// for any other name.
	OpenRecording(conference, file string) (RecordingReader, RecordingFile, error)
	// DeleteRecordings removes all of conference's recordings and says
	// how many files and bytes went: ErrRecordingBusy while it is
	// recorded. A render of its minutes video under way is cancelled.
	DeleteRecordings(conference string) (files int, bytes int64, err error)
}

// RecordingReader is an open recorded file.
type RecordingReader interface {
	io.ReadSeekCloser
}

// Errors of a RecordingArchive.
var (
	ErrNoRecording   = errors.New("no such file in this conference's recordings")
	ErrRecordingBusy = errors.New("the conference is being recorded: stop the recording first")
)

// Recordings is one conference's archive.
type Recordings struct {
	Conference string `json:"conference"`
	// Recording: a recording is running (or will resume): the files are
	// still growing, and they cannot be deleted.
	Recording bool           `json:"recording"`
	Runs      []RecordingRun `json:"runs"`
	// Segments are the tracks' files, as the recorder closed them.
	Segments []RecordingFile `json:"segments"`
	// Minutes are the rendered minutes videos (minutes.mp4, once a
	// render finished; kind "minutes", End when it was rendered).
	Minutes []RecordingFile `json:"minutes"`
	Files   int             `json:"files"`
	Bytes   int64           `json:"bytes"`
}

// RecordingRun is one stretch of recording: who started it, when, and
// when it stopped (zero while running, or when the server died).
type RecordingRun struct {
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"`
	Resumed bool      `json:"resumed,omitempty"`
	Stopped time.Time `json:"stopped,omitzero"`
	// StoppedBy says who stopped it when it was not a person: "system"
	// (the disk ran low).
	StoppedBy string `json:"stopped_by,omitempty"`
}

// RecordingFile is one recorded file.
type RecordingFile struct {
	File       string    `json:"file"`
	URL        string    `json:"url"` // the download
	Track      string    `json:"track,omitempty"`
	Publisher  string    `json:"publisher,omitempty"`
	Kind       string    `json:"kind,omitempty"`
	Codec      string    `json:"codec,omitempty"`
	Layer      string    `json:"layer,omitempty"`
	Width      int       `json:"width,omitempty"`
	Height     int       `json:"height,omitempty"`
	Start      time.Time `json:"start,omitzero"`
	End        time.Time `json:"end,omitzero"`
	DurationMS int64     `json:"duration_ms"`
	Bytes      int64     `json:"bytes"`
	SHA256     string    `json:"sha256"`
	// By is who started the run the file belongs to.
	By string `json:"by,omitempty"`
}

// SetRecordings connects the API to the recordings on disk.
func (a *API) SetRecordings(r RecordingArchive) { a.recordings = r }

func (a *API) registerRecordings(mux auditMux) {
	mux.HandleFunc("GET /api/conferences/{id}/recordings", a.listRecordings)
	mux.HandleFunc("GET /api/conferences/{id}/recordings/{file}", a.downloadRecording) // audited (auditedReads)
	mux.HandleFunc("DELETE /api/conferences/{id}/recordings", a.deleteRecordings)
}

// recordingsOf authenticates, authorizes and loads the path's conference,
// and checks that recordings are served here.
func (a *API) recordingsOf(w http.ResponseWriter, r *http.Request, allowed func(Grant, string) bool) (Conference, bool) {
	c, ok := a.conferenceOf(w, r, allowed)
	if !ok {
		return c, false
	}
	if a.recordings == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "recordings are not served here")
		return c, false
	}
	return c, true
}

func (a *API) listRecordings(w http.ResponseWriter, r *http.Request) {
	c, ok := a.recordingsOf(w, r, chairsOrAdmin)
	if !ok {
		return
	}
	rec, err := a.recordings.Recordings(c.ID)
	if err != nil {
		a.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// downloadRecording serves one file, with range requests, as an
// attachment. Only names the conference's manifest lists are served.
func (a *API) downloadRecording(w http.ResponseWriter, r *http.Request) {
	c, ok := a.recordingsOf(w, r, chairsOrAdmin)
	if !ok {
		return
	}
	name := r.PathValue("file")
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		writeError(w, http.StatusBadRequest, "bad_request", "a recording is named by its file name alone")
		return
	}
	f, info, err := a.recordings.OpenRecording(c.ID, name)
	if errors.Is(err, ErrNoRecording) {
		writeError(w, http.StatusNotFound, "not_found", ErrNoRecording.Error())
		return
	}
	if err != nil {
		a.internal(w, err)
		return
	}
	defer f.Close()
	ct := "application/octet-stream"
	switch {
	case strings.HasSuffix(name, ".webm"):
		ct = "video/webm"
	case strings.HasSuffix(name, ".mkv"):
		ct = "video/x-matroska"
	case strings.HasSuffix(name, ".mp4"):
		ct = "video/mp4"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	if info.SHA256 != "" {
		w.Header().Set("ETag", `"`+info.SHA256+`"`)
	}
	http.ServeContent(w, r, name, info.End, f)
}

// deleteRecordings removes a conference's recordings, its minutes video
// with them (administrators only; audited as every change is). Refused
// while it is recorded; a render of its minutes video under way is
// cancelled.
func (a *API) deleteRecordings(w http.ResponseWriter, r *http.Request) {
	c, ok := a.recordingsOf(w, r, func(g Grant, _ string) bool { return g.Role == RoleAdmin })
	if !ok {
		return
	}
	files, bytes, err := a.recordings.DeleteRecordings(c.ID)
	if errors.Is(err, ErrRecordingBusy) {
		writeError(w, http.StatusConflict, "bad_state", err.Error())
		return
	}
	if err != nil {
		a.internal(w, err)
		return
	}
	a.log.Info("recordings deleted", "conference", c.ID, "files", files, "bytes", bytes)
	writeJSON(w, http.StatusOK, map[string]any{"conference": c.ID, "files": files, "bytes": bytes})
}
