package controlplane

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"slices"
	"time"
)

// What a cluster's nodes leave each other when a conference changes node
// (docs/CLUSTER.md, failover). The node serving a conference says so in
// the store (which process: a node started again is another process), and
// each process records every few seconds that it is alive. A node that
// takes a conference over from a process that did not hand it over (it
// was killed, or lost etcd) closes the bridges' attendance intervals that
// process left open, at its last sign of life, as drops: the gap shows.
// A node handing a conference over closes them itself, as "moved".
//
// The resume token of each bridge's place is kept too (as a hash): a
// terminal that rejoins the new node with it is taken as coming back, not
// as a stranger.

var bucketCluster = []byte("cluster")

// EndMoved: the conference moved to another node of the cluster (a drain
// or a graceful stop); the bridge followed it. Not a drop.
const EndMoved = "moved"

// servedRecord says which process serves a conference.
type servedRecord struct {
	Process string    `json:"process"`
	Since   time.Time `json:"since"`
}

func servedKey(conference string) string { return "served/" + conference }
func aliveKey(process string) string     { return "alive/" + process }
func resumeKey(conference, bridge string) string {
	return "resume/" + conference + "\x00" + bridge
}

// HeartbeatProcess records that the process (a node's name and start) is
// alive now.
func (s *Store) HeartbeatProcess(process string) error {
	now := s.now().UTC()
	return s.db.Update(func(tx kvTx) error {
		return tx.Bucket(bucketCluster).Put([]byte(aliveKey(process)), []byte(now.Format(time.RFC3339Nano)))
	})
}

// TakeOver records that process serves the conference from now on. If
// another process served it and left intervals open (it did not hand the
// conference over), they end at that process's last heartbeat, dropped.
// It returns how many it closed.
func (s *Store) TakeOver(conference, process string) (int, error) {
	now := s.now().UTC()
	closed := 0
	err := s.db.Update(func(tx kvTx) error {
		closed = 0
		cb := tx.Bucket(bucketCluster)
		var prev servedRecord
		if v := cb.Get([]byte(servedKey(conference))); v != nil {
			_ = jsonUnmarshal(v, &prev)
		}
		if prev.Process != process {
			at := now
			if v := cb.Get([]byte(aliveKey(prev.Process))); prev.Process != "" && v != nil {
				if t, err := time.Parse(time.RFC3339Nano, string(v)); err == nil && t.Before(now) {
					at = t
				}
			}
			var err error
			if closed, err = closeOpen(tx.Bucket(bucketAttendance), attendancePrefix(conference), at, EndDropped); err != nil {
				return err
			}
		}
		return putRaw(cb, []byte(servedKey(conference)), servedRecord{Process: process, Since: now})
	})
	return closed, err
}

// HandOver closes the conference's open intervals now, as moved: the
// process serving it gives it to another node, and its bridges follow.
func (s *Store) HandOver(conference string) (int, error) {
	now := s.now().UTC()
	n := 0
	err := s.db.Update(func(tx kvTx) error {
		var err error
		n, err = closeOpen(tx.Bucket(bucketAttendance), attendancePrefix(conference), now, EndMoved)
		return err
	})
	return n, err
}

// closeOpen ends every open interval whose key starts with prefix (nil:
// all of them) at at (or its own start, if later), with cause.
func closeOpen(b kvBucket, prefix []byte, at time.Time, cause string) (int, error) {
	type fix struct {
		k   []byte
		rec intervalRecord
	}
	var fixes []fix
	c := b.Cursor()
	var k, v []byte
	if prefix == nil {
		k, v = c.First()
	} else {
		k, v = c.Seek(prefix)
	}
	for ; k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
		var rec intervalRecord
		if err := jsonUnmarshal(v, &rec); err != nil {
			return 0, err
		}
		if rec.Leave.IsZero() {
			rec.Leave, rec.Cause = at, cause
			if rec.Leave.Before(rec.Join) {
				rec.Leave = rec.Join
			}
			fixes = append(fixes, fix{slices.Clone(k), rec})
		}
	}
	for _, f := range fixes {
		if err := putRaw(b, f.k, f.rec); err != nil {
			return 0, err
		}
	}
	return len(fixes), nil
}

// SetResume keeps the hash of the resume token of the bridge's place in
// the conference.
func (s *Store) SetResume(conference, bridge, token string) error {
	sum := sha256.Sum256([]byte(token))
	return s.db.Update(func(tx kvTx) error {
		return tx.Bucket(bucketCluster).Put([]byte(resumeKey(conference, bridge)), sum[:])
	})
}

// ErrResumeUnknown: no place of that bridge has that resume token.
var ErrResumeUnknown = errors.New("controlplane: resume token not known")

// CheckResume says whether token is the resume token of the bridge's last
// place in the conference.
func (s *Store) CheckResume(conference, bridge, token string) error {
	sum := sha256.Sum256([]byte(token))
	ok := false
	err := s.db.View(func(tx kvTx) error {
		v := tx.Bucket(bucketCluster).Get([]byte(resumeKey(conference, bridge)))
		ok = v != nil && subtle.ConstantTimeCompare(v, sum[:]) == 1
		return nil
	})
	if err == nil && !ok {
		err = ErrResumeUnknown
	}
	return err
}
