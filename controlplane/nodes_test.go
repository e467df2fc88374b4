package controlplane

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/controlplane/etcdtest"
)

// clusterNodes opens n nodes, each with a client of its own, on one store
// prefix of the shared cluster.
func clusterNodes(t *testing.T, n int, ttl time.Duration, onLost func(node string, confs []string)) ([]*Node, []*Store) {
	t.Helper()
	o := EtcdOptions{Endpoints: etcdEndpoints(t), Prefix: etcdtest.Prefix("nodes")}
	var nodes []*Node
	var stores []*Store
	for i := range n {
		s, err := OpenEtcd(o)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("node-%d", i)
		node, err := s.JoinCluster(NodeInfo{Name: name, Advertise: fmt.Sprintf("https://127.0.0.%d:8443", i+1), Capacity: 100}, ttl, discardLogger(),
			func(confs []string) {
				if onLost != nil {
					onLost(name, confs)
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = node.Leave(); _ = s.Close() })
		nodes = append(nodes, node)
		stores = append(stores, s)
	}
	return nodes, stores
}

// TestNodeOwnership: three nodes race for ten conferences; each has
// exactly one owner, which alone serves it, and the others are told
// which. Placement picks the least-loaded node. A node cut from etcd
// stops serving by itself before its lease can have expired, and only
// then does another node take its conferences, with a higher fencing
// revision: sampled every 5 ms, no conference ever has two nodes serving
// it. A released conference is taken at once.
func TestNodeOwnership(t *testing.T) {
	t.Parallel()
	var lostMu sync.Mutex
	lost := map[string][]string{}
	nodes, stores := clusterNodes(t, 3, 2*time.Second, func(node string, confs []string) {
		lostMu.Lock()
		lost[node] = confs
		lostMu.Unlock()
	})
	confs := make([]string, 10)
	for i := range confs {
		confs[i] = fmt.Sprintf("c%d", i+1)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := map[string][]string{}
	for _, c := range confs {
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner, mine, err := n.Acquire(c)
				if err != nil {
					t.Error(err)
					return
				}
				if mine {
					mu.Lock()
					winners[c] = append(winners[c], n.Info().Name)
					mu.Unlock()
				} else if owner.Name == n.Info().Name || owner.Name == "" {
					t.Errorf("%s on %s: told the owner is %+v", c, n.Info().Name, owner)
				}
			}()
		}
	}
	wg.Wait()
	serving := func(c string) []string {
		var out []string
		for _, n := range nodes {
			if n.Serves(c) {
				out = append(out, n.Info().Name)
			}
		}
		return out
	}
	for _, c := range confs {
		if len(winners[c]) != 1 {
			t.Fatalf("%s acquired by %v", c, winners[c])
		}
		if s := serving(c); len(s) != 1 || s[0] != winners[c][0] {
			t.Errorf("%s served by %v, owned by %v", c, s, winners[c])
		}
		owner, ok, err := nodes[0].Owner(c)
		if err != nil || !ok || owner.Name != winners[c][0] {
			t.Errorf("%s: Owner says %+v %v %v", c, owner, ok, err)
		}
	}
	// Placement: the least loaded for its capacity.
	if err := nodes[0].SetLoad(80); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].SetLoad(10); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].SetLoad(50); err != nil {
		t.Fatal(err)
	}
	if p, err := nodes[0].Place("c-new"); err != nil || p.Name != "node-1" {
		t.Errorf("placement of a new conference: %+v %v, want node-1 (least loaded)", p, err)
	}
	if p, _ := nodes[0].Place(confs[0]); p.Name != winners[confs[0]][0] {
		t.Errorf("placement of an owned conference: %+v, want its owner", p)
	}

	// node-0 loses etcd: its client closes. Sample every node's view.
	victim := nodes[0]
	var mine []string
	for _, c := range confs {
		if winners[c][0] == victim.Info().Name {
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 { // make sure it owns something
		if _, ok, err := victim.Acquire("c-victim"); err != nil || !ok {
			t.Fatalf("victim acquire: %v %v", ok, err)
		}
		mine = []string{"c-victim"}
		confs = append(confs, "c-victim")
	}
	fences := map[string]int64{}
	for _, c := range mine {
		fences[c] = victim.Fence(c)
	}
	cut := time.Now()
	_ = stores[0].db.(*etcdKV).cli.Close()
	var double atomic.Value
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	var stopOnce sync.Once
	defer func() { stopOnce.Do(func() { close(stopSampling) }); <-sampled }()
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, c := range confs {
				if s := serving(c); len(s) > 1 {
					double.Store(fmt.Sprintf("%s served by %v at %v after the cut", c, s, time.Since(cut)))
				}
			}
		}
	}()
	// The others try to take the victim's conferences until they can.
	taken := map[string]string{}
	waitFor(t, func() bool {
		for _, c := range mine {
			if _, ok := taken[c]; ok {
				continue
			}
			for _, n := range nodes[1:] {
				if _, ok, err := n.Acquire(c); err == nil && ok {
					taken[c] = n.Info().Name
					if victim.Serves(c) {
						t.Errorf("%s taken by %s while node-0 still serves it", c, n.Info().Name)
					}
					if f := n.Fence(c); f <= fences[c] {
						t.Errorf("%s: the new owner's fence %d is not above the old %d", c, f, fences[c])
					}
					break
				}
			}
		}
		return len(taken) == len(mine)
	})
	stopOnce.Do(func() { close(stopSampling) })
	<-sampled
	if d := double.Load(); d != nil {
		t.Error(d)
	}
	took := time.Since(cut)
	if took > 2*time.Second+3*time.Second {
		t.Errorf("taking over took %v, the lease is 2 s", took)
	}
	lostMu.Lock()
	if len(lost["node-0"]) != len(mine) {
		t.Errorf("node-0 was told it lost %v, it owned %v", lost["node-0"], mine)
	}
	lostMu.Unlock()
	t.Logf("node-0's %d conferences taken over %v after its cut", len(mine), took.Round(10*time.Millisecond))

	// A graceful hand-over: released, taken at once.
	c := confs[1]
	var owner *Node
	for _, n := range nodes[1:] {
		if n.Serves(c) {
			owner = n
		}
	}
	if owner == nil {
		t.Fatalf("nobody serves %s", c)
	}
	if err := owner.Release(c); err != nil {
		t.Fatal(err)
	}
	other := nodes[1]
	if other == owner {
		other = nodes[2]
	}
	if _, ok, err := other.Acquire(c); err != nil || !ok {
		t.Errorf("after a release, another node could not take %s: %v %v", c, ok, err)
	}
	if live, _ := nodes[1].Nodes(); len(live) != 2 {
		t.Errorf("%d live nodes after node-0's lease went, want 2: %+v", len(live), live)
	}
}

