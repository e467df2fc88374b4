package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdKV keeps the store's buckets in an etcd cluster, under a prefix, so
// that several citybridge nodes share one state. A transaction reads at
// one revision of the cluster (a consistent view, as bbolt's) and buffers
// its writes; it commits as one etcd transaction that holds only if
// nothing it read has changed since (each key read, and each range it
// walked, unchanged past that revision). When another node's write
// overtook it, the transaction runs again from the start: no
// read-modify-write race between nodes.
//
// Keys: a bucket is a path of names; its own keys live under
// P "k/" name "\x01" [nested "\x01"]... "\x00" key, its sequence under
// P "s/" path. A bucket's existence is a key in its parent holding
// bucketMark (the root's keys are the top-level buckets), as bbolt keeps
// a nested bucket as a key of its parent.
type etcdKV struct {
	cli     *clientv3.Client
	prefix  string
	where   string
	timeout time.Duration
	// cut is set while this node knows etcd does not answer (its lease
	// renewals fail): requests then wait at most cutTimeout, so that a
	// session writing an audit line or a floor change is not held for the
	// whole timeout, again and again, while its meeting goes on.
	cut atomic.Bool
}

// cutTimeout bounds each request while the node is cut from etcd.
const cutTimeout = time.Second

// requestTimeout is how long one request to the cluster may take now.
func (e *etcdKV) requestTimeout() time.Duration {
	if e.cut.Load() {
		return min(e.timeout, cutTimeout)
	}
	return e.timeout
}

// bucketMark is the value of a key that stands for a bucket; no record
// is ever this value (records are JSON, or binary points that start with
// a float).
var bucketMark = []byte("\x00citybridge:bucket\x00")

// ErrConflict: a transaction kept being overtaken by other nodes' writes.
var ErrConflict = errors.New("controlplane: the transaction kept conflicting with other nodes' writes")

// ErrStoreUnavailable: the etcd cluster the store lives in did not answer
// (unreachable, no leader, or too slow). Nothing was read or written; the
// same request may work a moment later.
var ErrStoreUnavailable = errors.New("controlplane: the store's etcd cluster cannot be reached")

// etcdRetries bounds how often a transaction runs again after a conflict.
const etcdRetries = 64

// EtcdOptions say how to reach the cluster.
type EtcdOptions struct {
	Endpoints []string
	// Prefix is where the records live (default "/citybridge/"); two
	// cities can share a cluster under two prefixes.
	Prefix string
	// TLS for https:// endpoints (client certificates, the cluster's CA).
	TLS *tls.Config
	// Username and Password, when etcd's authentication is on.
	Username, Password string
	// Timeout bounds each request to the cluster (default 5 s).
	Timeout time.Duration
}

// OpenEtcd opens the store in an etcd cluster, creating its buckets if
// the prefix is empty; a prefix holding something else is refused with
// ErrForeignFile.
func OpenEtcd(o EtcdOptions) (*Store, error) {
	e, err := openEtcdKV(o)
	if err != nil {
		return nil, err
	}
	s := &Store{db: e, now: time.Now}
	if err := s.db.Update(s.init); err != nil {
		_ = e.Close()
		return nil, err
	}
	return s, nil
}

func (e *etcdKV) Where() string { return e.where }
func (e *etcdKV) Close() error  { return e.cli.Close() }

// View runs fn on one revision. A read that failed is the answer, before
// whatever fn made of the nothing it got (a token that seemed absent is
// not an invalid token when etcd did not answer).
func (e *etcdKV) View(fn func(kvTx) error) error {
	tx := &etcdTx{kv: e, reads: map[string]int64{}}
	err := fn(tx)
	if tx.err != nil {
		return tx.err
	}
	return err
}

