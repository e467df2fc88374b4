package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
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
}

// bucketMark is the value of a key that stands for a bucket; no record
// is ever this value (records are JSON, or binary points that start with
// a float).
var bucketMark = []byte("\x00citybridge:bucket\x00")

// ErrConflict: a transaction kept being overtaken by other nodes' writes.
var ErrConflict = errors.New("controlplane: the transaction kept conflicting with other nodes' writes")

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
	e, err := OpenEtcdRaw(o)
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

func (e *etcdKV) View(fn func(kvTx) error) error {
	return fn(&etcdTx{kv: e, reads: map[string]int64{}})
}

func (e *etcdKV) Update(fn func(kvTx) error) error {
	for attempt := range etcdRetries {
		tx := &etcdTx{kv: e, writable: true, reads: map[string]int64{}, writes: map[string][]byte{}}
		if err := fn(tx); err != nil {
			return err
		}
		if tx.err != nil {
			return tx.err
		}
		ok, err := tx.commit()
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

// copyBuckets copies every bucket of src into dst.
func copyBuckets(src, dst kvTx) error {
	return src.ForEachBucket(func(name []byte, b kvBucket) error {
		nb, err := dst.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		return copyBucket(b, nb)
	})
}

func copyBucket(src, dst kvBucket) error {
	err := src.ForEach(func(k, v []byte) error {
		if v == nil {
			if nested := src.Bucket(k); nested != nil {
				nd, err := dst.CreateBucketIfNotExists(k)
				if err != nil {
					return err
				}
				return copyBucket(nested, nd)
			}
		}
		return dst.Put(k, v)
	})
	if err != nil {
		return err
	}
	// The sequence comes along, so that new records do not reuse numbers.
	seq, ok := sequenceOf(src)
	if ok {
		return setSequence(dst, seq)
	}
	return nil
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
	cache map[string][]byte
	err   error
}

func (t *etcdTx) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), t.kv.timeout)
}

