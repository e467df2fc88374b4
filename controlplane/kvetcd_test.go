package controlplane

import (
	"testing"

	"citybridge/controlplane/etcdtest"
)

// TestEtcdWalkConflicts: a transaction that walked a bucket with a cursor
// runs again when another node wrote a key where it walked (it would have
// seen it), and not when the key lies past the last one it moved to (the
// page it read held it, but it never looked there). Before, the whole
// page's range counted as read: a conference's rooms joining at once
// after a failover overtook each other's attendance transactions, each
// room's write lying past the others' walks, and ran them again and again.
func TestEtcdWalkConflicts(t *testing.T) {
	o := EtcdOptions{Endpoints: etcdEndpoints(t), Prefix: etcdtest.Prefix("walk")}
	node1, err := OpenEtcd(o)
	if err != nil {
		t.Fatal(err)
	}
	defer node1.Close()
	node2, err := OpenEtcd(o)
	if err != nil {
		t.Fatal(err)
	}
	defer node2.Close()
	put := func(s *Store, k string) error {
		return s.db.Update(func(tx kvTx) error { return tx.Bucket(bucketAttendance).Put([]byte(k), []byte("x")) })
	}
	for _, k := range []string{"a1", "c1", "e1"} {
		if err := put(node1, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		other string // what node 2 writes while node 1's transaction is under way
		saw   string // the key node 1's walk reaches after a1 (on its last run)
		runs  int
	}{
		{other: "b1", saw: "b1", runs: 2}, // between a1 and c1: where the walk went
		{other: "d1", saw: "b1", runs: 1}, // past b1, where the walk stopped
		{other: "a0", saw: "b1", runs: 1}, // before where the walk started
	} {
		runs := 0
		err := node1.db.Update(func(tx kvTx) error {
			runs++
			b := tx.Bucket(bucketAttendance)
			cur := b.Cursor()
			if k, _ := cur.Seek([]byte("a1")); string(k) != "a1" {
				t.Fatalf("seek a1: %q", k)
			}
			k, _ := cur.Next()
			if runs == 1 {
				if err := put(node2, c.other); err != nil {
					t.Fatal(err)
				}
			} else if string(k) != c.saw {
				t.Errorf("after a1, the walk came to %q, want %q", k, c.saw)
			}
			return b.Put([]byte("z-"+c.other), []byte("y"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if runs != c.runs {
			t.Errorf("node 2 wrote %s during a walk from a1 to the next key: node 1's transaction ran %d times, want %d", c.other, runs, c.runs)
		}
	}
}
