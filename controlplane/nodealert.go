package controlplane

import (
	"strconv"
	"time"
)

// Node alerts are about the server itself rather than a bridge: a node of
// a cluster that cannot reach etcd. They are listed and posted to the
// webhook as link alerts are, but not stored as events: the store may be
// the very thing out of reach.

// RaiseNodeAlert raises the server's own alert of kind (AlertEtcd), for
// node, with a detail for people; while it is active, raising it again
// changes nothing.
func (m *Monitor) RaiseNodeAlert(kind, node, detail string, since time.Time) {
	m.mu.Lock()
	if m.node[kind] != nil {
		m.mu.Unlock()
		return
	}
	m.nextID++
	a := &Alert{ID: strconv.Itoa(m.nextID), Node: node, Kind: kind, Detail: detail, Since: since, Raised: m.now()}
	m.node[kind] = a
	hook := m.hookBody("alert.raised", *a)
	m.mu.Unlock()
	m.log.Warn("alert raised", "kind", kind, "node", node, "detail", detail)
	m.post(hook)
}

// ClearNodeAlert clears the server's own alert of kind, if it is active.
func (m *Monitor) ClearNodeAlert(kind string) {
	m.mu.Lock()
	a := m.node[kind]
	if a == nil {
		m.mu.Unlock()
		return
	}
	delete(m.node, kind)
	a.Cleared = m.now()
	m.rememberLocked(*a)
	hook := m.hookBody("alert.cleared", *a)
	m.mu.Unlock()
	m.log.Info("alert cleared", "kind", kind, "node", a.Node, "for", a.Cleared.Sub(a.Since).Round(time.Millisecond).String())
	m.post(hook)
}
