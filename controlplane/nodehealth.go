package controlplane

import (
	"fmt"
	"time"
)

// What a node knows of its link to etcd. Any request the node makes for
// itself that etcd does not answer (a renewal within half the TTL, any
// other within its timeout) says it is unreachable; its lease's renewal
// (one each third of the TTL) answered says it is back. A node that
// cannot reach etcd keeps its running meetings until its lease's deadline
// (no media path touches etcd), but admits nobody: it cannot check a
// credential, nor know who owns a conference. It says so once in its log when etcd stops answering and
// once when it answers again, and tells the server (OnEtcdChange), which
// reports it in /healthz, the metrics and a technician alert.

// EtcdState is the node's link to etcd as it knows it now.
type EtcdState struct {
	Reachable bool      // etcd answered the node's last request
	Since     time.Time // when Reachable last changed (the node's start at first)
	Err       string    // why not, while unreachable
	LeaseHeld bool      // the node's lease surely holds now, by its own clock
	// LeaseUntil is the lease's deadline: while etcd is unreachable, the
	// node gives its conferences up then.
	LeaseUntil time.Time
}

// EtcdUnreachableError: this node cannot reach etcd just now; it admits
// nobody until it can.
type EtcdUnreachableError struct {
	Since time.Time
	Err   string
}

func (e *EtcdUnreachableError) Error() string {
	return fmt.Sprintf("etcd unreachable since %s: %s", e.Since.UTC().Format(time.RFC3339), e.Err)
}

// Unwrap lets errors.Is(err, ErrStoreUnavailable) hold.
func (e *EtcdUnreachableError) Unwrap() error { return ErrStoreUnavailable }

// etcdLink is the node's part that remembers it (under Node.mu).
type etcdLink struct {
	down     bool
	since    time.Time
	err      error
	onChange func(EtcdState)
}

// OnEtcdChange asks to be told each time etcd stops or starts answering
// this node. f runs on the node's renewal loop: it must not block.
func (n *Node) OnEtcdChange(f func(EtcdState)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.etcd.onChange = f
}

// Etcd is the node's link to etcd now.
func (n *Node) Etcd() EtcdState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.etcdLocked(time.Now())
}

func (n *Node) etcdLocked(now time.Time) EtcdState {
	st := EtcdState{Reachable: !n.etcd.down, Since: n.etcd.since, LeaseUntil: n.deadline,
		LeaseHeld: n.lease != 0 && now.Before(n.deadline)}
	if n.etcd.down && n.etcd.err != nil {
		st.Err = n.etcd.err.Error()
	}
	if st.Since.IsZero() {
		st.Since = n.info.Started
	}
	return st
}

// Available is nil while etcd answers this node, else an
// *EtcdUnreachableError saying since when.
func (n *Node) Available() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.etcd.down {
		return nil
	}
	return &EtcdUnreachableError{Since: n.etcd.since, Err: n.etcd.err.Error()}
}

// etcdFailed records a request of the node's that etcd did not answer
// (nothing when err is nil or an answer, such as a refusal).
func (n *Node) etcdFailed(err error) {
	if unreachable(err) {
		n.noteEtcd(true, err)
	}
}

// etcdAnswered records that etcd renewed the node's lease, granted it a
// new one, or said its lease is gone: it answers. Only the lease's
// renewals say so (every third of the TTL), so that one quick answer
// between two failed requests does not make the state flap.
func (n *Node) etcdAnswered() { n.noteEtcd(false, nil) }

// noteEtcd records whether etcd answers; a change is logged, and told,
// once.
func (n *Node) noteEtcd(down bool, err error) {
	now := time.Now()
	n.mu.Lock()
	if down == n.etcd.down {
		if down {
			n.etcd.err = err
		}
		n.mu.Unlock()
		return
	}
	was := n.etcd.since
	n.etcd.down, n.etcd.since, n.etcd.err = down, now, err
	st, onChange := n.etcdLocked(now), n.etcd.onChange
	n.mu.Unlock()
	n.kv.cut.Store(down)
	if down {
		n.log.Error("cluster: etcd unreachable: new joins refused; running meetings go on until the lease ends",
			"err", err, "lease_until", st.LeaseUntil)
	} else {
		n.log.Info("cluster: etcd reachable again", "unreachable_for", now.Sub(was).Round(time.Millisecond).String())
	}
	if onChange != nil {
		onChange(st)
	}
}
