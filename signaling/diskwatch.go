package signaling

import (
	"fmt"
	"sync"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// Free space during a recording. The floor (--recordings-min-free) refuses
// a start (mayRecord); while anything is recorded the free space is
// checked every SpaceCheckEvery: below twice the floor the technicians
// are alerted (RecordingConfig.LowSpace: the monitor's node alert, on
// their dashboard), below the floor every recording stops cleanly, as
// the chair's stop would (open segments closed and checksummed, the
// indicator off on every page), audited as stopped by the system. A
// write that fails for a full disk stops the recording the same way
// (record.Options.OnNoSpace). Nothing else in the meeting changes.

// DefaultSpaceCheckEvery is how often free space is checked.
const DefaultSpaceCheckEvery = 2 * time.Second

// Why the system stopped a recording (the audit log's result).
const (
	stoppedLowSpace = "low_space" // free space fell below the floor
	stoppedDiskFull = "disk_full" // a write failed: no space left
)

// spaceWatch remembers whether the low-space alert is raised.
type spaceWatch struct {
	mu  sync.Mutex
	low bool
}

// checkSpace is the watcher's tick.
func (s *Server) checkSpace(time.Time) {
	rc := s.cfg.Recordings
	var recorded []*conference
	for _, c := range s.conferenceList() {
		c.mu.Lock()
		if c.recording {
			recorded = append(recorded, c)
		}
		c.mu.Unlock()
	}
	s.space.mu.Lock()
	raised := s.space.low
	s.space.mu.Unlock()
	if len(recorded) == 0 && !raised {
		return
	}
	free, err := record.FreeBytes(rc.Dir)
	if err != nil {
		s.log.Warn("recordings: free space unknown", "dir", rc.Dir, "err", err)
		return
	}
	switch {
	case free < 2*rc.MinFree && len(recorded) > 0:
		s.lowSpace(true, fmt.Sprintf("%s free in %s; recording stops below %s (--recordings-min-free)",
			bytesText(free), rc.Dir, bytesText(rc.MinFree)))
	case free >= 2*rc.MinFree:
		s.lowSpace(false, "")
	}
	if free < rc.MinFree {
		for _, c := range recorded {
			c.stopRecordingBySystem(stoppedLowSpace, fmt.Sprintf("%s free, below %s", bytesText(free), bytesText(rc.MinFree)))
		}
	}
}

// lowSpace raises or clears the technicians' alert, once per change.
func (s *Server) lowSpace(low bool, detail string) {
	s.space.mu.Lock()
	changed := s.space.low != low
	s.space.low = low
	s.space.mu.Unlock()
	if !changed {
		return
	}
	if low {
		s.log.Warn("recordings: free space low", "dir", s.cfg.Recordings.Dir, "detail", detail)
	} else {
		s.log.Info("recordings: free space back above twice the floor", "dir", s.cfg.Recordings.Dir)
	}
	if f := s.cfg.Recordings.LowSpace; f != nil {
		f(low, detail)
	}
}

// stopRecordingBySystem stops the conference's recording as the chair's
// stop_record would, the manifest and the audit log saying the system
// did, and why.
func (c *conference) stopRecordingBySystem(why, detail string) {
	if why == stoppedDiskFull {
		c.srv.lowSpace(true, "a recording write failed: "+detail)
	}
	if !c.update(func() {
		if c.recording {
			c.recording, c.recStopBy = false, "system"
		}
	}) {
		return
	}
	c.log.Warn("recording stopped by the system", "why", why, "detail", detail)
	if err := c.srv.cfg.Store.Audit(controlplane.AuditEntry{
		Who: "system", Action: "control " + string(controlplane.ActionStopRecord),
		Target: c.id, Result: why, Remote: "server",
	}); err != nil {
		c.log.Error("audit log write failed", "err", err)
	}
}

// bytesText is a size for people: MB below a gigabyte, else GB.
func bytesText(n uint64) string {
	if n < 1e9 {
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}
