package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A cluster's nodes share the store through etcd. Each registers itself
// under a lease it renews (Node), and a conference is served by exactly
// one node at a time: the one holding the conference's ownership key,
// created under that node's lease. A key made under a lease goes when the
// lease does, so a dead node's conferences are free again within the
// lease's TTL, and its fencing revision (the key's creation) tells any
// later owner's writes from its. Nothing per media packet goes through
// etcd: a node asks once per conference, and renews its lease once a third
// of the TTL.
//
// Keys, under the store's prefix: nodes/NAME (the node's NodeInfo, under
// its lease) and owners/CONFERENCE (the owner's NodeInfo, under its lease).

// NodeInfo is what a node says of itself.
type NodeInfo struct {
	Name      string    `json:"name"`
	Advertise string    `json:"advertise"` // https://ADDR:PORT terminals are sent to
	Version   string    `json:"version,omitempty"`
	Capacity  int       `json:"capacity,omitempty"` // bridges it is sized for
	Load      int       `json:"load"`               // bridges it serves now
	Started   time.Time `json:"started"`
	// Draining: it hands its conferences over and takes no new one
	// (citybridge drain, or stopping).
	Draining bool `json:"draining,omitempty"`
}

// Ownership errors.
var (
	// ErrNotOwner: another node serves the conference (Owner says which).
	ErrNotOwner = errors.New("controlplane: another node serves this conference")
	// ErrLeaseLost: this node's lease has expired or cannot be renewed; it
	// serves nothing until it has a new one.
	ErrLeaseLost = errors.New("controlplane: this node lost its lease")
	// ErrNoCluster: the store is not in etcd.
	ErrNoCluster = errors.New("controlplane: the store is not in an etcd cluster")
)

// Node is this server's membership of the cluster.
type Node struct {
	kv   *etcdKV
	info NodeInfo
	ttl  time.Duration
	log  *slog.Logger

	mu       sync.Mutex
	lease    clientv3.LeaseID
	deadline time.Time        // until when the lease surely holds (local clock)
	owned    map[string]int64 // conference → fencing revision
	onLost   func(conferences []string)
	etcd     etcdLink // what the node knows of its link to etcd (nodehealth.go)

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// DefaultLeaseTTL is a node's lease: how long its conferences stay its own
// after it stops answering.
const DefaultLeaseTTL = 5 * time.Second

// JoinCluster registers this node in the cluster the store lives in, and
// keeps its lease until Leave. onLost is told of the conferences it stops
// serving when its lease is lost (etcd unreachable for the TTL, the
// process paused past it): their sessions must end at once.
func (s *Store) JoinCluster(info NodeInfo, ttl time.Duration, log *slog.Logger, onLost func([]string)) (*Node, error) {
	e, ok := s.db.(*etcdKV)
	if !ok {
		return nil, ErrNoCluster
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if log == nil {
		log = slog.Default()
	}
	if info.Started.IsZero() {
		info.Started = time.Now().UTC()
	}
	n := &Node{kv: e, info: info, ttl: ttl, log: log.With("node", info.Name), owned: map[string]int64{},
		onLost: onLost, stop: make(chan struct{}), done: make(chan struct{})}
	if err := n.renewLease(); err != nil {
		return nil, err
	}
	go n.keepAlive()
	return n, nil
}

// Info is what this node says of itself.
func (n *Node) Info() NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.info
}

func (n *Node) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.kv.requestTimeout())
}

// renewLease grants a new lease and registers the node under it (after a
// loss, or at the start).
func (n *Node) renewLease() error {
	ctx, cancel := n.ctx()
	sent := time.Now()
	g, err := n.kv.cli.Grant(ctx, int64(n.ttl/time.Second))
	cancel()
	if err != nil {
		n.etcdFailed(err)
		return fmt.Errorf("etcd: lease: %w", err)
	}
	n.mu.Lock()
	info := n.info
	n.mu.Unlock()
	v, _ := json.Marshal(info)
	ctx, cancel = n.ctx()
	defer cancel()
	if _, err := n.kv.cli.Put(ctx, n.kv.prefix+"nodes/"+info.Name, string(v), clientv3.WithLease(g.ID)); err != nil {
		n.etcdFailed(err)
		return fmt.Errorf("etcd: register node: %w", err)
	}
	// And for good (no lease): the pages a node served keep its origin
	// after it dies, and every other node must still let them in.
	if _, err := n.kv.cli.Put(ctx, n.kv.prefix+"members/"+info.Name, info.Advertise); err != nil {
		n.etcdFailed(err)
		return fmt.Errorf("etcd: register node: %w", err)
	}
	n.etcdAnswered()
	n.mu.Lock()
	n.lease, n.deadline = g.ID, sent.Add(time.Duration(g.TTL)*time.Second)
	n.mu.Unlock()
	return nil
}

