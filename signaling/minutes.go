package signaling

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// The minutes video: when a person stops a conference's recording (not
// when the conference merely leaves this server), and on demand through
// the API, ffmpeg renders the recording into one MP4 beside its segments
// (sfu/record/minutes.go), in the background: one render per CPU, niced.

// minutesState is the server's renderer, made on first use.
type minutesState struct {
	once sync.Once
	r    *record.Renderer
}

func (s *Server) renderer() *record.Renderer {
	s.minutes.once.Do(func() {
		s.minutes.r = record.NewRenderer(record.RendererOptions{Logger: s.log, OnChange: s.minutesChanged})
	})
	return s.minutes.r
}

// closeMinutes cancels the renders under way (a render is redone on
// demand; half a video is of no use).
func (s *Server) closeMinutes() {
	s.minutes.once.Do(func() {}) // none made: none made later
	if s.minutes.r != nil {
		s.minutes.r.Close()
	}
}

// minutesChanged shows a render's progress on the pages (the console
// shows it in the floor message) and logs its state changes (progress
// only in steps of a quarter, for the log's sake).
func (s *Server) minutesChanged(j record.MinutesJob) {
	s.mu.Lock()
	conf := s.conferences[j.Conference]
	s.mu.Unlock()
	if conf != nil {
		conf.broadcastFloor()
	}
	if j.State == record.JobRendering && j.Percent%25 != 0 {
		return
	}
	s.log.Info("minutes video", "conference", j.Conference, "state", j.State, "percent", j.Percent)
}

// recordingDir is conference id's recording directory ("" when the server
// does not record).
func (s *Server) recordingDir(id string) string {
	if s.cfg.Recordings.Dir == "" {
		return ""
	}
	return filepath.Join(s.cfg.Recordings.Dir, id)
}

// RenderMinutes queues a render of conference id's minutes video: the
// whole recording, or the range asked for (refused at once when nothing
// was recorded in it: the plan is made here first, as the render will).
func (s *Server) RenderMinutes(id string, rng controlplane.MinutesRange) (controlplane.MinutesJob, error) {
	dir := s.recordingDir(id)
	if dir == "" {
		return controlplane.MinutesJob{}, errNoRecordings
	}
	m, err := record.ReadManifest(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(m.Segments) == 0) {
		return controlplane.MinutesJob{}, controlplane.ErrNothingToRender
	}
	if err != nil {
		return controlplane.MinutesJob{}, err
	}
	spec := s.minutesSpec(id)
	if !rng.Whole() {
		spec.From, spec.To = rng.From, rng.To
		var outside *record.RangeError
		_, err := record.PlanMinutes(m, dir, spec)
		switch {
		case errors.As(err, &outside):
			return controlplane.MinutesJob{}, fmt.Errorf("%w: %s", controlplane.ErrRangeNotRecorded, outside.Error())
		case errors.Is(err, record.ErrNothingRecorded):
			return controlplane.MinutesJob{}, controlplane.ErrNothingToRender
		case err != nil:
			return controlplane.MinutesJob{}, err
		}
	}
	return controlplane.MinutesJob(s.renderer().Render(id, dir, spec)), nil
}

// CancelMinutes stops conference id's render under way.
func (s *Server) CancelMinutes(id string) (controlplane.MinutesJob, error) {
	j, err := s.renderer().Cancel(id)
	if errors.Is(err, record.ErrNoJob) {
		return controlplane.MinutesJob{}, controlplane.ErrNoMinutesJob
	}
	return controlplane.MinutesJob(j), err
}

// RecordingStatus says whether conference id is recorded and how its
// newest render stands.
func (s *Server) RecordingStatus(id string) (controlplane.RecordingStatus, error) {
	st := controlplane.RecordingStatus{Conference: id}
	conf, err := s.liveConference(id)
	if err != nil {
		return st, err
	}
	st.Recording = conf.floorState().Recording
	if j, ok := s.renderer().Job(id); ok {
		mj := controlplane.MinutesJob(j)
		st.Minutes = &mj
	}
	return st, nil
}

// minutesSpec is the caption's matter: the conference's title and its
// bridges' names.
func (s *Server) minutesSpec(id string) record.MinutesSpec {
	spec := record.MinutesSpec{Names: map[string]string{}, Location: time.Local}
	if c, err := s.cfg.Store.Conference(id); err == nil {
		spec.Title = c.Title
	}
	if bs, err := s.cfg.Store.Bridges(); err == nil {
		for _, b := range bs {
			spec.Names[b.ID] = b.Name
		}
	}
	return spec
}

// minutesAfterStop renders the minutes once a person stopped the
// recording.
func (c *conference) minutesAfterStop() {
	if _, err := c.srv.RenderMinutes(c.id, controlplane.MinutesRange{}); err != nil {
		c.log.Warn("minutes video not rendered", "err", err)
	}
}
