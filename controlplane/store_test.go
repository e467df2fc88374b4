package controlplane

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"citybridge/deploy"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "citybridge.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// TestSeedSurvivesReopen seeds a store, closes the file, opens it again and
// finds the registry, the conference and working tokens; a second seed
// does nothing.
func TestSeedSurvivesReopen(t *testing.T) {
	s, path := openTemp(t)
	demo, ok, err := s.SeedDemo(deploy.SampleBridges, "Demo")
	if err != nil || !ok {
		t.Fatalf("seed: ok=%v err=%v", ok, err)
	}
	if demo.Bridges != 116 {
		t.Fatalf("seeded %d bridges, want 116", demo.Bridges)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, again, err := s2.SeedDemo(deploy.SampleBridges, "Demo"); err != nil || again {
		t.Fatalf("second seed: ok=%v err=%v, want nothing done", again, err)
	}
	bs, err := s2.Bridges()
	if err != nil || len(bs) != 116 {
		t.Fatalf("after reopen: %d bridges, err %v", len(bs), err)
	}
	kinds := map[Kind]int{}
	for _, b := range bs {
		kinds[b.Kind]++
	}
	if kinds[KindCommune] == 0 || kinds[KindWard] == 0 || kinds[KindSpecialZone] == 0 {
		t.Fatalf("sample registry kinds %v: want communes, wards and special zones", kinds)
	}
	a, err := s2.Admit(demo.HostToken, "")
	if err != nil || a.Role != RoleHost || a.Conference.ID != demo.Conference.ID {
		t.Fatalf("host token after reopen: %+v, %v", a, err)
	}
	g, err := s2.Authenticate(demo.TechnicianToken)
	if err != nil || g.Role != RoleTechnician {
		t.Fatalf("technician token after reopen: %+v, %v", g, err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), demo.HostToken) || strings.Contains(string(raw), demo.TechnicianToken) {
		t.Fatal("a token is stored in clear in the data file")
	}
}

func TestForeignFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("somebody-else"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	if _, err := Open(path); !errors.Is(err, ErrForeignFile) {
		t.Fatalf("Open(foreign) = %v, want ErrForeignFile", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("the foreign file was modified")
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk); err == nil {
		t.Fatal("Open(junk) succeeded")
	}
}

func TestAdmit(t *testing.T) {
	s, _ := openTemp(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutBridges([]Bridge{
		{ID: "ward-001", Name: "Ward 001", Kind: KindWard},
		{ID: "ward-002", Name: "Ward 002", Kind: KindWard},
		{ID: "commune-001", Name: "Commune 001", Kind: KindCommune},
	}))
	c1, err := s.CreateConference(Conference{Title: "One", State: StateOpen, Bridges: []string{"ward-001", "ward-002"}})
	must(err)
	c2, err := s.CreateConference(Conference{Title: "Two", State: StateOpen, Bridges: []string{"commune-001"}})
	must(err)
	c3, err := s.CreateConference(Conference{Title: "Later", State: StateScheduled, AllBridges: true})
	must(err)
	issue := func(g Grant) string {
		tok, err := s.IssueToken(g)
		must(err)
		return tok
	}
	host1 := issue(Grant{Role: RoleHost, Conference: c1.ID})
	host2 := issue(Grant{Role: RoleHost, Conference: c2.ID})
	ward1 := issue(Grant{Role: RoleRoom, Bridge: "ward-001"})
	commune1 := issue(Grant{Role: RoleRoom, Bridge: "commune-001"})
	tech := issue(Grant{Role: RoleTechnician})
	revoked := issue(Grant{Role: RoleRoom, Bridge: "ward-002"})
	must(s.RevokeToken(revoked))

	for _, c := range []struct {
		name, token, conf string
		err               error
		role              Role
		bridge            string
	}{
		{"host of c1", host1, c1.ID, nil, RoleHost, "hub"},
		{"host, conference implied", host1, "", nil, RoleHost, "hub"},
		{"host of c2 into c1", host2, c1.ID, ErrWrongConference, "", ""},
		{"room invited", ward1, c1.ID, nil, RoleRoom, "ward-001"},
		{"room, conference implied", ward1, "", nil, RoleRoom, "ward-001"},
		{"room not invited", commune1, c1.ID, ErrNotInvited, "", ""},
		{"room, conference not open", ward1, c3.ID, ErrConferenceClosed, "", ""},
		{"room, no such conference", ward1, "c99", ErrConferenceClosed, "", ""},
		{"no token", "", c1.ID, ErrTokenRequired, "", ""},
		{"wrong token", "nope", c1.ID, ErrTokenInvalid, "", ""},
		{"revoked token", revoked, c1.ID, ErrTokenInvalid, "", ""},
		{"technician", tech, c1.ID, ErrRoleCannotJoin, "", ""},
	} {
		a, err := s.Admit(c.token, c.conf)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
			continue
		}
		if err == nil && (a.Role != c.role || a.Bridge.ID != c.bridge) {
			t.Errorf("%s: admitted as %s/%s, want %s/%s", c.name, a.Role, a.Bridge.ID, c.role, c.bridge)
		}
	}
}

func TestParseBridgesCSV(t *testing.T) {
	in := "id,name,kind,area,contact\n" +
		"ward-001,Ward 001,ward,Ba Dinh,\n" +
		"Bad ID,Ward 002,ward,,\n" +
		"ward-003,,ward,,\n" +
		"ward-004,Ward 004,castle,,\n" +
		"ward-001,Ward 001 again,ward,,\n" +
		"ward-005,Ward 005,ward\n" +
		"zone-01,\"Special Zone 01, north\",special_zone,,+84 1\n"
	got, bad, err := ParseBridgesCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "ward-001" || got[1].Name != "Special Zone 01, north" {
		t.Fatalf("good rows %+v", got)
	}
	wantLines := []int{3, 4, 5, 6, 7}
	if len(bad) != len(wantLines) {
		t.Fatalf("bad rows %+v, want lines %v", bad, wantLines)
	}
	for i, l := range wantLines {
		if bad[i].Line != l || bad[i].Err == "" {
			t.Errorf("bad row %d: %+v, want line %d with a reason", i, bad[i], l)
		}
	}
	if _, _, err := ParseBridgesCSV(strings.NewReader("name,id\n")); err == nil {
		t.Fatal("a wrong header was accepted")
	}
}
