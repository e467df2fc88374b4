package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"citybridge/controlplane/etcdtest"
)

// backend opens stores of one kind: a fresh one, and the same one again
// (bbolt: the file closed and opened again; etcd: another node's client on
// the same prefix, the first closed).
type backend struct {
	name   string
	fresh  func(t *testing.T) *Store
	reopen func(t *testing.T, s *Store) *Store
	// second opens another client of the same store while s stays open
	// (two nodes; bbolt, whose file one process holds, gives s itself:
	// writers in one process).
	second func(t *testing.T, s *Store) *Store
}

func backends() []backend {
	bboltPaths := map[*Store]string{}
	var mu sync.Mutex
	etcdOpts := map[*Store]EtcdOptions{}
	openEtcd := func(t *testing.T, o EtcdOptions) *Store {
		t.Helper()
		s, err := OpenEtcd(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		mu.Lock()
		etcdOpts[s] = o
		mu.Unlock()
		return s
	}
	return []backend{{
		name: "bbolt",
		fresh: func(t *testing.T) *Store {
			s, path := openTemp(t)
			mu.Lock()
			bboltPaths[s] = path
			mu.Unlock()
			return s
		},
		reopen: func(t *testing.T, s *Store) *Store {
			mu.Lock()
			path := bboltPaths[s]
			mu.Unlock()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s2.Close() })
			mu.Lock()
			bboltPaths[s2] = path
			mu.Unlock()
			return s2
		},
		second: func(_ *testing.T, s *Store) *Store { return s },
	}, {
		name: "etcd",
		fresh: func(t *testing.T) *Store {
			_ = etcdEndpoints(t)
			return openEtcd(t, EtcdOptions{Endpoints: etcdEndpoints(t), Prefix: etcdtest.Prefix("conformance")})
		},
		reopen: func(t *testing.T, s *Store) *Store {
			mu.Lock()
			o := etcdOpts[s]
			mu.Unlock()
			_ = s.Close()
			return openEtcd(t, o)
		},
		second: func(t *testing.T, s *Store) *Store {
			mu.Lock()
			o := etcdOpts[s]
			mu.Unlock()
			return openEtcd(t, o)
		},
	}}
}

