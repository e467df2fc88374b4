package signaling

import (
	"fmt"

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
