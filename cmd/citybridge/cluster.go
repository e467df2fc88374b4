package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling"
)

// The node's part in a cluster (docs/CLUSTER.md): with --etcd the store
// lives in etcd, the node registers under --node with the address
// terminals are sent to (--advertise), and serves the conferences it
// owns; a join for another is redirected to its owner.

var nodeName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// checkCluster checks the cluster flags (after parsing).
func (c *Config) checkCluster() error {
	if c.Etcd.endpoints == "" {
		if c.Advertise != "" {
			return fmt.Errorf("--advertise needs --etcd")
		}
		return nil
	}
	if _, err := c.Etcd.options(); err != nil {
		return err
	}
	if c.Node == "" {
		h, _ := os.Hostname()
		c.Node = h
	}
	if !nodeName.MatchString(c.Node) {
		return fmt.Errorf("--node %q: 1-63 of a-z, 0-9, dot and dash", c.Node)
	}
	u, err := url.Parse(c.Advertise)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("--advertise %q: want https://HOST:PORT, the address terminals reach this node at", c.Advertise)
	}
	// A browser leaves the default port out of an origin: so does the
	// address pages are sent to and compared with.
	host := u.Host
	if h, port, err := net.SplitHostPort(host); err == nil && port == "443" {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	c.Advertise = "https://" + host
	if c.LeaseTTL < 2*time.Second || c.LeaseTTL%time.Second != 0 {
		return fmt.Errorf("--lease-ttl %v: whole seconds, at least 2s", c.LeaseTTL)
	}
	return nil
}

// nodeCluster is signaling's view of the node: which conferences it
// serves, taking a free one when placement gives it here, and the live
// nodes' addresses.
type nodeCluster struct {
	n       *controlplane.Node
	store   *controlplane.Store
	process string // this process, as the store's records of who served what name it
	nodes   func() []string
	log     interface{ Info(string, ...any) }

	ttl time.Duration

	mu     sync.Mutex
	taken  map[string]int64         // conference → the fence it was taken over at
	probes map[string]probe         // node address → whether it refused a connection lately
	gone   map[string]chan struct{} // node → closed when its lease has ended (or the wait has)
}

func (c *nodeCluster) Nodes() []string { return c.nodes() }

func (c *nodeCluster) Available() error { return c.n.Available() }

func (c *nodeCluster) Claim(conference string) (bool, string, error) {
	if c.n.Serves(conference) {
		return true, "", c.takeOver(conference)
	}
	place, err := c.n.Place(conference)
	if err != nil {
		return false, "", err
	}
	if place.Name != c.n.Info().Name && c.dead(place) {
		// Its process is gone but its lease holds on (up to the TTL):
		// rather than send the terminal round the nodes meanwhile, hold
		// the join until the lease is gone, then place the conference
		// again. Nothing is taken before the lease ends.
		if c.waitGone(place.Name) {
			if place, err = c.n.Place(conference); err != nil {
				return false, "", err
			}
		}
	}
	if place.Name != c.n.Info().Name {
		return false, place.Advertise, nil
	}
	owner, mine, err := c.n.Acquire(conference)
	if err != nil {
		return false, "", err
	}
	if !mine {
		return false, owner.Advertise, nil
	}
	return true, "", c.takeOver(conference)
}

// dead says whether the node's process is surely gone: its address
// refuses connections (a stopped process), asked at most once a second
// per node.
func (c *nodeCluster) dead(ni controlplane.NodeInfo) bool {
	u, err := url.Parse(ni.Advertise)
	if err != nil {
		return false
	}
	c.mu.Lock()
	if p, ok := c.probes[u.Host]; ok && time.Since(p.at) < time.Second {
		c.mu.Unlock()
		return p.dead
	}
	c.mu.Unlock()
	conn, err := net.DialTimeout("tcp", u.Host, 300*time.Millisecond)
	dead := err != nil && errors.Is(err, syscall.ECONNREFUSED)
	if conn != nil {
		conn.Close()
	}
	c.mu.Lock()
	c.probes[u.Host] = probe{at: time.Now(), dead: dead}
	c.mu.Unlock()
	return dead
}

type probe struct {
	at   time.Time
	dead bool
}

// waitGone waits until the node's lease has ended (its entry is gone), at
// most a lease's TTL and a second; the joins waiting for one node share
// one watch. It says whether the node is gone.
func (c *nodeCluster) waitGone(name string) bool {
	c.mu.Lock()
	w, ok := c.gone[name]
	if !ok {
		w = make(chan struct{})
		c.gone[name] = w
		go func() {
			deadline := time.Now().Add(c.ttl + time.Second)
			for time.Now().Before(deadline) {
				if live, err := c.n.Live(name); err == nil && !live {
					break
				}
				time.Sleep(100 * time.Millisecond) // a watch on one key, for a few seconds
			}
			c.mu.Lock()
			delete(c.gone, name)
			c.mu.Unlock()
			close(w)
		}()
	}
	c.mu.Unlock()
	<-w
	live, err := c.n.Live(name)
	return err == nil && !live
}

