package controlplane

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// What the Nodes panel shows of a cluster (GET /api/nodes): every live
// node, its load, the conferences it serves and its health. It is read
// from etcd when asked (the nodes/ and owners/ keys and each node's
// lease), so it costs nothing while nobody looks.

// Node health, as GET /api/nodes reports it.
const (
	// HealthOK: the node renews its lease on time (for the node that
	// answers: its lease surely holds by its own clock).
	HealthOK = "ok"
	// HealthLate: the node missed a renewal of its lease. It is cut from
	// etcd, paused or overloaded; if its lease runs out, its conferences
	// go to another node.
	HealthLate = "late"
	// HealthLeaseLost: the node that answers has no lease; it serves
	// nothing until it has one again.
	HealthLeaseLost = "lease_lost"
	// HealthEtcdUnreachable: the node that answers cannot read etcd, so
	// it knows only itself.
	HealthEtcdUnreachable = "etcd_unreachable"
	// HealthUnknown: the node's lease could not be read.
	HealthUnknown = "unknown"
)

// The modes of NodesView.
const (
	ModeSingle  = "single"  // one machine and bbolt: the one entry is this server
	ModeCluster = "cluster" // nodes sharing the store through etcd
)

// NodeStatus is one node as the Nodes panel shows it.
type NodeStatus struct {
	NodeInfo
	// Conferences it serves now (its owners/ keys), sorted.
	Conferences []string `json:"conferences"`
	Health      string   `json:"health"`
	// LeaseLeft is how long its lease has left, in whole seconds as
	// etcd counts them (0 when not known).
	LeaseLeft int  `json:"lease_left,omitempty"`
	Self      bool `json:"self,omitempty"` // the node that answered
}

// NodesView is the answer of GET /api/nodes.
type NodesView struct {
	Mode  string       `json:"mode"`
	Nodes []NodeStatus `json:"nodes"`
	// Titles are the titles of the conferences the nodes serve, by ID.
	Titles map[string]string `json:"titles"`
	// Error says why the list holds only the node that answered.
	Error string `json:"error,omitempty"`
}

// ownerSkip says whether an ownership key is the cluster's own rather
// than a conference's (the demo's seeding holds "_seed").
func ownerSkip(key string) bool { return strings.HasPrefix(key, "_") }

// Owners returns the conferences each node serves, by node name, sorted,
// read from the ownership keys.
func (n *Node) Owners() (map[string][]string, error) { return owners(n.kv) }

// owners reads the ownership keys: conferences by owner's name.
func owners(kv *etcdKV) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kv.timeout)
	defer cancel()
	prefix := kv.prefix + "owners/"
	resp, err := kv.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, kv := range resp.Kvs {
		conf := strings.TrimPrefix(string(kv.Key), prefix)
		var owner NodeInfo
		if ownerSkip(conf) || json.Unmarshal(kv.Value, &owner) != nil {
			continue
		}
		out[owner.Name] = append(out[owner.Name], conf)
	}
	for _, cs := range out {
		slices.Sort(cs)
	}
	return out, nil
}

// Status lists the live nodes by name, with the conferences each serves
// and its health. When etcd cannot be read it answers this node alone,
// with the conferences it holds and the error.
func (n *Node) Status() NodesView {
	v := NodesView{Mode: ModeCluster}
	nodes, leases, err := n.nodesWithLeases()
	var owners map[string][]string
	if err == nil {
		owners, err = n.Owners()
	}
	if err != nil {
		self := n.selfStatus()
		self.Health = HealthEtcdUnreachable
		v.Nodes, v.Error = []NodeStatus{self}, err.Error()
		return v
	}
	name := n.Info().Name
	seen := false
	for i, ni := range nodes {
		st := NodeStatus{NodeInfo: ni, Conferences: owners[ni.Name]}
		if ni.Name == name {
			st = n.selfStatus()
			st.Conferences, seen = owners[ni.Name], true
		} else {
			st.Health, st.LeaseLeft = n.leaseHealth(leases[i])
		}
		if st.Conferences == nil {
			st.Conferences = []string{}
		}
		v.Nodes = append(v.Nodes, st)
	}
	// A node whose lease is lost has no entry in etcd: it still says so.
	if !seen {
		v.Nodes = append(v.Nodes, n.selfStatus())
	}
	slices.SortFunc(v.Nodes, func(a, b NodeStatus) int { return strings.Compare(a.Name, b.Name) })
	return v
}

// nodesWithLeases reads the live nodes and the lease each is registered
// under.
func (n *Node) nodesWithLeases() ([]NodeInfo, []clientv3.LeaseID, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.kv.cli.Get(ctx, n.kv.prefix+"nodes/", clientv3.WithPrefix())
	if err != nil {
		return nil, nil, err
	}
	var nodes []NodeInfo
	var leases []clientv3.LeaseID
	for _, kv := range resp.Kvs {
		var ni NodeInfo
		if json.Unmarshal(kv.Value, &ni) == nil {
			nodes = append(nodes, ni)
			leases = append(leases, clientv3.LeaseID(kv.Lease))
		}
	}
	return nodes, leases, nil
}

// leaseHealth judges another node by what is left of its lease. A node
// renews every third of the TTL, so a lease with less than half its TTL
// left has missed a renewal (etcd counts whole seconds, rounded down:
// with a 2 s TTL a lease renewed on time shows 1 or 2).
func (n *Node) leaseHealth(lease clientv3.LeaseID) (string, int) {
	ctx, cancel := n.ctx()
	defer cancel()
	ttl, err := n.kv.cli.TimeToLive(ctx, lease)
	if err != nil || ttl.GrantedTTL <= 0 {
		return HealthUnknown, 0
	}
	if ttl.TTL*2 < ttl.GrantedTTL {
		return HealthLate, int(max(ttl.TTL, 0))
	}
	return HealthOK, int(ttl.TTL)
}

// selfStatus is this node by its own account: its lease holds as long as
// its clock says it surely does.
func (n *Node) selfStatus() NodeStatus {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	st := NodeStatus{NodeInfo: n.info, Health: HealthLeaseLost, Self: true, Conferences: []string{}}
	if n.lease != 0 && now.Before(n.deadline) {
		st.Health, st.LeaseLeft = HealthOK, int(n.deadline.Sub(now)/time.Second)
	}
	for c := range n.owned {
		if !ownerSkip(c) {
			st.Conferences = append(st.Conferences, c)
		}
	}
	slices.Sort(st.Conferences)
	return st
}