// get reads one key, the transaction's own writes first.
func (t *etcdTx) get(key string) []byte {
	if v, ok := t.writes[key]; ok {
		return v
	}
	if v, ok := t.cache[key]; ok {
		return v
	}
	ctx, cancel := t.ctx()
	defer cancel()
	opts := []clientv3.OpOption{}
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.kv.cli.Get(ctx, key, opts...)
	if err != nil {
		t.fail(err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
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

// scan reads up to limit keys of [start, end) at the transaction's
// revision, ascending or descending, and records the range as read.
func (t *etcdTx) scan(start, end string, limit int64, descend bool) [][2][]byte {
	ctx, cancel := t.ctx()
	defer cancel()
	order := clientv3.SortAscend
	if descend {
		order = clientv3.SortDescend
	}
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithSort(clientv3.SortByKey, order)}
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.kv.cli.Get(ctx, start, opts...)
	if err != nil {
		t.fail(err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	if t.writable {
		t.ranges = append(t.ranges, [2]string{start, end})
	}
	out := make([][2][]byte, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = [2][]byte{kv.Key, kv.Value}
	}
	return out
}

func (t *etcdTx) put(key string, v []byte) error {
	if !t.writable {
		return errors.New("controlplane: write in a read-only transaction")
	}
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = slices.Clone(v)
	if v == nil {
		t.writes[key] = nil
	}
	return nil
}

func (t *etcdTx) fail(err error) {
	if t.err == nil {
		t.err = fmt.Errorf("etcd: %w", err)
	}
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
		return false, fmt.Errorf("etcd: %w", err)
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

// bucketPath encodes a bucket's path: each name ends with \x01.
func bucketPath(names [][]byte) string {
	var b strings.Builder
	for _, n := range names {
		b.Write(n)
		b.WriteByte(1)
	}
	return b.String()
}

func (t *etcdTx) bucket(path [][]byte) *etcdBucket {
	p := bucketPath(path)
	return &etcdBucket{tx: t, path: path, keys: t.kv.prefix + "k/" + p + "\x00", seq: t.kv.prefix + "s/" + p}
}

func (t *etcdTx) Bucket(name []byte) kvBucket { return t.bucket(nil).Bucket(name) }

func (t *etcdTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	return t.bucket(nil).CreateBucketIfNotExists(name)
}

func (t *etcdTx) ForEachBucket(fn func([]byte, kvBucket) error) error {
	root := t.bucket(nil)
	return root.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil // not a bucket
		}
		return fn(k, root.Bucket(k))
	})
}

// etcdBucket is one bucket of a transaction.
type etcdBucket struct {
	tx   *etcdTx
	path [][]byte
	keys string // the prefix of the bucket's own keys
	seq  string // its sequence's key
}

// end is just past the bucket's own keys.
func (b *etcdBucket) end() string { return b.keys[:len(b.keys)-1] + "\x01" }

func (b *etcdBucket) Get(k []byte) []byte {
	v := b.tx.get(b.keys + string(k))
	if bytes.Equal(v, bucketMark) {
		return nil // a nested bucket, as bbolt answers
	}
	return v
}

func (b *etcdBucket) Put(k, v []byte) error {
	if v == nil {
		v = []byte{}
	}
	return b.tx.put(b.keys+string(k), v)
}

func (b *etcdBucket) Delete(k []byte) error { return b.tx.put(b.keys+string(k), nil) }

func (b *etcdBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.tx.err
}

func (b *etcdBucket) NextSequence() (uint64, error) {
	var n uint64
	if v := b.tx.get(b.seq); v != nil {
		if _, err := fmt.Sscan(string(v), &n); err != nil {
			return 0, fmt.Errorf("etcd: sequence %q: %w", v, err)
		}
	}
	n++
	return n, b.tx.put(b.seq, []byte(fmt.Sprint(n)))
}

// KeyCount counts the bucket's own keys as of the transaction's revision
// (what the transaction itself wrote is not counted: the events' pruning,
// its one user, only wants an estimate).
func (b *etcdBucket) KeyCount() int {
	ctx, cancel := b.tx.ctx()
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRange(b.end()), clientv3.WithCountOnly()}
	if b.tx.rev > 0 {
		opts = append(opts, clientv3.WithRev(b.tx.rev))
	}
	resp, err := b.tx.kv.cli.Get(ctx, b.keys, opts...)
	if err != nil {
		b.tx.fail(err)
		return 0
	}
	return int(resp.Count)
}

func (b *etcdBucket) Bucket(name []byte) kvBucket {
	if !bytes.Equal(b.tx.get(b.keys+string(name)), bucketMark) {
		return nil
	}
	return b.tx.bucket(append(slices.Clone(b.path), slices.Clone(name)))
}

func (b *etcdBucket) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	if len(name) == 0 || bytes.IndexByte(name, 0) >= 0 || bytes.IndexByte(name, 1) >= 0 {
		return nil, fmt.Errorf("controlplane: bad bucket name %q", name)
	}
	switch v := b.tx.get(b.keys + string(name)); {
	case v == nil:
		if err := b.tx.put(b.keys+string(name), bucketMark); err != nil {
			return nil, err
		}
	case !bytes.Equal(v, bucketMark):
		return nil, fmt.Errorf("controlplane: %q is a key, not a bucket", name)
	}
	return b.tx.bucket(append(slices.Clone(b.path), slices.Clone(name))), nil
}

func (b *etcdBucket) Cursor() kvCursor { return &etcdCursor{b: b} }

// sequenceOf and setSequence carry a bucket's sequence across stores.
func sequenceOf(b kvBucket) (uint64, bool) {
	switch b := b.(type) {
	case boltBucket:
		return b.b.Sequence(), true
	case *etcdBucket:
		var n uint64
		if v := b.tx.get(b.seq); v != nil {
			_, _ = fmt.Sscan(string(v), &n)
		}
		return n, n > 0
	}
	return 0, false
}

func setSequence(b kvBucket, n uint64) error {
	switch b := b.(type) {
	case boltBucket:
		return b.b.SetSequence(n)
	case *etcdBucket:
		return b.tx.put(b.seq, []byte(fmt.Sprint(n)))
	}
	return nil
}

