// Package controlplane holds what citybridge knows about people and
// meetings: the bridge registry, conferences, access tokens, the demo seed
// and the server's metrics registry, kept in a bbolt file. It knows nothing
// of RTP.
package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// schema identifies our data files; a file without it is refused, never
// overwritten.
const schema = "citybridge/1"

var (
	bucketMeta        = []byte("meta")
	bucketBridges     = []byte("bridges")
	bucketConferences = []byte("conferences")
	bucketTokens      = []byte("tokens")
	keySchema         = []byte("schema")
	keySeeded         = []byte("seeded")
)

// Errors returned by the store.
var (
	// ErrNotFound: no record with that ID.
	ErrNotFound = errors.New("controlplane: not found")
	// ErrForeignFile: the data file exists but is not a citybridge store.
	ErrForeignFile = errors.New("controlplane: data file is not a citybridge store")
)

// Store is the control plane's persistent state in one bbolt file.
type Store struct {
	db  kv
	now func() time.Time
}

// Open opens (creating if needed) the store at path. A file that belongs to
// something else is refused with ErrForeignFile.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: boltKV{db}, now: time.Now}
	if err := s.db.Update(s.init); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(tx kvTx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEachBucket(func([]byte, kvBucket) error { empty = false; return nil })
		if !empty {
			return ErrForeignFile
		}
		var err error
		if meta, err = tx.CreateBucketIfNotExists(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchema, []byte(schema)); err != nil {
			return err
		}
	}
	if got := string(meta.Get(keySchema)); got != schema {
		return fmt.Errorf("%w (schema %q, want %q)", ErrForeignFile, got, schema)
	}
	for _, b := range [][]byte{bucketBridges, bucketConferences, bucketTokens, bucketAttendance, bucketLive, bucketUsers, bucketSessions, bucketAudit, bucketEvents, bucketHistory, bucketReadiness, bucketCluster} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file the store lives in.
func (s *Store) Path() string { return s.db.Where() }

func put(tx kvTx, bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), b)
}

func get(tx kvTx, bucket []byte, key string, v any) error {
	b := tx.Bucket(bucket).Get([]byte(key))
	if b == nil {
		return ErrNotFound
	}
	return json.Unmarshal(b, v) // Unmarshal copies: nothing outlives the transaction
}

func all[T any](tx kvTx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(_, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

func putRaw(b kvBucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, buf)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Snapshot returns every record of the store as bucket/key → value (a
// nested bucket's records as bucket/nested/key), for tests that prove a
// refused request changed nothing (and diagnostics). The heartbeat, which
// changes every few seconds by itself, is left out.
func (s *Store) Snapshot() (map[string]string, error) {
	out := map[string]string{}
	var walk func(path string, b kvBucket) error
	walk = func(path string, b kvBucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nested := b.Bucket(k); nested != nil {
					return walk(path+string(k)+"/", nested)
				}
			}
			if path == string(bucketMeta)+"/" && string(k) == string(keyAlive) {
				return nil
			}
			out[path+string(k)] = string(v)
			return nil
		})
	}
	err := s.db.View(func(tx kvTx) error {
		return tx.ForEachBucket(func(name []byte, b kvBucket) error { return walk(string(name)+"/", b) })
	})
	return out, err
}
