package signaling

import (
	"errors"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// Automatic recording: a conference set to record itself
// (Conference.AutoRecord) starts recording when it goes live, by "auto",
// as if its chair had pressed record at that moment (the same checks:
// a recordings directory, the free-space floor). A refusal is logged and
// audited, and a refusal for space raises the technicians' alert: nobody
// pressed a button to see it.

// autoRecordBy is who starts an automatic recording (the manifest's run,
// the audit log).
const autoRecordBy = "auto"

// autoRecordNew starts the recording of a conference that went live with
// nobody joined yet: its live side is made now.
func (s *Server) autoRecordNew(c controlplane.Conference) {
	if c.State != controlplane.StateLive || !c.AutoRecord {
		return
	}
	conf, err := s.conference(c)
	if err != nil {
		s.log.Error("automatic recording: the conference is not served here", "conference", c.ID, "err", err)
		return
	}
	conf.autoRecord()
}

// autoRecord starts recording, unless it is already.
func (c *conference) autoRecord() {
	c.mu.Lock()
	already := c.recording
	c.mu.Unlock()
	if already {
		return
	}
	result := "ok"
	if err := c.mayRecord(); err != nil {
		result = string(controlplane.RefusedBadState)
		if errors.Is(err, record.ErrLowSpace) {
			result = string(controlplane.RefusedNoSpace)
			c.srv.lowSpace(true, "automatic recording refused: "+err.Error())
		}
		c.log.Error("automatic recording refused", "err", err)
	} else if c.update(func() {
		if !c.recording {
			c.recBy = autoRecordBy
		}
		c.recording = true
	}) {
		c.log.Info("recording started automatically")
	} else {
		return
	}
	if err := c.srv.cfg.Store.Audit(controlplane.AuditEntry{
		Who: autoRecordBy, Action: "control " + string(controlplane.ActionRecord),
		Target: c.id, Result: result, Remote: "server",
	}); err != nil {
		c.log.Error("audit log write failed", "err", err)
	}
}