// TestStoreConformance runs the store suite against bbolt and against an
// embedded 3-member etcd cluster: the same domain operations, the same
// answers, what was written there after a reopen; and, on etcd, two
// clients (two nodes) writing at once lose no update.
func TestStoreConformance(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range storeSuite {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

var storeSuite = []struct {
	name string
	run  func(t *testing.T, b backend)
}{
	{"bridges", func(t *testing.T, b backend) {
		s := b.fresh(t)
		bs := []Bridge{{ID: "ward-001", Name: "Phường 1", Kind: KindWard}, {ID: "commune-002", Name: "Xã 2", Kind: KindCommune, Area: "Bắc"}}
		if err := s.PutBridges(bs); err != nil {
			t.Fatal(err)
		}
		res, ok, err := s.ImportBridgesCSV(strings.NewReader("id,name,kind,area,contact\nward-001,Phường 1,ward,,\nward-003,Phường 3,ward,Nam,\n"), false)
		if err != nil || !ok || res.Added != 1 || res.Unchanged != 1 {
			t.Fatalf("import: %+v %v %v", res, ok, err)
		}
		if err := s.DeleteBridge("commune-002"); err != nil {
			t.Fatal(err)
		}
		s = b.reopen(t, s)
		got, err := s.Bridges()
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, br := range got {
			ids = append(ids, br.ID)
		}
		if !slices.Equal(ids, []string{"ward-001", "ward-003"}) {
			t.Errorf("bridges after reopen: %v", ids)
		}
		if _, err := s.Bridge("commune-002"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted bridge: %v", err)
		}
	}},
	{"conferences and floor", func(t *testing.T, b backend) {
		s := b.fresh(t)
		if err := s.PutBridges([]Bridge{{ID: "ward-001", Name: "P1", Kind: KindWard}}); err != nil {
			t.Fatal(err)
		}
		c1, err := s.CreateConference(Conference{Title: "Giao ban", State: StateOpen, AllBridges: true})
		if err != nil {
			t.Fatal(err)
		}
		c2, err := s.CreateConference(Conference{Title: "Hai", Bridges: []string{"ward-001"}})
		if err != nil || c1.ID == c2.ID {
			t.Fatalf("second conference: %+v %v", c2, err)
		}
		if _, err := s.SetConferenceState(c1.ID, StateLive); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetConferenceState(c1.ID, StateOpen); err == nil {
			t.Error("live → open was allowed")
		}
		live := LiveState{Holder: "ward-001", Unmuted: []string{"ward-001"}, Locked: true, Hands: []string{"ward-002"}}
		if err := s.SaveLiveState(c1.ID, live); err != nil {
			t.Fatal(err)
		}
		s = b.reopen(t, s)
		if c, err := s.Conference(c1.ID); err != nil || c.State != StateLive || c.Title != "Giao ban" {
			t.Errorf("conference after reopen: %+v %v", c, err)
		}
		if st, err := s.LiveState(c1.ID); err != nil || !st.Equal(live) {
			t.Errorf("floor after reopen: %+v %v", st, err)
		}
		if cs, _ := s.Conferences(); len(cs) != 2 {
			t.Errorf("%d conferences", len(cs))
		}
		c3, err := s.CreateConference(Conference{Title: "Ba", AllBridges: true})
		if err != nil || c3.ID == c1.ID || c3.ID == c2.ID {
			t.Errorf("an ID reused after reopen: %s", c3.ID)
		}
	}},
	{"tokens", func(t *testing.T, b backend) {
		s := b.fresh(t)
		if err := s.PutBridges([]Bridge{{ID: "ward-001", Name: "P1", Kind: KindWard}}); err != nil {
			t.Fatal(err)
		}
		room, _ := s.IssueToken(Grant{Role: RoleRoom, Bridge: "ward-001"})
		viewer, _ := s.IssueToken(Grant{Role: RoleViewer, Conference: "c1"})
		// Issued last (issuing prunes expired tokens), and given time
		// enough to be still valid when checked on a loaded machine.
		short, _ := s.IssueToken(Grant{Role: RoleTechnician, Name: "night", Expires: time.Now().Add(2 * time.Second)})
		if g, err := s.Authenticate(room); err != nil || g.Bridge != "ward-001" {
			t.Fatalf("room token: %+v %v", g, err)
		}
		if n, err := s.RevokeViewerLinks("c1"); err != nil || n != 1 {
			t.Errorf("revoke viewer links: %d %v", n, err)
		}
		if _, err := s.Authenticate(viewer); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("revoked viewer: %v", err)
		}
		ok, err := s.StillValid([]Credential{TokenCredential(room), TokenCredential(short), TokenCredential(viewer)})
		if err != nil || !slices.Equal(ok, []bool{true, true, false}) {
			t.Errorf("still valid: %v %v", ok, err)
		}
		waitFor(t, func() bool { _, err := s.Authenticate(short); return errors.Is(err, ErrTokenExpired) })
		s = b.reopen(t, s)
		if _, err := s.Authenticate(short); !errors.Is(err, ErrTokenExpired) {
			t.Errorf("expired token after reopen: %v", err)
		}
		if _, err := s.Authenticate(room); err != nil {
			t.Errorf("room token after reopen: %v", err)
		}
	}},
	{"users and sessions", func(t *testing.T, b backend) {
		s := b.fresh(t)
		u, err := s.AddUser("chair", RoleHost, "Chủ tọa", "long-enough-1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddUser("chair", RoleHost, "", "long-enough-1"); err == nil {
			t.Error("a login added twice")
		}
		cookie, _, err := s.NewSession(u)
		if err != nil {
			t.Fatal(err)
		}
		s = b.reopen(t, s)
		if g, err := s.SessionGrant(cookie); err != nil || g.User != "chair" || g.Role != RoleHost {
			t.Fatalf("session after reopen: %+v %v", g, err)
		}
		if err := s.SetPassword("chair", "another-long-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionGrant(cookie); !errors.Is(err, ErrSessionInvalid) {
			t.Errorf("a session outlived a password change: %v", err)
		}
		if _, err := s.CheckPassword("chair", "another-long-1"); err != nil {
			t.Error(err)
		}
		if err := s.SetDisabled("chair", true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CheckPassword("chair", "another-long-1"); !errors.Is(err, ErrBadLogin) {
			t.Errorf("a disabled login: %v", err)
		}
		if err := s.DeleteUser("chair"); err != nil {
			t.Fatal(err)
		}
		if us, _ := s.Users(); len(us) != 0 {
			t.Errorf("users after delete: %+v", us)
		}
	}},
	{"a login's pass", func(t *testing.T, b backend) {
		s := b.fresh(t)
		u, err := s.AddUser("chair", RoleHost, "", "long-enough-1")
		if err != nil {
			t.Fatal(err)
		}
		cookie, _, err := s.NewSession(u)
		if err != nil {
			t.Fatal(err)
		}
		pass, err := s.SessionPass(cookie)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionPass("not-a-cookie"); !errors.Is(err, ErrSessionInvalid) {
			t.Errorf("a pass for no session: %v", err)
		}
		// Another node (another client of the store) takes it.
		other := b.second(t, s)
		g, cred, err := other.PassGrant(pass)
		if err != nil || g.User != "chair" || g.Role != RoleHost {
			t.Fatalf("the pass at another node: %+v %v", g, err)
		}
		if ok, err := other.StillValid([]Credential{cred}); err != nil || !ok[0] {
			t.Errorf("the pass's credential: %v %v", ok, err)
		}
		for _, bad := range []string{"", "x", pass + "x"} {
			if _, _, err := other.PassGrant(bad); !errors.Is(err, ErrPassInvalid) {
				t.Errorf("pass %q: %v", bad, err)
			}
		}
		// Logging out ends the pass, and what it admitted.
		if err := s.EndSession(cookie); err != nil {
			t.Fatal(err)
		}
		if _, _, err := other.PassGrant(pass); !errors.Is(err, ErrPassInvalid) {
			t.Errorf("a pass outlived its login: %v", err)
		}
		if ok, err := other.StillValid([]Credential{cred}); err != nil || ok[0] {
			t.Errorf("a session admitted by a pass outlived its login: %v %v", ok, err)
		}
	}},
	{"attendance", func(t *testing.T, b backend) {
		s := b.fresh(t)
		if err := s.PutBridges([]Bridge{{ID: "ward-001", Name: "P1", Kind: KindWard}, {ID: "ward-002", Name: "P2", Kind: KindWard}}); err != nil {
			t.Fatal(err)
		}
		c, _ := s.CreateConference(Conference{Title: "A", State: StateOpen, AllBridges: true})
		if err := s.AttendanceJoin(c.ID, "ward-001"); err != nil {
			t.Fatal(err)
		}
		if err := s.AttendanceLink(c.ID, "ward-001", LinkFair); err != nil {
			t.Fatal(err)
		}
		if err := s.AttendanceLeave(c.ID, "ward-001", EndDropped, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.AttendanceJoin(c.ID, "ward-001"); err != nil {
			t.Fatal(err)
		}
		if err := s.Heartbeat(); err != nil {
			t.Fatal(err)
		}
		s = b.reopen(t, s)
		if n, err := s.RecoverOpen(); err != nil || n != 1 {
			t.Errorf("recover open intervals: %d %v", n, err)
		}
		rec, err := s.Attendance(c.ID)
		if err != nil || len(rec) != 2 {
			t.Fatalf("attendance: %+v %v", rec, err)
		}
		if got := rec[0]; got.Bridge != "ward-001" || len(got.Intervals) != 2 || got.Drops != 1 || got.Worst != LinkFair {
			t.Errorf("ward-001's record: %+v", got)
		}
		if len(rec[1].Intervals) != 0 {
			t.Errorf("ward-002 never joined: %+v", rec[1])
		}
	}},
	{"events and history", func(t *testing.T, b backend) {
		s := b.fresh(t)
		t0 := time.Now().Add(-time.Minute)
		var evs []Event
		for i := range 10 {
			evs = append(evs, Event{At: t0.Add(time.Duration(i) * time.Second), Conference: "c1", Bridge: fmt.Sprintf("ward-%03d", i%2), Kind: EventJoin})
		}
		if err := s.AddEvents(evs...); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if err := s.AddHistory(map[string]HistoryPoint{"ward-000": {At: t0.Add(time.Duration(i) * 5 * time.Second), Score: 90 - i}, "ward-001": {At: t0, Score: 50}}); err != nil {
				t.Fatal(err)
			}
		}
		s = b.reopen(t, s)
		got, err := s.Events("c1", "ward-001", time.Time{}, time.Time{}, 100)
		if err != nil || len(got) != 5 {
			t.Errorf("ward-001's events: %d %v", len(got), err)
		}
		h, err := s.History("ward-000", t0.Add(5*time.Second), t0.Add(20*time.Second))
		if err != nil || len(h) != 3 || h[0].Score != 89 {
			t.Errorf("history window: %+v %v", h, err)
		}
		if h, _ := s.History("ward-404", time.Time{}, time.Time{}); len(h) != 0 {
			t.Errorf("a bridge without history: %+v", h)
		}
	}},
	{"audit", func(t *testing.T, b backend) {
		s := b.fresh(t)
		start := time.Now()
		for i := range 300 {
			result := "ok"
			if i%3 == 0 {
				result = "bad_login"
			}
			if err := s.Audit(AuditEntry{Who: fmt.Sprintf("user%d", i), Action: "login", Result: result, Remote: "10.0.0.1"}); err != nil {
				t.Fatal(err)
			}
		}
		s = b.reopen(t, s)
		var seqs []uint64
		err := s.EachAudit(time.Time{}, time.Time{}, 250, func(e AuditEntry) bool { seqs = append(seqs, e.Seq); return true })
		if err != nil || len(seqs) != 50 || seqs[0] != 251 || seqs[49] != 300 {
			t.Errorf("entries after 250: %d (%v…) %v", len(seqs), seqs[:min(3, len(seqs))], err)
		}
		failed, err := s.FailedLogins(start.Add(-time.Second))
		if err != nil || len(failed) != 100 || failed[0].Who != "user297" {
			t.Errorf("failed logins, newest first: %d %v", len(failed), err)
		}
		if err := s.Audit(AuditEntry{Who: "after", Action: "x", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
		all, _ := s.AuditLog(time.Time{}, time.Time{})
		if len(all) != 301 || all[300].Seq != 301 {
			t.Errorf("%d entries, the last seq %d after reopen", len(all), all[len(all)-1].Seq)
		}
	}},
	{"snapshot and backup", func(t *testing.T, b backend) {
		s := b.fresh(t)
		if err := s.PutBridges([]Bridge{{ID: "ward-001", Name: "P1", Kind: KindWard}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.IssueToken(Grant{Role: RoleTechnician, Name: "day"}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddHistory(map[string]HistoryPoint{"ward-001": {Score: 80}}); err != nil {
			t.Fatal(err)
		}
		want, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := want["bridges/ward-001"]; !ok {
			t.Errorf("snapshot keys: %v", slices.Sorted(func(yield func(string) bool) {
				for k := range want {
					if !yield(k) {
						return
					}
				}
			}))
		}
		var buf bytes.Buffer
		if _, err := s.Backup(&buf); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "backup.db")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckFile(path); err != nil {
			t.Fatalf("the backup is not a store: %v", err)
		}
		restored, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer restored.Close()
		got, err := restored.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if d := diffSnapshots(want, got); d != "" {
			t.Errorf("the backup differs from the store: %s", d)
		}
	}},
	{"two nodes, no lost update", func(t *testing.T, b backend) {
		s1 := b.fresh(t)
		s2 := b.second(t, s1)
		c, err := s1.CreateConference(Conference{Title: "Race", State: StateOpen, AllBridges: true})
		if err != nil {
			t.Fatal(err)
		}
		// Both nodes append to the audit log, issue tokens, and make
		// conferences at once: every write is there, no sequence twice.
		const each = 40
		var wg sync.WaitGroup
		errs := make(chan error, 4*each)
		for _, s := range []*Store{s1, s2} {
			for w := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each / 2 {
						if err := s.Audit(AuditEntry{Who: fmt.Sprintf("w%d-%d", w, i), Action: "race", Result: "ok"}); err != nil {
							errs <- err
						}
						if _, err := s.CreateConference(Conference{Title: "x", AllBridges: true}); err != nil {
							errs <- err
						}
						if err := s.AttendanceJoin(c.ID, fmt.Sprintf("ward-%03d", w)); err != nil {
							errs <- err
						}
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		entries, _ := s2.AuditLog(time.Time{}, time.Time{})
		seen := map[uint64]bool{}
		for _, e := range entries {
			if seen[e.Seq] {
				t.Errorf("audit seq %d twice", e.Seq)
			}
			seen[e.Seq] = true
		}
		if len(entries) != 2*each {
			t.Errorf("%d audit entries from two nodes, want %d", len(entries), 2*each)
		}
		// Both nodes opened the same two bridges' intervals at once: each
		// has one (on etcd, the second transaction saw the first's
		// interval appear where it had looked, and ran again).
		for w := range 2 {
			bridge := fmt.Sprintf("ward-%03d", w)
			n := 0
			_ = s1.db.View(func(tx kvTx) error {
				prefix := bridgePrefix(c.ID, bridge)
				cur := tx.Bucket(bucketAttendance).Cursor()
				for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
					n++
				}
				return nil
			})
			if n != 1 {
				t.Errorf("%s has %d attendance intervals after joins from two nodes at once, want 1", bridge, n)
			}
		}
		cs, _ := s1.Conferences()
		ids := map[string]bool{}
		for _, c := range cs {
			ids[c.ID] = true
		}
		if len(cs) != 1+2*each || len(ids) != len(cs) {
			t.Errorf("%d conferences (%d IDs) from two nodes, want %d", len(cs), len(ids), 1+2*each)
		}
		// A read-modify-write race: both nodes move the same conference's
		// floor state from what they read; the last write wins whole,
		// never a mix, and both see it.
		var wg2 sync.WaitGroup
		for i, s := range []*Store{s1, s2} {
			wg2.Add(1)
			go func() {
				defer wg2.Done()
				for j := range 20 {
					_ = s.SaveLiveState(c.ID, LiveState{Holder: fmt.Sprintf("ward-%d", i), Hands: []string{fmt.Sprint(j)}})
				}
			}()
		}
		wg2.Wait()
		a, _ := s1.LiveState(c.ID)
		bst, _ := s2.LiveState(c.ID)
		if !a.Equal(bst) {
			t.Errorf("two nodes see two floors: %+v %+v", a, bst)
		}
	}},
}

func diffSnapshots(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "missing "+k)
		} else if w != v {
			out = append(out, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
