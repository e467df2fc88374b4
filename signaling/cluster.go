package signaling

import (
	"fmt"

	"citybridge/signaling/wire"
)

// Cluster is this node's part in a cluster of nodes sharing the store
// (nil on one machine: it serves every conference). Exactly one node
// serves a conference at a time; a join that reaches another node is sent
// to it (docs/CLUSTER.md).
type Cluster interface {
	// Claim says whether this node serves the conference, taking it when
	// it is free and placed here; otherwise it names the node that does
	// (its https://HOST:PORT). An error means the cluster cannot be asked
	// (etcd unreachable): the join is refused for now.
	Claim(conference string) (serve bool, redirect string, err error)
	// Nodes are the live nodes' addresses, for the pages to try when
	// theirs stops answering.
	Nodes() []string
	// Available is nil while this node reaches the cluster's store, else
	// why not (since when). Joins are refused at once meanwhile, the
	// running meetings go on.
	Available() error
}

// unavailable says why this node cannot admit anyone just now (nil: it
// can), counting the refusal.
func (s *Server) unavailable() error {
	if s.cfg.Cluster == nil {
		return nil
	}
	err := s.cfg.Cluster.Available()
	if err != nil {
		s.clusterRefused.Add(1)
	}
	return err
}

// ClusterRefused counts the joins, WHIP and WHEP requests refused because
// this node could not reach the cluster's store.
func (s *Server) ClusterRefused() uint64 { return s.clusterRefused.Load() }

// clusterUnavailableMessage is what a refused terminal is told.
const clusterUnavailableMessage = "this node cannot reach the cluster just now; try another node"

// nodes is what a joined page is told of the cluster's nodes.
func (s *Server) nodes() []string {
	if s.cfg.Cluster == nil {
		return nil
	}
	return s.cfg.Cluster.Nodes()
}

// SetNodes tells every joined session the cluster's live nodes (they
// changed).
func (s *Server) SetNodes(nodes []string) {
	for _, c := range s.conferenceList() {
		for _, ss := range c.sessionList() {
			ss.send(wire.Nodes{Nodes: nodes})
		}
	}
}

// claim asks the cluster whether this node serves the conference: ok to
// go on; else the address to send the client to, or an error.
func (s *Server) claim(conference string) (ok bool, redirect string, err error) {
	if s.cfg.Cluster == nil {
		return true, "", nil
	}
	return s.cfg.Cluster.Claim(conference)
}

// Release ends this node's part in conferences it no longer serves (its
// lease was lost): every session is sent away with the bye "moved" (its
// media close at once; the terminal joins again and is sent to the new
// owner), and the conference's live state is dropped, to be built again
// from the store if it comes back. Nothing is written: the store may be
// out of reach, and the node taking a conference closes what this one
// left open.
func (s *Server) Release(conferences []string) {
	for _, id := range conferences {
		s.sendAway(id, "")
	}
}

// HandOver gives a conference this node serves to the node at to (a
// drain, a graceful stop): the bridges' attendance intervals end now, as
// moved; release gives the ownership up; then every session is told to
// join at to and sent away. A terminal is back within a reconnection,
// with no node's lease to wait for.
func (s *Server) HandOver(conference, to string, release func() error) error {
	if _, err := s.cfg.Store.HandOver(conference); err != nil {
		return fmt.Errorf("hand over %s: attendance: %w", conference, err)
	}
	if err := release(); err != nil {
		return fmt.Errorf("hand over %s: %w", conference, err)
	}
	s.sendAway(conference, to)
	return nil
}

// sendAway drops a conference's live state here and sends its sessions
// away with the bye "moved" (after a redirect to to, if given).
func (s *Server) sendAway(id, to string) {
	s.mu.Lock()
	conf := s.conferences[id]
	delete(s.conferences, id)
	s.mu.Unlock()
	if conf == nil {
		return
	}
	conf.log.Warn("no longer served by this node: sessions sent away", "to", to)
	for _, ss := range conf.sessionList() {
		if to != "" {
			ss.send(wire.Redirect{URL: to})
		}
		ss.end(wire.ByeMoved)
	}
	// The media stop now, before anything else (a lost lease often means
	// the store is out of reach, and nothing here waits for it).
	conf.closeRecording()
	conf.router.Close()
	for _, ss := range conf.sessionList() {
		if ss.headless != "" {
			conf.leave(ss)
		}
	}
	conf.closeLost("")
}