// takeOver records, once per ownership, that this process serves the
// conference, closing what a killed owner left open (controlplane
// TakeOver) before anyone is admitted.
func (c *nodeCluster) takeOver(conference string) error {
	fence := c.n.Fence(conference)
	c.mu.Lock()
	defer c.mu.Unlock()
	if fence != 0 && c.taken[conference] == fence {
		return nil
	}
	closed, err := c.store.TakeOver(conference, c.process)
	if err != nil {
		return err
	}
	if closed > 0 {
		c.log.Info("cluster: took over from a node that stopped without handing over; its bridges' intervals end at its last heartbeat",
			"conference", conference, "intervals", closed)
	}
	c.taken[conference] = fence
	return nil
}

// joinCluster opens the store in etcd and registers the node; what it
// loses goes to the signaling server once there is one.
func (s *server) joinCluster() error {
	o, err := s.cfg.Etcd.options()
	if err != nil {
		return err
	}
	if s.store, err = controlplane.OpenEtcd(o); err != nil {
		return err
	}
	s.node, err = s.store.JoinCluster(controlplane.NodeInfo{
		Name: s.cfg.Node, Advertise: s.cfg.Advertise, Version: version,
	}, s.cfg.LeaseTTL, s.log, func(lost []string) {
		if sig := s.sigReady.Load(); sig != nil {
			sig.Release(lost)
		}
	})
	if err != nil {
		return err
	}
	s.process = fmt.Sprintf("%s@%d", s.cfg.Node, time.Now().UnixNano())
	if err := s.store.HeartbeatProcess(s.process); err != nil {
		return err
	}
	s.log.Info("joined the cluster", "node", s.cfg.Node, "advertise", s.cfg.Advertise, "etcd", s.store.Path())
	return nil
}

// watchEtcd raises the technicians' alert while etcd does not answer
// this node, and clears it when it does again (the node logs both).
func (s *server) watchEtcd() {
	tell := func(st controlplane.EtcdState) {
		if st.Reachable {
			s.mon.ClearNodeAlert(controlplane.AlertEtcd)
			return
		}
		s.mon.RaiseNodeAlert(controlplane.AlertEtcd, s.cfg.Node,
			fmt.Sprintf("etcd unreachable: new joins refused; meetings here end at %s unless etcd answers by then (%s)",
				st.LeaseUntil.UTC().Format(time.RFC3339), st.Err), st.Since)
	}
	s.node.OnEtcdChange(tell)
	tell(s.node.Etcd()) // what happened before the monitor was there
}

// etcdHealth is the node's part of /healthz and /readyz: degraded while
// etcd does not answer or its lease may have ended.
func (s *server) etcdHealth(body map[string]any) (degraded bool) {
	if s.node == nil {
		return false
	}
	st := s.node.Etcd()
	body["node"] = s.cfg.Node
	body["lease_held"] = st.LeaseHeld
	if st.Reachable {
		body["etcd"] = "reachable"
	} else {
		body["etcd"] = "unreachable since " + st.Since.UTC().Format(time.RFC3339Nano)
		body["etcd_error"] = st.Err
		body["lease_until"] = st.LeaseUntil.UTC().Format(time.RFC3339Nano)
	}
	return !st.Reachable || !st.LeaseHeld
}

// clusterFigures are the node's metrics.
func (s *server) clusterFigures() controlplane.ClusterFigures {
	st := s.node.Etcd()
	return controlplane.ClusterFigures{EtcdUp: st.Reachable, LeaseHeld: st.LeaseHeld, JoinsRefused: s.sig.ClusterRefused()}
}

