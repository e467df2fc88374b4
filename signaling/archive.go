package signaling

import (
	"errors"
	"net/url"
	"os"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// The archive of recordings on this server's disk, as the API asks for
// it (controlplane.RecordingArchive): listed from the manifests, a file
// opened only by a name its manifest gives, a conference's recordings
// deleted only while it is not recorded.

func (s *Server) archive() record.Archive { return record.Archive{Dir: s.cfg.Recordings.Dir} }

// loaded is the conference's live side if this server has one, without
// making one.
func (s *Server) loaded(id string) *conference {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conferences[id]
}

// recordingWanted reports whether conference id is recorded now, or will
// resume recording when it is next served (the stored floor state).
func (s *Server) recordingWanted(id string) bool {
	if c := s.loaded(id); c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.recording
	}
	st, err := s.cfg.Store.LiveState(id)
	return err == nil && st.Recording
}

// Recordings lists a conference's recordings.
func (s *Server) Recordings(id string) (controlplane.Recordings, error) {
	out := controlplane.Recordings{Conference: id, Runs: []controlplane.RecordingRun{},
		Segments: []controlplane.RecordingFile{}, Minutes: []controlplane.RecordingFile{}}
	out.Recording = s.recordingWanted(id)
	if s.cfg.Recordings.Dir == "" {
		return out, nil
	}
	m, err := s.archive().Manifest(id)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	for _, r := range m.Runs {
		out.Runs = append(out.Runs, controlplane.RecordingRun{Started: r.Started, By: r.By, Resumed: r.Resumed, Stopped: r.Stopped, StoppedBy: r.StoppedBy})
	}
	for _, sg := range m.Segments {
		out.Segments = append(out.Segments, controlplane.RecordingFile{
			File: sg.File, URL: "/api/conferences/" + url.PathEscape(id) + "/recordings/" + url.PathEscape(sg.File),
			Track: sg.Track, Publisher: sg.Publisher, Kind: sg.Kind, Codec: sg.Codec, Layer: sg.Layer,
			Width: sg.Width, Height: sg.Height, Start: sg.Start, End: sg.End, DurationMS: sg.DurationMS,
			Bytes: sg.Bytes, SHA256: sg.SHA256, By: runOf(m.Runs, sg.Start),
		})
		out.Files++
		out.Bytes += sg.Bytes
	}
	infos, err := s.archive().MinutesVideos(id)
	if err != nil {
		// The segments are still worth listing.
		s.log.Warn("recordings: a minutes video's description is unreadable", "conference", id, "err", err)
	}
	for _, info := range infos {
		sg := info.Segment()
		out.Minutes = append(out.Minutes, controlplane.RecordingFile{
			File: sg.File, URL: "/api/conferences/" + url.PathEscape(id) + "/recordings/" + url.PathEscape(sg.File),
			Kind: sg.Kind, Codec: sg.Codec, Start: sg.Start, End: sg.End, DurationMS: sg.DurationMS,
			Bytes: sg.Bytes, SHA256: sg.SHA256,
		})
		out.Files++
		out.Bytes += sg.Bytes
	}
	return out, nil
}

// runOf is who started the run a segment starting at t belongs to: the
// last run started before it.
func runOf(runs []record.Run, t time.Time) string {
	by := ""
	for _, r := range runs {
		if !r.Started.After(t) {
			by = r.By
		}
	}
	return by
}

// OpenRecording opens one recorded file by the name its manifest gives.
func (s *Server) OpenRecording(id, file string) (controlplane.RecordingReader, controlplane.RecordingFile, error) {
	if s.cfg.Recordings.Dir == "" {
		return nil, controlplane.RecordingFile{}, controlplane.ErrNoRecording
	}
	f, sg, err := s.archive().Open(id, file)
	if errors.Is(err, record.ErrNoFile) || errors.Is(err, record.ErrBadName) {
		return nil, controlplane.RecordingFile{}, controlplane.ErrNoRecording
	}
	if err != nil {
		return nil, controlplane.RecordingFile{}, err
	}
	return f, controlplane.RecordingFile{File: sg.File, End: sg.End, Bytes: sg.Bytes, SHA256: sg.SHA256}, nil
}

// DeleteRecordings removes a conference's recordings, minutes video
// included, unless it is being recorded (or will resume recording). A
// render of its minutes video under way is cancelled first, and waited
// for: the server renders after every stop, so refusing would refuse
// every deletion in the minutes after a meeting, and ffmpeg must not
// write into a directory being removed. The conference's recorder, if
// this server made one, goes with them: the next recording starts a new
// manifest.
func (s *Server) DeleteRecordings(id string) (files int, bytes int64, err error) {
	if s.cfg.Recordings.Dir == "" {
		return 0, 0, nil
	}
	c := s.loaded(id)
	if c != nil {
		c.recMu.Lock() // no recording starts meanwhile (syncRecording holds it)
		defer c.recMu.Unlock()
	}
	if s.recordingWanted(id) || (c != nil && c.rec != nil && c.rec.Recording()) {
		return 0, 0, controlplane.ErrRecordingBusy
	}
	if s.renderer().Stop(id) {
		s.log.Info("minutes video cancelled: its recordings are being deleted", "conference", id)
	}
	files, bytes, err = s.archive().Remove(id)
	if c != nil && err == nil {
		c.rec = nil
	}
	return files, bytes, err
}