// keepAlive renews the lease a third of the TTL at a time. The lease
// surely holds until the TTL after a renewal was sent (the cluster counts
// from when it received it, later); past that, with no renewal answered,
// the node serves nothing.
func (n *Node) keepAlive() {
	defer close(n.done)
	tick := time.NewTicker(n.ttl / 3)
	defer tick.Stop()
	// The deadline is watched on its own, with no network: a node paused
	// past it (SIGSTOP, a frozen VM) gives its conferences up the moment
	// it runs again, before any request to etcd could answer.
	expiry := time.NewTimer(n.ttl)
	defer expiry.Stop()
	for {
		n.mu.Lock()
		left := time.Until(n.deadline)
		n.mu.Unlock()
		expiry.Reset(max(left, time.Millisecond))
		select {
		case <-n.stop:
			return
		case <-expiry.C:
			n.checkLease(time.Now())
			continue
		case <-tick.C:
		}
		n.mu.Lock()
		lease, lost := n.lease, n.lease == 0
		n.mu.Unlock()
		if lost {
			if err := n.renewLease(); err != nil {
				n.logRenewal("cluster: no lease yet", err)
			} else {
				n.log.Info("cluster: new lease")
			}
			continue
		}
		// A renewal waits at most half the TTL, long enough to ride out
		// a leader election (one to two seconds), and never past the
		// lease's deadline: the loop must be free to give the
		// conferences up on time. Unanswered by then, etcd is out of
		// reach.
		n.mu.Lock()
		wait := min(n.ttl/2, time.Until(n.deadline))
		n.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), max(wait, time.Millisecond))
		sent := time.Now()
		resp, err := n.kv.cli.KeepAliveOnce(ctx, lease)
		cancel()
		if unreachable(err) {
			n.etcdFailed(err)
		} else {
			n.etcdAnswered() // renewed, or told the lease is gone
		}
		switch {
		case err == nil && resp.TTL > 0:
			n.mu.Lock()
			if n.lease == lease {
				n.deadline = sent.Add(time.Duration(resp.TTL) * time.Second)
			}
			n.mu.Unlock()
		default:
			n.logRenewal("cluster: lease not renewed", err)
			n.checkLease(time.Now())
		}
	}
}

// logRenewal logs a failed renewal: a warning when etcd answered (it
// refused), a debug line when it did not (etcdFailed said that once).
func (n *Node) logRenewal(msg string, err error) {
	if unreachable(err) {
		n.log.Debug(msg, "err", err)
		return
	}
	n.log.Warn(msg, "err", err)
}

// stopRenewing ends the renewal loop (Leave; tests pause a node with it).
func (n *Node) stopRenewing() {
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.done
}

// checkLease gives up everything once the lease may have expired.
func (n *Node) checkLease(now time.Time) bool {
	n.mu.Lock()
	if n.lease != 0 && now.Before(n.deadline) {
		n.mu.Unlock()
		return true
	}
	var lost []string
	until := n.deadline
	if n.lease != 0 {
		for c := range n.owned {
			lost = append(lost, c)
		}
		clear(n.owned)
		n.lease = 0
	}
	onLost := n.onLost
	n.mu.Unlock()
	if len(lost) > 0 {
		slices.Sort(lost)
		// until: no Serves answered true past the lease's local deadline,
		// whenever the loss was noticed (the ownership test reads it).
		n.log.Error("cluster: lease lost; stopped serving", "conferences", lost, "until", until)
		if onLost != nil {
			onLost(lost)
		}
	}
	return false
}