// seedOnce seeds the demo into an empty store once in the whole cluster:
// the first node to hold the seed's key does it, the others wait for it.
func (s *server) seedOnce(seed func() error) error {
	if s.node == nil {
		return seed()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, mine, err := s.node.Acquire("_seed")
		if err == nil && mine {
			defer func() { _ = s.node.Release("_seed") }()
			return seed()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("another node held the seed for 30 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reportLoad tells the cluster how many participants this node serves,
// for placement (every few seconds).
func (s *server) reportLoad() {
	if err := s.node.SetLoad(s.load()); err != nil {
		s.log.Warn("cluster: load not reported", "err", err)
	}
}

// load is how many participants this server serves now.
func (s *server) load() int {
	n := 0
	for _, c := range s.sig.Sessions() {
		n += c
	}
	return n
}

// refreshNodes keeps the live nodes' origins for the origin check: a
// page of one node sends its terminal to another's WebSocket.
func (s *server) refreshNodes() {
	nodes, err := s.node.Nodes()
	if err != nil {
		return
	}
	// The origin check lets in the pages of every node that ever was
	// one: a page served by a node that died must reach the others.
	origins := map[string]bool{}
	if members, err := s.node.Members(); err == nil {
		for _, a := range members {
			origins[strings.ToLower(a)] = true
		}
	} else if old := s.nodeOrigins.Load(); old != nil {
		origins = maps.Clone(*old)
	}
	for _, n := range nodes {
		origins[strings.ToLower(n.Advertise)] = true
	}
	s.nodeOrigins.Store(&origins)
	before := s.liveNodes()
	s.nodeInfos.Store(&nodes)
	// Pages and terminals learn a node come or gone at once: the list is
	// where they go when theirs stops answering.
	if sig := s.sigReady.Load(); sig != nil && !slices.Equal(before, s.liveNodes()) {
		sig.SetNodes(s.liveNodes())
	}
}

// connectSources are the other sources a page may connect to: in a
// cluster, any node's WebSocket (wss:), also of nodes that join after the
// page loaded, since a terminal's page is never reloaded; on one machine
// nothing else.
func (s *server) connectSources() string {
	if s.node != nil {
		return " wss:"
	}
	return ""
}

// liveNodeInfos are the live nodes, as last read.
func (s *server) liveNodeInfos() []controlplane.NodeInfo {
	if l := s.nodeInfos.Load(); l != nil {
		return *l
	}
	return nil
}

// liveNodes are the live nodes' addresses, as last read.
func (s *server) liveNodes() []string {
	var out []string
	for _, n := range s.liveNodeInfos() {
		out = append(out, n.Advertise)
	}
	return out
}

// nodeOrigin says whether origin is a live node of the cluster.
func (s *server) nodeOrigin(origin string) bool {
	m := s.nodeOrigins.Load()
	return m != nil && (*m)[origin]
}

// sigPointer lets the node's lease loss reach the signaling server made
// after it.
type sigPointer = atomic.Pointer[signaling.Server]

// checkDrain follows `citybridge drain`: asked, the node stops taking
// conferences and hands over the ones it has; asked no more, it takes
// conferences again.
func (s *server) checkDrain() {
	want, err := s.node.DrainRequested()
	if err != nil {
		return // etcd out of reach: nothing to hand over to either
	}
	if want == s.node.Info().Draining && (!want || len(s.node.Owned()) == 0) {
		return
	}
	if !want {
		if err := s.node.SetDraining(false); err == nil {
			s.log.Info("cluster: drain undone; taking conferences again")
		}
		return
	}
	s.handOverAll("drain")
}

// handOverAll hands every conference this node serves to the least-loaded
// other node (none: they stay, and a stop sends their terminals away to
// find one).
func (s *server) handOverAll(why string) {
	if err := s.node.SetDraining(true); err != nil {
		s.log.Warn("cluster: could not say the node is draining", "err", err)
	}
	for _, conf := range s.node.Owned() {
		to, ok, err := s.node.PlaceElsewhere()
		if err != nil || !ok {
			s.log.Warn("cluster: no other node to hand the conference to", "conference", conf, "why", why, "err", err)
			continue
		}
		start := time.Now()
		err = s.sig.HandOver(conf, to.Advertise, func() error { return s.node.Release(conf) })
		if err != nil {
			s.log.Error("cluster: hand-over failed", "conference", conf, "to", to.Name, "err", err)
			continue
		}
		s.log.Info("cluster: handed over", "conference", conf, "to", to.Name, "why", why, "took", time.Since(start).Round(time.Millisecond))
	}
}

// recentTokens remembers the technician tokens that were checked lately
// (their hashes), so that Prometheus can go on reading a node's metrics
// while the node cannot reach etcd to check its token: the metrics are
// what say it cannot. A token revoked meanwhile reads them for at most
// tokenGrace more, and only while etcd is out of reach.
type recentTokens struct {
	mu   sync.Mutex
	seen map[[32]byte]time.Time
}

const (
	tokenGrace     = 15 * time.Minute
	tokensRemember = 64 // Prometheus servers and technicians: a handful
)

func (r *recentTokens) saw(tok string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[[32]byte]time.Time{}
	}
	now := time.Now()
	for k, at := range r.seen {
		if now.Sub(at) > tokenGrace || len(r.seen) >= tokensRemember {
			delete(r.seen, k)
		}
	}
	r.seen[sha256.Sum256([]byte(tok))] = now
}

func (r *recentTokens) recent(tok string) bool {
	if tok == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.seen[sha256.Sum256([]byte(tok))]
	return ok && time.Since(at) <= tokenGrace
}
