package controlplane

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// The store keeps its records in buckets of ordered keys, read and changed
// in transactions: bbolt's model. kv is that model as an interface, so
// that the domain code (bridges, tokens, users, conferences, attendance,
// events, audit) is written once and runs on one bbolt file (one machine,
// the default) or on an etcd cluster (several nodes sharing their state).
type kv interface {
	// View runs fn in a read-only transaction: one consistent view.
	View(fn func(kvTx) error) error
	// Update runs fn in a read-write transaction, committed when fn
	// returns nil. fn may run more than once (etcd runs it again when
	// another node's write overtook what it read): it must start from
	// nothing each time, setting rather than appending to what it shares
	// with its caller.
	Update(fn func(kvTx) error) error
	// Backup writes a bbolt file holding every record.
	Backup(w io.Writer) (int64, error)
	// Where says where the records are (a file's path, etcd's endpoints).
	Where() string
	Close() error
}

// kvTx is one transaction.
type kvTx interface {
	// Bucket returns a top-level bucket, nil if it does not exist.
	Bucket(name []byte) kvBucket
	// CreateBucketIfNotExists returns a top-level bucket, made if needed.
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	// ForEachBucket calls fn with each top-level bucket, in name order.
	ForEachBucket(fn func(name []byte, b kvBucket) error) error
}

// kvBucket is a bucket: ordered keys and values, and nested buckets.
// Slices it returns live only until the transaction ends.
type kvBucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	// ForEach calls fn with each key in order; a nested bucket's value is
	// nil.
	ForEach(fn func(k, v []byte) error) error
	// NextSequence returns the bucket's next sequence number (1, 2, ...);
	// Sequence the last one given, SetSequence sets it (a copy of a store
	// carries it over).
	NextSequence() (uint64, error)
	Sequence() uint64
	SetSequence(n uint64) error
	// KeyCount counts the keys (nested buckets' keys included).
	KeyCount() int
	Cursor() kvCursor
	// Bucket returns a nested bucket, nil if it does not exist.
	Bucket(name []byte) kvBucket
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
}

// kvCursor walks a bucket's keys in order. Each move returns nil keys past
// either end.
type kvCursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
	// Seek moves to the first key at or after seek.
	Seek(seek []byte) (k, v []byte)
	// Delete removes the key the cursor is on.
	Delete() error
}

// boltKV is the store on one bbolt file.
type boltKV struct{ db *bolt.DB }

func (b boltKV) View(fn func(kvTx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltKV) Update(fn func(kvTx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b boltKV) Backup(w io.Writer) (n int64, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func (b boltKV) Where() string { return b.db.Path() }
func (b boltKV) Close() error  { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) kvBucket { return wrapBolt(t.tx.Bucket(name)) }

func (t boltTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	b, err := t.tx.CreateBucketIfNotExists(name)
	return wrapBolt(b), err
}

func (t boltTx) ForEachBucket(fn func([]byte, kvBucket) error) error {
	return t.tx.ForEach(func(name []byte, b *bolt.Bucket) error { return fn(name, boltBucket{b}) })
}

// wrapBolt keeps a missing bucket nil (an interface holding a nil pointer
// would not be).
func wrapBolt(b *bolt.Bucket) kvBucket {
	if b == nil {
		return nil
	}
	return boltBucket{b}
}

type boltBucket struct{ b *bolt.Bucket }

func (b boltBucket) Get(k []byte) []byte                      { return b.b.Get(k) }
func (b boltBucket) Put(k, v []byte) error                    { return b.b.Put(k, v) }
func (b boltBucket) Delete(k []byte) error                    { return b.b.Delete(k) }
func (b boltBucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }
func (b boltBucket) Sequence() uint64                         { return b.b.Sequence() }
func (b boltBucket) SetSequence(n uint64) error               { return b.b.SetSequence(n) }
func (b boltBucket) NextSequence() (uint64, error)            { return b.b.NextSequence() }
func (b boltBucket) Cursor() kvCursor                         { return b.b.Cursor() }
func (b boltBucket) KeyCount() int                            { return b.b.Stats().KeyN }
func (b boltBucket) Bucket(name []byte) kvBucket              { return wrapBolt(b.b.Bucket(name)) }

func (b boltBucket) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	nb, err := b.b.CreateBucketIfNotExists(name)
	return wrapBolt(nb), err
}
