package controlplane

import (
	"errors"
	"sync"
	"testing"
	"time"

	"citybridge/controlplane/etcdtest"
)

// TestEtcdGone: a node whose etcd cluster stops answering. Reads fail
// with ErrStoreUnavailable instead of answering as if the records were
// absent (a token check must not call every credential revoked), the node
// says once that etcd is unreachable, keeps serving its conference until
// its lease's deadline, then gives it up; when etcd answers again it gets
// a new lease by itself and says so once.
func TestEtcdGone(t *testing.T) {
	t.Parallel()
	c, err := etcdtest.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	st, err := OpenEtcd(EtcdOptions{Endpoints: c.Endpoints, Prefix: etcdtest.Prefix("gone"), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok, err := st.IssueToken(Grant{Role: RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []EtcdState
	var lost []string
	node, err := st.JoinCluster(NodeInfo{Name: "a", Advertise: "https://127.0.0.1:1"}, 2*time.Second, discardLogger(),
		func(c []string) { mu.Lock(); lost = append(lost, c...); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Leave() })
	node.OnEtcdChange(func(s EtcdState) { mu.Lock(); changes = append(changes, s); mu.Unlock() })
	if _, ok, err := node.Acquire("c1"); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if err := node.Available(); err != nil {
		t.Fatalf("available at the start: %v", err)
	}

	// The only member stops: its data stay, it starts again below.
	c.CloseMember(0)
	stopped := time.Now()

	valid, err := st.StillValid([]Credential{TokenCredential(tok)})
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("StillValid with etcd gone: %v %v, want ErrStoreUnavailable", valid, err)
	}
	if _, err := st.Admit(tok, ""); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Admit with etcd gone: %v, want ErrStoreUnavailable", err)
	}
	waitFor(t, func() bool { return node.Available() != nil })
	var unreachable *EtcdUnreachableError
	if err := node.Available(); !errors.As(err, &unreachable) || !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Available: %v, want an EtcdUnreachableError", err)
	}
	s := node.Etcd()
	if s.Reachable || s.Since.Before(stopped) {
		t.Errorf("state %+v: want unreachable since after %v", s, stopped)
	}
	// Its conference is its own until the lease's deadline, not after.
	if time.Now().Before(s.LeaseUntil) && !node.Serves("c1") {
		t.Error("gave the conference up before its lease's deadline")
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(lost) == 1 })
	if node.Serves("c1") || node.Etcd().LeaseHeld {
		t.Error("still serving after the lease's deadline")
	}

	// etcd comes back (same member, same data): a new lease, by itself.
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return node.Available() == nil && node.Etcd().LeaseHeld })
	// Its old key goes with its old lease (which etcd, starting again,
	// counts a full TTL from its start): then it is this node's again.
	waitFor(t, func() bool { _, ok, _ := node.Acquire("c1"); return ok })
	if _, err := st.StillValid([]Credential{TokenCredential(tok)}); err != nil {
		t.Errorf("StillValid after etcd came back: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0].Reachable || !changes[1].Reachable {
		t.Errorf("told of %d changes %+v, want unreachable then reachable, once each", len(changes), changes)
	}
}