func (e *etcdKV) Update(fn func(kvTx) error) error {
	start, gets, runs := time.Now(), 0, 0
	defer func() {
		if d := time.Since(start); d > slowTxn {
			caller := "?"
			if pc, _, _, ok := runtime.Caller(2); ok {
				caller = runtime.FuncForPC(pc).Name()
			}
			slog.Warn("etcd: slow store transaction", "took", d.Round(time.Millisecond), "requests", gets, "runs", runs, "by", caller)
		}
	}()
	for attempt := range etcdRetries {
		runs++
		tx := &etcdTx{kv: e, writable: true, reads: map[string]int64{}, writes: map[string][]byte{}}
		err := fn(tx)
		if tx.err != nil { // a failed read first, as in View
			return tx.err
		}
		if err != nil {
			return err
		}
		ok, err := tx.commit()
		gets += tx.requests + 1
		if err != nil || ok {
			return err
		}
		// Overtaken: wait a little, more after each loss, and run again.
		time.Sleep(time.Duration(rand.IntN(1+attempt*2)) * time.Millisecond)
	}
	return ErrConflict
}

// Backup writes a bbolt file holding every bucket of the cluster's store,
// as of one revision: the same file a single machine's backup is, so that
// `citybridge restore` can put a cluster's state on one machine.
func (e *etcdKV) Backup(w io.Writer) (int64, error) {
	dir, err := os.MkdirTemp("", "citybridge-backup-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	db, err := bolt.Open(filepath.Join(dir, "citybridge.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	err = e.View(func(src kvTx) error {
		return boltKV{db}.Update(func(dst kvTx) error { return copyBuckets(src, dst) })
	})
	if err != nil {
		return 0, err
	}
	return boltKV{db}.Backup(w)
}

// etcdTx is one transaction on the cluster.
type etcdTx struct {
	kv       *etcdKV
	writable bool
	rev      int64            // the revision reads are made at; 0 before the first
	reads    map[string]int64 // key read → its mod revision then (0: absent)
	ranges   [][2]string      // ranges walked, [start, end)
	writes   map[string][]byte
	order    []string // written keys, in the order written (for the commit)
	// cache holds the keys read (at rev, so they cannot change under the
	// transaction): a bucket looked up ten times is read once.
	cache    map[string][]byte
	err      error
	requests int // round trips to etcd so far (for the slow transaction's log)
}

// slowTxn: a store transaction taking longer is logged.
const slowTxn = 500 * time.Millisecond

func (t *etcdTx) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), t.kv.requestTimeout())
}