// etcdCursor walks a bucket's own keys: the cluster's as of the
// transaction's revision, merged with what the transaction wrote. It reads
// a page of keys at a time.
type etcdCursor struct {
	b   *etcdBucket
	cur string // the full key the cursor is on; "" before a move or past an end
	// page holds keys of the cluster read from pageFrom on, ascending;
	// pageEnd says the bucket has none after them.
	page     [][2][]byte
	pageFrom string
	pageEnd  bool
}

const cursorPage = 128

// next returns the first key >= from (or > from when strictly), merging
// the cluster's keys with the transaction's writes.
func (c *etcdCursor) next(from string, strictly bool) (k, v []byte) {
	lo := from
	if strictly {
		lo = from + "\x00"
	}
	end := c.b.end()
	// The cluster's next key that the transaction has not deleted.
	var remote [2][]byte
	found := false
	for !found {
		i := 0
		for i < len(c.page) && string(c.page[i][0]) < lo {
			i++
		}
		c.page = c.page[i:]
		if len(c.page) == 0 {
			if c.pageEnd && c.pageFrom <= lo {
				break // the last page read reached the bucket's end
			}
			c.page, c.pageFrom = c.b.tx.scan(lo, end, cursorPage, false), lo
			c.pageEnd = len(c.page) < cursorPage
			if len(c.page) == 0 {
				break
			}
		}
		kv := c.page[0]
		if w, ok := c.b.tx.writes[string(kv[0])]; ok && w == nil {
			lo = string(kv[0]) + "\x00" // deleted here
			continue
		}
		remote, found = kv, true
	}
	// The transaction's own next key.
	var local string
	for key, w := range c.b.tx.writes {
		if w != nil && key >= lo && key < end && (local == "" || key < local) {
			local = key
		}
	}
	switch {
	case !found && local == "":
		c.cur = ""
		return nil, nil
	case local != "" && (!found || local <= string(remote[0])):
		c.cur = local
		return c.emit(local, c.b.tx.writes[local])
	}
	c.cur = string(remote[0])
	if w, ok := c.b.tx.writes[c.cur]; ok {
		return c.emit(c.cur, w)
	}
	return c.emit(c.cur, remote[1])
}

// prev returns the last key < before, merged the same way.
func (c *etcdCursor) prev(before string) (k, v []byte) {
	c.page, c.pageEnd = nil, false
	hi := before
	var remote [2][]byte
	found := false
	for !found {
		got := c.b.tx.scan(c.b.keys, hi, 1, true)
		if len(got) == 0 {
			break
		}
		if w, ok := c.b.tx.writes[string(got[0][0])]; ok && w == nil {
			hi = string(got[0][0])
			continue
		}
		remote, found = got[0], true
	}
	var local string
	for key, w := range c.b.tx.writes {
		if w != nil && key >= c.b.keys && key < before && key > local {
			local = key
		}
	}
	switch {
	case !found && local == "":
		c.cur = ""
		return nil, nil
	case local != "" && (!found || local >= string(remote[0])):
		c.cur = local
		return c.emit(local, c.b.tx.writes[local])
	}
	c.cur = string(remote[0])
	if w, ok := c.b.tx.writes[c.cur]; ok {
		return c.emit(c.cur, w)
	}
	return c.emit(c.cur, remote[1])
}

func (c *etcdCursor) emit(full string, v []byte) ([]byte, []byte) {
	k := []byte(full[len(c.b.keys):])
	if bytes.Equal(v, bucketMark) {
		return k, nil
	}
	return k, v
}

func (c *etcdCursor) First() ([]byte, []byte) {
	c.page, c.pageEnd = nil, false
	return c.next(c.b.keys, false)
}

func (c *etcdCursor) Last() ([]byte, []byte) { return c.prev(c.b.end()) }

func (c *etcdCursor) Next() ([]byte, []byte) {
	if c.cur == "" {
		return nil, nil
	}
	return c.next(c.cur, true)
}

func (c *etcdCursor) Prev() ([]byte, []byte) {
	if c.cur == "" {
		return nil, nil
	}
	return c.prev(c.cur)
}