// Serves says whether this node serves the conference now: it holds the
// conference's key and its lease surely holds.
func (n *Node) Serves(conference string) bool {
	if !n.checkLease(time.Now()) {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.owned[conference]
	return ok
}

// Owned returns the conferences this node serves now.
func (n *Node) Owned() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.owned))
	for c := range n.owned {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Drain requests: `citybridge drain` writes drain/NAME (no lease: it
// holds until undone, across the node's restarts), the node reads it.

// RequestDrain asks the named node to hand its conferences over and take
// no new one (or, with drain false, to take conferences again).
func (s *Store) RequestDrain(node string, drain bool) error {
	e, ok := s.db.(*etcdKV)
	if !ok {
		return ErrNoCluster
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	var err error
	if drain {
		_, err = e.cli.Put(ctx, e.prefix+"drain/"+node, time.Now().UTC().Format(time.RFC3339))
	} else {
		_, err = e.cli.Delete(ctx, e.prefix+"drain/"+node)
	}
	return err
}

// DrainRequested says whether this node has been asked to drain.
func (n *Node) DrainRequested() (bool, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.kv.cli.Get(ctx, n.kv.prefix+"drain/"+n.info.Name, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("etcd: %w", err)
	}
	return resp.Count > 0, nil
}

// OwnedBy returns the conferences the named node owns.
func (s *Store) OwnedBy(node string) ([]string, error) {
	e, ok := s.db.(*etcdKV)
	if !ok {
		return nil, ErrNoCluster
	}
	byNode, err := owners(e)
	if err != nil {
		return nil, err
	}
	return byNode[node], nil
}

// Fence returns the fencing revision of the conference as this node holds
// it (0 if it does not): each owner's is higher than the one before.
func (n *Node) Fence(conference string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.owned[conference]
}

// Acquire makes this node the conference's owner if nobody is, and says
// who the owner is now (this node, or the one that was). It answers
// ErrLeaseLost while the node has no lease.
func (n *Node) Acquire(conference string) (NodeInfo, bool, error) {
	if !n.checkLease(time.Now()) {
		return NodeInfo{}, false, ErrLeaseLost
	}
	n.mu.Lock()
	lease, info := n.lease, n.info
	_, mine := n.owned[conference]
	n.mu.Unlock()
	if mine {
		return info, true, nil
	}
	key := n.kv.prefix + "owners/" + conference
	v, _ := json.Marshal(info)
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.kv.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(v), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	n.etcdFailed(err)
	if err != nil {
		return NodeInfo{}, false, fmt.Errorf("etcd: %w", err)
	}
	if resp.Succeeded {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.lease != lease { // lost meanwhile: the key goes with the old lease
			return NodeInfo{}, false, ErrLeaseLost
		}
		since := time.Now()               // taken before it serves: the ownership test reads it
		_, already := n.owned[conference] // another Acquire of this node saw the key first
		n.owned[conference] = resp.Header.Revision
		if !already {
			n.log.Info("cluster: serving", "conference", conference, "fence", resp.Header.Revision, "since", since)
		}
		return info, true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 { // released between the two: try again
		return n.Acquire(conference)
	}
	var owner NodeInfo
	if err := json.Unmarshal(kvs[0].Value, &owner); err != nil {
		return NodeInfo{}, false, err
	}
	if owner.Name == info.Name && kvs[0].Lease == int64(lease) {
		// Its own key under its own lease: another Acquire of this node
		// won the race a moment ago.
		n.mu.Lock()
		since := time.Now()
		_, already := n.owned[conference]
		n.owned[conference] = kvs[0].CreateRevision
		n.mu.Unlock()
		if !already {
			n.log.Info("cluster: serving", "conference", conference, "fence", kvs[0].CreateRevision, "since", since)
		}
		return info, true, nil
	}
	return owner, false, nil
}

// Owner returns the conference's owner, if any.
func (n *Node) Owner(conference string) (NodeInfo, bool, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.kv.cli.Get(ctx, n.kv.prefix+"owners/"+conference)
	n.etcdFailed(err)
	if err != nil || len(resp.Kvs) == 0 {
		return NodeInfo{}, false, err
	}
	var owner NodeInfo
	err = json.Unmarshal(resp.Kvs[0].Value, &owner)
	return owner, err == nil, err
}

// Nodes returns the live nodes, by name.
func (n *Node) Nodes() ([]NodeInfo, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.kv.cli.Get(ctx, n.kv.prefix+"nodes/", clientv3.WithPrefix())
	n.etcdFailed(err)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	var out []NodeInfo
	for _, kv := range resp.Kvs {
		var ni NodeInfo
		if json.Unmarshal(kv.Value, &ni) == nil {
			out = append(out, ni)
		}
	}
	return out, nil
}

// Live says whether the named node holds its lease (its entry is there).
func (n *Node) Live(name string) (bool, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.kv.cli.Get(ctx, n.kv.prefix+"nodes/"+name, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("etcd: %w", err)
	}
	return resp.Count > 0, nil
}

// Members returns the address of every node that ever joined the
// cluster, live or not, by name.
func (n *Node) Members() (map[string]string, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	p := n.kv.prefix + "members/"
	resp, err := n.kv.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key[len(p):])] = string(kv.Value)
	}
	return out, nil
}

// Place says which node should serve a conference: its owner if it has
// one, else the live node with the lowest load for its capacity (ties by
// name), which may be this one.
func (n *Node) Place(conference string) (NodeInfo, error) {
	if owner, ok, err := n.Owner(conference); err != nil || ok {
		return owner, err
	}
	return n.placeAmong(func(NodeInfo) bool { return true })
}

// PlaceElsewhere says which other node should take a conference this one
// hands over: the least-loaded live node that is not draining. ok is false
// when there is none.
func (n *Node) PlaceElsewhere() (NodeInfo, bool, error) {
	self := n.Info().Name
	ni, err := n.placeAmong(func(o NodeInfo) bool { return o.Name != self })
	if err != nil || ni.Name == "" || ni.Name == self {
		return NodeInfo{}, false, err
	}
	return ni, true, nil
}

// placeAmong picks the least-loaded live node that is not draining among
// those keep accepts; this node if none is known.
func (n *Node) placeAmong(keep func(NodeInfo) bool) (NodeInfo, error) {
	all, err := n.Nodes()
	if err != nil {
		return NodeInfo{}, err
	}
	var nodes []NodeInfo
	for _, ni := range all {
		if !ni.Draining && keep(ni) {
			nodes = append(nodes, ni)
		}
	}
	if len(nodes) == 0 {
		return n.Info(), nil
	}
	share := func(ni NodeInfo) float64 {
		if ni.Capacity <= 0 {
			return float64(ni.Load)
		}
		return float64(ni.Load) / float64(ni.Capacity)
	}
	// Loads are reported every few seconds: between two equal ones the
	// node with fewer conferences wins, so that conferences placed at
	// once (a failover) spread instead of all going to one node.
	owned := n.ownedCounts()
	less := func(a, b NodeInfo) bool {
		if share(a) != share(b) {
			return share(a) < share(b)
		}
		if owned[a.Name] != owned[b.Name] {
			return owned[a.Name] < owned[b.Name]
		}
		return a.Name < b.Name
	}
	best := nodes[0]
	for _, ni := range nodes[1:] {
		if less(ni, best) {
			best = ni
		}
	}
	return best, nil
}

// ownedCounts counts the conferences each node owns (nothing on error:
// the tie then goes by name).
func (n *Node) ownedCounts() map[string]int {
	out := map[string]int{}
	owners, err := n.Owners()
	if err != nil {
		return out
	}
	for node, confs := range owners {
		out[node] = len(confs)
	}
	return out
}

// SetLoad updates the load this node reports (at most once a few seconds
// is plenty: placement only compares).
func (n *Node) SetLoad(load int) error {
	return n.update(func(ni *NodeInfo) bool {
		changed := ni.Load != load
		ni.Load = load
		return changed
	})
}

// SetDraining says the node takes no new conference (or again does): the
// other nodes' placement leaves it out from now on.
func (n *Node) SetDraining(draining bool) error {
	return n.update(func(ni *NodeInfo) bool {
		changed := ni.Draining != draining
		ni.Draining = draining
		return changed
	})
}

// update changes what the node says of itself and, if that changed,
// writes it under its lease.
func (n *Node) update(change func(*NodeInfo) bool) error {
	n.mu.Lock()
	if !change(&n.info) {
		n.mu.Unlock()
		return nil
	}
	info, lease := n.info, n.lease
	n.mu.Unlock()
	if lease == 0 {
		return ErrLeaseLost
	}
	v, _ := json.Marshal(info)
	ctx, cancel := n.ctx()
	defer cancel()
	_, err := n.kv.cli.Put(ctx, n.kv.prefix+"nodes/"+info.Name, string(v), clientv3.WithLease(lease))
	return err
}

// Release gives a conference up (a graceful hand-over): its key is
// deleted if it is still this node's, so that another node takes it at
// once.
func (n *Node) Release(conference string) error {
	n.mu.Lock()
	fence, ok := n.owned[conference]
	delete(n.owned, conference)
	n.mu.Unlock()
	if !ok {
		return nil
	}
	until := time.Now() // it serves no more: the key may go
	key := n.kv.prefix + "owners/" + conference
	ctx, cancel := n.ctx()
	defer cancel()
	_, err := n.kv.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", fence)).
		Then(clientv3.OpDelete(key)).Commit()
	n.log.Info("cluster: released", "conference", conference, "until", until)
	return err
}

// Leave releases every conference, revokes the lease (the node's entry
// goes at once) and stops renewing it.
func (n *Node) Leave() error {
	n.stopRenewing()
	n.mu.Lock()
	owned := make([]string, 0, len(n.owned))
	for c := range n.owned {
		owned = append(owned, c)
	}
	lease := n.lease
	n.mu.Unlock()
	for _, c := range owned {
		_ = n.Release(c)
	}
	if lease == 0 {
		return nil
	}
	ctx, cancel := n.ctx()
	defer cancel()
	_, err := n.kv.cli.Revoke(ctx, lease)
	return err
}