// TestPausedNodeStopsServing: a node whose renewals stop (a process
// paused, its renewal loop not running) serves nothing from the moment
// its lease may have expired, by its own clock, without waiting for its
// loop to notice; another node takes the conference after that moment.
func TestPausedNodeStopsServing(t *testing.T) {
	t.Parallel()
	nodes, _ := clusterNodes(t, 2, time.Second, nil)
	a, b := nodes[0], nodes[1]
	if _, ok, err := a.Acquire("c1"); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	a.stopRenewing()
	a.mu.Lock()
	surely := a.deadline
	a.mu.Unlock()
	// Sampled until then: a serves, b cannot take it.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(surely) {
		if !a.Serves("c1") && time.Now().Before(surely) {
			t.Fatal("a stopped serving before its lease could have expired")
		}
		if _, ok, _ := b.Acquire("c1"); ok && time.Now().Before(surely) {
			t.Fatal("b took c1 while a's lease held")
		}
		<-tick.C
	}
	if a.Serves("c1") {
		t.Error("a paused node serves past its lease's sure end")
	}
	waitFor(t, func() bool { _, ok, _ := b.Acquire("c1"); return ok })
	if a.Serves("c1") || !b.Serves("c1") {
		t.Errorf("after the take-over: a serves %v, b %v", a.Serves("c1"), b.Serves("c1"))
	}
}

// waitFor waits until cond holds, polling, and fails the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("not within 10 s")
		case <-tick.C:
		}
	}
}

// TestNodeStatus: the Nodes panel's view, asked of either node, lists
// both with the conferences each serves (not the cluster's own seeding
// key) and their health. A node that stops renewing its lease shows as
// late before its lease runs out, then disappears; the node asking marks
// itself.
func TestNodeStatus(t *testing.T) {
	t.Parallel()
	nodes, _ := clusterNodes(t, 2, 6*time.Second, nil)
	a, b := nodes[0], nodes[1]
	for _, acq := range []struct {
		n *Node
		c string
	}{{a, "c2"}, {a, "c1"}, {a, "_seed"}, {b, "c3"}} {
		if _, ok, err := acq.n.Acquire(acq.c); err != nil || !ok {
			t.Fatalf("%s acquiring %s: %v %v", acq.n.Info().Name, acq.c, ok, err)
		}
	}
	summary := func(v NodesView) string {
		var out []string
		for _, st := range v.Nodes {
			out = append(out, fmt.Sprintf("%s %v %s self=%v", st.Name, st.Conferences, st.Health, st.Self))
		}
		return strings.Join(out, "; ")
	}
	v := b.Status()
	want := "node-0 [c1 c2] ok self=false; node-1 [c3] ok self=true"
	if got := summary(v); got != want || v.Mode != ModeCluster || v.Error != "" {
		t.Fatalf("b's view: %s (mode %q, error %q)\nwant %s", got, v.Mode, v.Error, want)
	}
	if v.Nodes[0].Advertise != "https://127.0.0.1:8443" || v.Nodes[0].Capacity != 100 || v.Nodes[0].LeaseLeft < 3 {
		t.Errorf("node-0 as b sees it: %+v", v.Nodes[0])
	}
	if got := summary(a.Status()); got != "node-0 [c1 c2] ok self=true; node-1 [c3] ok self=false" {
		t.Errorf("a's view: %s", got)
	}
	// a stops renewing: b sees it late (a renewal missed), then gone.
	a.stopRenewing()
	waitFor(t, func() bool { return b.Status().Nodes[0].Health == HealthLate })
	waitFor(t, func() bool { return summary(b.Status()) == "node-1 [c3] ok self=true" })
}