// read asks the cluster at the transaction's revision (the first read
// fixes it), failing the transaction on an error.
func (t *etcdTx) read(key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	if t.err != nil {
		return nil // failed already: no more waiting on etcd
	}
	ctx, cancel := t.ctx()
	defer cancel()
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	t.requests++
	resp, err := t.kv.cli.Get(ctx, key, opts...)
	if err != nil {
		t.fail(err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp
}

// get reads one key, the transaction's own writes first.
func (t *etcdTx) get(key string) []byte {
	if v, ok := t.writes[key]; ok {
		return v
	}
	if v, ok := t.cache[key]; ok {
		return v
	}
	resp := t.read(key)
	if resp == nil {
		return nil
	}
	var mod int64
	var v []byte
	if len(resp.Kvs) > 0 {
		mod, v = resp.Kvs[0].ModRevision, resp.Kvs[0].Value
		if v == nil {
			v = []byte{} // present, empty: not absent
		}
	}
	if t.writable {
		t.reads[key] = mod
	}
	if t.cache == nil {
		t.cache = map[string][]byte{}
	}
	t.cache[key] = v
	return v
}

// scan reads up to limit keys of [start, end), ascending or descending.
// The cursor records what of it it used (observed).
func (t *etcdTx) scan(start, end string, limit int64, descend bool) [][2][]byte {
	order := clientv3.SortAscend
	if descend {
		order = clientv3.SortDescend
	}
	resp := t.read(start, clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithSort(clientv3.SortByKey, order))
	if resp == nil {
		return nil
	}
	out := make([][2][]byte, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = [2][]byte{kv.Key, kv.Value}
	}
	return out
}

// observed records [start, end) as read: a commit fails if any key in it
// changed since. Only what a cursor moved over is recorded, not the
// whole page it read: two transactions each walking their own bridge's
// intervals do not overtake each other because one page held both.
func (t *etcdTx) observed(start, end string) {
	if t.writable && start < end {
		t.ranges = append(t.ranges, [2]string{start, end})
	}
}

// put buffers a write (nil: a delete) for the commit.
func (t *etcdTx) put(key string, v []byte) error {
	if !t.writable {
		return errors.New("controlplane: write in a read-only transaction")
	}
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = slices.Clone(v) // nil stays nil
	return nil
}

func (t *etcdTx) fail(err error) {
	if t.err == nil {
		t.err = etcdError(err)
	}
}

// etcdError wraps an error of a request to etcd, as ErrStoreUnavailable
// when the cluster did not answer.
func etcdError(err error) error {
	if unreachable(err) {
		return fmt.Errorf("etcd: %w: %w", ErrStoreUnavailable, err)
	}
	return fmt.Errorf("etcd: %w", err)
}

// unreachable says whether err means etcd did not answer: a request timed
// out or was cut short, no member could be reached, or the cluster has no
// leader just now (gRPC's Unavailable and DeadlineExceeded).
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	return code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled
}

// keyCompares is how many single keys a commit checks one by one; beyond,
// each bucket's keys are checked as one range (etcd bounds a transaction's
// comparisons, by default to 128).
const keyCompares = 32

// commit writes the buffered changes if nothing read has changed since.
func (t *etcdTx) commit() (bool, error) {
	if len(t.order) == 0 {
		return true, nil
	}
	var cmps []clientv3.Cmp
	reads := slices.Sorted(func(yield func(string) bool) {
		for k := range t.reads {
			if !yield(k) {
				return
			}
		}
	})
	ranges := t.ranges
	if len(reads) > keyCompares {
		// Check each bucket the keys belong to as a whole.
		for _, k := range reads {
			ranges = append(ranges, t.kv.rangeOf(k))
		}
		reads = nil
	}
	for _, k := range reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", t.reads[k]))
	}
	slices.SortFunc(ranges, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	ranges = slices.Compact(ranges)
	for _, r := range ranges {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(r[0]), "<", t.rev+1).WithRange(r[1]))
	}
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		if v := t.writes[k]; v == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
	}
	ctx, cancel := t.ctx()
	defer cancel()
	resp, err := t.kv.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		if strings.Contains(err.Error(), "too many operations") {
			return false, fmt.Errorf("etcd: %w (a transaction of %d writes and %d checks: run etcd with --max-txn-ops 4096)", err, len(ops), len(cmps))
		}
		return false, etcdError(err)
	}
	return resp.Succeeded, nil
}

// rangeOf is the range of the bucket a key belongs to (a sequence's key:
// that key alone).
func (e *etcdKV) rangeOf(k string) [2]string {
	keys := e.prefix + "k/"
	if strings.HasPrefix(k, keys) {
		// Bucket names hold no \x00: the first one ends the path.
		if i := strings.IndexByte(k[len(keys):], 0); i >= 0 {
			i += len(keys)
			return [2]string{k[:i+1], k[:i] + "\x01"}
		}
	}
	return [2]string{k, k + "\x00"}
}

// openEtcdKV connects to the cluster without opening a store there.
func openEtcdKV(o EtcdOptions) (*etcdKV, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = "/citybridge/"
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: o.Endpoints, DialTimeout: o.Timeout, TLS: o.TLS,
		Username: o.Username, Password: o.Password,
		AutoSyncInterval: time.Minute,
		// Its own log would repeat every retried request while etcd is
		// out of reach; the node says so once (nodehealth.go), and every
		// failed request returns its error.
		Logger: zap.NewNop(),
		// A link that drops packets (rather than refusing) leaves the
		// connection open with nothing coming back, and TCP's
		// retransmissions back off to a minute: after a long cut the node
		// would wait that long to hear etcd again. A ping unanswered for
		// 5 s after 10 s of silence (gRPC's shortest) closes the
		// connection, and new ones are tried every few seconds, each
		// given 3 s, so the node is back within seconds of etcd.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 3 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return &etcdKV{cli: cli, prefix: o.Prefix, timeout: o.Timeout,
		where: "etcd " + strings.Join(o.Endpoints, ",") + " " + o.Prefix}, nil
}
