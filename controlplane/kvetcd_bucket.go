package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

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
	n := b.Sequence() + 1
	return n, b.SetSequence(n)
}

// KeyCount counts the bucket's own keys as of the transaction's revision
// (what the transaction itself wrote is not counted: the events' pruning,
// its one user, only wants an estimate).
func (b *etcdBucket) KeyCount() int {
	resp := b.tx.read(b.keys, clientv3.WithRange(b.end()), clientv3.WithCountOnly())
	if resp == nil {
		return 0
	}
	return int(resp.Count)
}

func (b *etcdBucket) Bucket(name []byte) kvBucket {
	v := b.tx.get(b.keys + string(name))
	if b.tx.err != nil {
		// etcd did not answer: an empty bucket, not a missing one (the
		// callers' code takes a top-level bucket for granted), and the
		// transaction ends with the error.
		return b.tx.bucket(append(slices.Clone(b.path), slices.Clone(name)))
	}
	if !bytes.Equal(v, bucketMark) {
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

// Sequence is the bucket's sequence as it stands.
func (b *etcdBucket) Sequence() uint64 {
	var n uint64
	if v := b.tx.get(b.seq); v != nil {
		_, _ = fmt.Sscan(string(v), &n)
	}
	return n
}

// SetSequence sets it (a migration carries it over).
func (b *etcdBucket) SetSequence(n uint64) error { return b.tx.put(b.seq, []byte(fmt.Sprint(n))) }

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
	start, end := lo, c.b.end()
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
	// What the move saw of the cluster: no key from start up to the one
	// found (that one included), or none to the bucket's end.
	if found {
		c.b.tx.observed(start, string(remote[0])+"\x00")
	} else {
		c.b.tx.observed(start, end)
	}
	// The transaction's own next key.
	var local string
	for key, w := range c.b.tx.writes {
		if w != nil && key >= lo && key < end && (local == "" || key < local) {
			local = key
		}
	}
	return c.land(remote, found, local, func(a, b string) bool { return a <= b })
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
	if found { // the key found, and none after it before "before"
		c.b.tx.observed(string(remote[0]), before)
	} else {
		c.b.tx.observed(c.b.keys, before)
	}
	var local string
	for key, w := range c.b.tx.writes {
		if w != nil && key >= c.b.keys && key < before && key > local {
			local = key
		}
	}
	return c.land(remote, found, local, func(a, b string) bool { return a >= b })
}

// land puts the cursor on the nearer of the cluster's key (if found) and
// the transaction's own (local, if any): first says which is nearer in
// the direction of the move. A key the transaction rewrote shows its
// value.
func (c *etcdCursor) land(remote [2][]byte, found bool, local string, first func(a, b string) bool) ([]byte, []byte) {
	switch {
	case !found && local == "":
		c.cur = ""
		return nil, nil
	case local != "" && (!found || first(local, string(remote[0]))):
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