func (c *etcdCursor) Seek(seek []byte) ([]byte, []byte) {
	c.page, c.pageEnd = nil, false
	return c.next(c.b.keys+string(seek), false)
}

func (c *etcdCursor) Delete() error {
	if c.cur == "" {
		return errors.New("controlplane: cursor on no key")
	}
	return c.b.tx.put(c.cur, nil)
}

// migrateBatch is how many records one transaction of a migration writes.
const migrateBatch = 500

// MigrateToEtcd copies the store src (a bbolt file, its server stopped)
// into an empty prefix of an etcd cluster, a batch of records per
// transaction, the meta bucket (the schema) last: until it is there, a
// half-copied prefix is refused by OpenEtcd as not a store, and a new
// migration into it by this function. progress, if set, is told of each
// bucket copied and its count. It returns the records copied.
func MigrateToEtcd(src *Store, o EtcdOptions, progress func(bucket string, n int)) (int, error) {
	dst, err := OpenEtcdRaw(o)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), dst.timeout)
	resp, err := dst.cli.Get(ctx, dst.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return 0, fmt.Errorf("etcd: %w", err)
	}
	if resp.Count > 0 {
		return 0, fmt.Errorf("etcd: %s already holds %d keys: migrate into an empty prefix", dst.prefix, resp.Count)
	}
	total := 0
	var names [][]byte
	err = src.db.View(func(tx kvTx) error {
		return tx.ForEachBucket(func(name []byte, _ kvBucket) error {
			names = append(names, slices.Clone(name))
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	// The meta bucket last.
	slices.SortStableFunc(names, func(a, b []byte) int {
		return cmpBool(bytes.Equal(a, bucketMeta), bytes.Equal(b, bucketMeta))
	})
	for _, name := range names {
		n, err := migrateBucket(src.db, dst, [][]byte{name})
		if err != nil {
			return total, fmt.Errorf("bucket %s: %w", name, err)
		}
		total += n
		if progress != nil {
			progress(string(name), n)
		}
	}
	return total, nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// migrateBucket copies one bucket (its nested buckets too) in batches.
func migrateBucket(src kv, dst *etcdKV, path [][]byte) (int, error) {
	open := func(tx kvTx) kvBucket {
		b := tx.Bucket(path[0])
		for _, n := range path[1:] {
			if b == nil {
				return nil
			}
			b = b.Bucket(n)
		}
		return b
	}
	create := func(tx kvTx) (kvBucket, error) {
		b, err := tx.CreateBucketIfNotExists(path[0])
		for _, n := range path[1:] {
			if err != nil {
				return nil, err
			}
			b, err = b.CreateBucketIfNotExists(n)
		}
		return b, err
	}
	var nested [][]byte
	var batch [][2][]byte
	var seq uint64
	flush := func(last bool) error {
		err := dst.Update(func(tx kvTx) error {
			b, err := create(tx)
			if err != nil {
				return err
			}
			for _, kv := range batch {
				if err := b.Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
			if last && seq > 0 {
				return setSequence(b, seq)
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	n := 0
	err := src.View(func(tx kvTx) error {
		b := open(tx)
		if b == nil {
			return nil
		}
		seq, _ = sequenceOf(b)
		err := b.ForEach(func(k, v []byte) error {
			if v == nil && b.Bucket(k) != nil {
				nested = append(nested, slices.Clone(k))
				return nil
			}
			batch = append(batch, [2][]byte{slices.Clone(k), slices.Clone(v)})
			n++
			if len(batch) == migrateBatch {
				return flush(false)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return flush(true)
	})
	if err != nil {
		return n, err
	}
	for _, name := range nested {
		m, err := migrateBucket(src, dst, append(slices.Clone(path), name))
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// OpenEtcdRaw connects to the cluster without opening a store there.
func OpenEtcdRaw(o EtcdOptions) (*etcdKV, error) {
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
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return &etcdKV{cli: cli, prefix: o.Prefix, timeout: o.Timeout,
		where: "etcd " + strings.Join(o.Endpoints, ",") + " " + o.Prefix}, nil
}
