package signaling

import (
	"fmt"
	"time"

	"citybridge/controlplane"
)

// Retention (--recordings-keep): once at start and then every
// RecordingConfig.SweepEvery (a day), the recordings of every conference
// whose last segment ended longer than Keep ago are deleted whole, each
// deletion audited by "system". A conference being recorded (or about to
// resume) is never touched: DeleteRecordings refuses it. Keep 0 keeps
// everything.

// DefaultSweepEvery is how often the retention sweep runs.
const DefaultSweepEvery = 24 * time.Hour

// startRetention runs the sweep now (in the background: the server serves
// meanwhile) and then every SweepEvery, until the server closes.
func (s *Server) startRetention() {
	rc := s.cfg.Recordings
	if rc.Dir == "" || rc.Keep <= 0 {
		return
	}
	every := rc.SweepEvery
	if every <= 0 {
		every = DefaultSweepEvery
	}
	s.observing.Add(1)
	go func() {
		defer s.observing.Done()
		s.SweepRecordings()
	}()
	s.every(every, func(time.Time) { s.SweepRecordings() })
}

// SweepRecordings deletes the recordings older than --recordings-keep
// now (by RecordingConfig.Now) and returns the conferences whose
// recordings went.
func (s *Server) SweepRecordings() []string {
	rc := s.cfg.Recordings
	now := time.Now
	if rc.Now != nil {
		now = rc.Now
	}
	expired, err := s.archive().Expired(rc.Keep, now())
	if err != nil {
		s.log.Error("recordings retention: the directory is unreadable", "dir", rc.Dir, "err", err)
		return nil
	}
	var removed []string
	for _, id := range expired {
		files, bytes, err := s.DeleteRecordings(id)
		if err != nil {
			s.log.Info("recordings retention: kept", "conference", id, "why", err.Error())
			continue
		}
		removed = append(removed, id)
		s.log.Info("recordings retention: deleted", "conference", id, "files", files, "bytes", bytes, "keep", rc.Keep.String())
		if err := s.cfg.Store.Audit(controlplane.AuditEntry{
			Who: "system", Action: "delete recordings (--recordings-keep)", Target: id,
			Result: fmt.Sprintf("ok: %d files, %d bytes, older than %s", files, bytes, rc.Keep), Remote: "server",
		}); err != nil {
			s.log.Error("audit log write failed", "conference", id, "err", err)
		}
	}
	return removed
}
