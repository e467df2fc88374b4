package signaling

import (
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"
)

// credentialEvery is how often every session's credential is checked
// again (checkCredentials, one read of the store for all): a revoked or
// expired link, or a login logged out, removed or disabled, ends its
// sessions within this long.
const credentialEvery = 500 * time.Millisecond

// checkCredentials ends every member whose credential no longer holds: a
// connected session is sent away with the bye "revoked" (its media close
// at once, no grace period), a WHIP or WHEP resource ends with it, and a
// member waiting in its grace period is dropped.
func (s *Server) checkCredentials() {
	type held struct {
		c *conference
		m *member
	}
	var list []held
	var creds []controlplane.Credential
	for _, c := range s.conferenceList() {
		for _, m := range c.memberList() {
			list = append(list, held{c, m})
			creds = append(creds, m.ss.cred)
		}
	}
	if len(list) == 0 {
		return
	}
	valid, err := s.cfg.Store.StillValid(creds)
	if err != nil {
		s.log.Error("credentials not checked", "err", err)
		return
	}
	for i, h := range list {
		if !valid[i] {
			h.c.revoke(h.m)
		}
	}
}

// revoke ends member m, whose credential was revoked or expired.
func (c *conference) revoke(m *member) {
	c.mu.Lock()
	current := c.members[m.ss.adm.Bridge.ID] == m
	ss := m.link.get()
	c.mu.Unlock()
	if !current {
		return
	}
	if ss == nil { // lost, waiting for a resume that can no longer come
		m.ss.log.Info("credential revoked or expired during the grace period")
		c.expire(m)
		return
	}
	ss.log.Info("credential revoked or expired: session ended")
	ss.end(wire.ByeRevoked)
	if ss.headless != "" {
		c.leave(ss) // no reader of its own to leave when it ends
	}
}
