package controlplane

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane/etcdtest"
	"citybridge/deploy"
)

// TestMigrateToEtcd: a single machine's store (the demo seeded, tokens,
// logins, attendance, events, a day of history per bridge, 1,200 audit
// entries) copied into an empty etcd prefix is the same store record for
// record, opens there, and goes on numbering where it left off; a second
// migration into the same prefix is refused, and so is opening a prefix
// whose copy stopped before its schema.
func TestMigrateToEtcd(t *testing.T) {
	t.Parallel()
	src, _ := openTemp(t)
	demo, _, err := src.SeedDemo(deploy.SampleBridges, "Giao ban")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.AddUser("chair", RoleHost, "Chủ tọa", "long-enough-1"); err != nil {
		t.Fatal(err)
	}
	if err := src.AttendanceJoin(demo.Conference.ID, "ward-001"); err != nil {
		t.Fatal(err)
	}
	if err := src.AddEvents(Event{Conference: demo.Conference.ID, Bridge: "ward-001", Kind: EventJoin}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	for i := range 12 {
		points := map[string]HistoryPoint{}
		for b := range 60 {
			points[fmt.Sprintf("ward-%03d", b+1)] = HistoryPoint{At: t0.Add(time.Duration(i) * 5 * time.Second), Score: 80}
		}
		if err := src.AddHistory(points); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1200 {
		if err := src.Audit(AuditEntry{Who: fmt.Sprintf("u%d", i), Action: "login", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	o := EtcdOptions{Endpoints: etcdEndpoints(t), Prefix: etcdtest.Prefix("migrate")}
	var buckets []string
	n, err := MigrateToEtcd(src, o, func(b string, _ int) { buckets = append(buckets, b) })
	if err != nil {
		t.Fatal(err)
	}
	if buckets[len(buckets)-1] != string(bucketMeta) {
		t.Errorf("buckets copied in the order %v: the schema must come last", buckets)
	}
	dst, err := OpenEtcd(o)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := dst.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(want, got); d != "" {
		t.Fatalf("the migrated store differs (%d records copied): %s", n, d[:min(len(d), 500)])
	}
	if _, err := dst.Admit(demo.HostToken, demo.Conference.ID); err != nil {
		t.Errorf("the demo's host link after the migration: %v", err)
	}
	c, err := dst.CreateConference(Conference{Title: "Sau", AllBridges: true})
	if err != nil || c.ID == demo.Conference.ID {
		t.Errorf("a new conference reuses an ID: %+v %v", c, err)
	}
	if err := dst.Audit(AuditEntry{Who: "next", Action: "x", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	before, _ := src.AuditLog(time.Time{}, time.Time{})
	if es, _ := dst.AuditLog(time.Time{}, time.Time{}); es[len(es)-1].Seq != before[len(before)-1].Seq+1 {
		t.Errorf("the audit log numbers on from %d, after %d", es[len(es)-1].Seq, before[len(before)-1].Seq)
	}

	if _, err := MigrateToEtcd(src, o, nil); err == nil || !strings.Contains(err.Error(), "empty prefix") {
		t.Errorf("a second migration into the same prefix: %v", err)
	}
	// A copy that stopped before the meta bucket is not a store.
	half := EtcdOptions{Endpoints: o.Endpoints, Prefix: etcdtest.Prefix("migrate-half")}
	raw, err := openEtcdKV(half)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateBucket(src.db, raw, [][]byte{bucketBridges}); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if _, err := OpenEtcd(half); err == nil {
		t.Error("a half-copied prefix was opened as a store")
	}
}
