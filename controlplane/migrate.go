package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// migrateBatch is how many records one transaction of a migration writes.
const migrateBatch = 500

// MigrateToEtcd copies the store src (a bbolt file, its server stopped)
// into an empty prefix of an etcd cluster, a batch of records per
// transaction, the meta bucket (the schema) last: until it is there, a
// half-copied prefix is refused by OpenEtcd as not a store, and a new
// migration into it by this function. progress, if set, is told of each
// bucket copied and its count. It returns the records copied.
func MigrateToEtcd(src *Store, o EtcdOptions, progress func(bucket string, n int)) (int, error) {
	dst, err := openEtcdKV(o)
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
				return b.SetSequence(seq)
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
		seq = b.Sequence()
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
	if n := src.Sequence(); n > 0 {
		return dst.SetSequence(n)
	}
	return nil
}
