package signaling

import (
	"fmt"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"
)

// TechAction carries out a technician's action on a joined bridge
// (controlplane.MediaControl): the terminal is asked to restart ICE, rejoin
// or reload; the server requests keyframes or sends the bridge away.
func (s *Server) TechAction(conferenceID, bridge, action string) error {
	s.mu.Lock()
	conf := s.conferences[conferenceID]
	s.mu.Unlock()
	if conf == nil {
		return controlplane.ErrNotJoined
	}
	conf.mu.Lock()
	m := conf.members[bridge]
	conf.mu.Unlock()
	if m == nil {
		return controlplane.ErrNotJoined
	}
	ss := m.link.get()
	switch action {
	case controlplane.TechICERestart, controlplane.TechRejoin, controlplane.TechReload:
		if ss == nil {
			return fmt.Errorf("%w: its connection is lost, it is reconnecting", controlplane.ErrNotJoined)
		}
		ss.send(wire.Action{Action: action})
	case controlplane.TechKeyframe:
		m.peer.RequestKeyframes()
	case controlplane.TechKick:
		if ss == nil {
			return fmt.Errorf("%w: its connection is lost, it is reconnecting", controlplane.ErrNotJoined)
		}
		ss.end(wire.ByeKicked)
	default:
		return fmt.Errorf("signaling: unknown action %q", action)
	}
	conf.log.Info("technician action", "bridge", bridge, "action", action)
	return nil
}

// observeEvery is how often every joined bridge's link is measured.
const observeEvery = time.Second

// observe gives the monitor every joined bridge's link, once a second,
// including bridges whose connection is lost and who are within their
// grace period: their silence grows until they are lost.
func (s *Server) observe(now time.Time) {
	for _, c := range s.conferenceList() {
		c.observe(now)
	}
	s.roundMu.Lock()
	close(s.round) // the live feeds send the new figures now
	s.round = make(chan struct{})
	s.roundMu.Unlock()
}

// observedRound returns a channel closed when the next round of samples
// has been given to the monitor.
func (s *Server) observedRound() <-chan struct{} {
	s.roundMu.Lock()
	defer s.roundMu.Unlock()
	return s.round
}

// observe samples the links of the conference's members.
func (c *conference) observe(now time.Time) {
	mon := c.srv.cfg.Monitor
	for _, m := range c.memberList() {
		if m.ss.adm.Bridge.Kind == controlplane.KindViewer {
			continue // viewers are nobody's bridge: not the technicians' concern
		}
		bridge := m.ss.adm.Bridge.ID
		mon.Observe(c.id, bridge, c.sample(m, now))
	}
}

// sample is one second of a member's link: the SFU's figures and the
// terminal's latest report.
func (c *conference) sample(m *member, now time.Time) controlplane.LinkSample {
	ls := m.peer.LinkStats()
	last := ls.LastReceived
	if last.IsZero() || last.Before(m.joined) {
		last = m.joined // nothing yet: silent since it joined
	}
	s := controlplane.LinkSample{
		At:             now,
		Silent:         max(now.Sub(last), 0),
		RTTMs:          float64(ls.RTT) / float64(time.Millisecond),
		LossDown:       ls.LossDown,
		LossUp:         ls.LossUp,
		JitterDownMs:   float64(ls.JitterDown) / float64(time.Millisecond),
		JitterUpMs:     float64(ls.JitterUp) / float64(time.Millisecond),
		EstimateBps:    ls.EstimateBps,
		SentBps:        ls.SentBps,
		RecvBps:        ls.RecvBps,
		Layer:          ls.Layer,
		LayerReason:    ls.LayerReason,
		Paused:         ls.Paused,
		VideoTracks:    ls.VideoTracks,
		NACKs:          ls.NACKs,
		PLIs:           ls.PLIs,
		RetransmittedB: ls.RetransmittedBytes,
		Path:           ls.Path,
	}
	if ss := m.link.get(); ss != nil {
		if r := ss.report.Load(); r != nil {
			s.DecodedFPS, s.Width, s.Height = r.FPS, r.Width, r.Height
			if r.Path != "" {
				s.Path = r.Path // the terminal names relays by their transport
			}
			s.Camera, s.Microphone = r.Camera, r.Microphone
		}
		s.Freezes = int(ss.freezes.Swap(0))
	}
	return s
}

// noteReport keeps a terminal's report for the monitor.
func (ss *session) noteReport(r *wire.Report) {
	ss.freezes.Add(int64(r.Freezes))
	ss.report.Store(r)
}

// checkReport refuses figures no terminal can have measured.
func checkReport(r *wire.Report) error {
	switch {
	case r.FPS < 0 || r.FPS > 1000:
		return fmt.Errorf("fps %v out of range", r.FPS)
	case r.Freezes < 0 || r.Freezes > 100_000:
		return fmt.Errorf("freezes %d out of range", r.Freezes)
	case r.Width < 0 || r.Width > 16384 || r.Height < 0 || r.Height > 16384:
		return fmt.Errorf("resolution %dx%d out of range", r.Width, r.Height)
	}
	return nil
}

// event records a link event of one of the conference's bridges.
func (c *conference) event(bridge, kind, cause, detail string) {
	if mon := c.srv.cfg.Monitor; mon != nil {
		mon.Record(controlplane.Event{Conference: c.id, Bridge: bridge, Kind: kind, Cause: cause, Detail: detail})
	}
}

// forget tells the monitor a bridge left (cause: an attendance end cause).
func (c *conference) forget(bridge, cause string) {
	if mon := c.srv.cfg.Monitor; mon != nil {
		mon.Forget(c.id, bridge, cause)
	}
}

// SelfTest runs the readiness check's media part on bridges of a
// conference for d: each joined bridge receives its own camera back
// through the server, so both directions of its link carry real media
// while the monitor measures them. It returns the bridges that are not
// joined (they cannot be tested).
func (s *Server) SelfTest(conferenceID string, bridges []string, d time.Duration) (absent []string) {
	s.mu.Lock()
	conf := s.conferences[conferenceID]
	s.mu.Unlock()
	if conf == nil {
		return bridges
	}
	until := time.Now().Add(d)
	var testing []*member
	conf.mu.Lock()
	for _, b := range bridges {
		m := conf.members[b]
		if m == nil {
			absent = append(absent, b)
			continue
		}
		conf.selfTest[b] = until
		testing = append(testing, m)
	}
	conf.mu.Unlock()
	conf.reconcileAll(testing)
	time.AfterFunc(d, func() {
		conf.mu.Lock()
		for _, m := range testing {
			if b := m.ss.adm.Bridge.ID; !conf.selfTest[b].After(until) {
				delete(conf.selfTest, b)
			}
		}
		conf.mu.Unlock()
		conf.reconcileAll(testing)
	})
	conf.log.Info("readiness self-test", "bridges", len(testing), "absent", len(absent), "for", d)
	return absent
}

// reconcileAll re-applies the subscription policy to the members that are
// still in the conference.
func (c *conference) reconcileAll(ms []*member) {
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	for _, m := range ms {
		c.mu.Lock()
		still := c.members[m.ss.adm.Bridge.ID] == m
		c.mu.Unlock()
		if still {
			c.reconcileLocked(m)
		}
	}
}
