package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"citybridge/controlplane"
)

// callers of the API, by how they present themselves.
const (
	anon      = "anonymous"
	roomTok   = "room token"
	techTok   = "technician token"
	hostTok   = "host token"
	adminLog  = "admin login"
	hostLog   = "host login"
	techLog   = "technician login"
	revTok    = "revoked token"
	hostTok2  = "host token of another conference"
	expLog    = "expired login"
	adminPass = "admin-password-1"
)

var allCallers = []string{anon, roomTok, techTok, hostTok, hostTok2, adminLog, hostLog, techLog, revTok, expLog}

// roleOf is the OpenAPI x-roles name of a caller.
var roleOf = map[string]string{
	anon: "anonymous", roomTok: "room", techTok: "technician", hostTok: "host", hostTok2: "host",
	adminLog: "admin", hostLog: "host", techLog: "technician", revTok: "anonymous", expLog: "anonymous",
}

// docAllowed reads the "API operations" table of docs/SECURITY.md: for
// each operation ("GET /api/bridges"), the callers it allows. The table is
// the source; the tests run what it says.
func docAllowed(t *testing.T) map[string][]string {
	t.Helper()
	// anonymous, room, host, technician, admin: each cell's word, and the
	// callers it allows.
	columns := []map[string][]string{
		{"yes": {anon, revTok, expLog}, "401": nil},
		{"yes": {roomTok}, "403": nil},
		// A chair's operation names c1: the host link of c2 is refused it.
		{"yes": {hostTok, hostTok2, hostLog}, "chair": {hostTok, hostLog}, "login": {hostLog}, "own": nil, "403": nil},
		{"yes": {techTok, techLog}, "own": nil, "403": nil},
		{"yes": {adminLog}, "403": nil},
	}
	out := map[string][]string{}
	for _, cells := range securityTable(t, "### API operations", 6) {
		op := strings.Trim(cells[0], "`")
		if _, dup := out[op]; dup {
			t.Fatalf("docs/SECURITY.md lists %s twice", op)
		}
		allowed := []string{}
		for c, cell := range cells[1:] {
			callers, ok := columns[c][cell]
			if !ok {
				t.Fatalf("docs/SECURITY.md, %s: %q is not a word of the table", op, cell)
			}
			allowed = append(allowed, callers...)
		}
		out[op] = allowed
	}
	if len(out) < 20 {
		t.Fatalf("read only %d operations from docs/SECURITY.md", len(out))
	}
	return out
}

// apiOp is one endpoint of the table: who may call it, and how to make a
// call that succeeds when allowed.
type apiOp struct {
	method, path string
	want         int // status of an allowed call
	// prepare returns the concrete path and body for one call (making
	// whatever a destructive call consumes).
	prepare func(t *testing.T, ts *testServer) (path, body string)
}

var uniq atomic.Int64

func next(prefix string) string { return fmt.Sprintf("%s%d", prefix, uniq.Add(1)) }

func fixed(path, body string) func(*testing.T, *testServer) (string, string) {
	return func(*testing.T, *testServer) (string, string) { return path, body }
}

func apiTable() []apiOp {
	c := "/api/conferences/c1"
	return []apiOp{
		{"POST", "/api/login", 200, fixed("/api/login", `{"name":"admin","password":"`+adminPass+`"}`)},
		{"POST", "/api/logout", 204, fixed("/api/logout", "")},
		{"GET", "/api/me", 200, fixed("/api/me", "")},
		{"GET", "/api/openapi.json", 200, fixed("/api/openapi.json", "")},
		{"GET", "/api/conferences", 200, fixed("/api/conferences", "")},
		{"POST", "/api/conferences", 201, fixed("/api/conferences", `{"title":"Giao ban","all_bridges":true}`)},
		{"GET", "/api/conferences/{id}", 200, fixed(c, "")},
		{"PUT", "/api/conferences/{id}", 200, fixed(c, `{"title":"Hội nghị","all_bridges":true}`)},
		// c1 is open: the first allowed call makes it live, the others
		// find it live already (no change, still 200).
		{"POST", "/api/conferences/{id}/state", 200, fixed(c+"/state", `{"state":"live"}`)},
		{"GET", "/api/conferences/{id}/bridges", 200, fixed(c+"/bridges", "")},
		{"GET", "/api/conferences/{id}/floor", 200, fixed(c+"/floor", "")},
		{"POST", "/api/conferences/{id}/floor", 200, fixed(c+"/floor", `{"bridge":"commune-001"}`)},
		{"DELETE", "/api/conferences/{id}/floor", 200, fixed(c+"/floor", "")},
		{"POST", "/api/conferences/{id}/bridges/{bridge}/mute", 200, fixed(c+"/bridges/commune-001/mute", "")},
		{"DELETE", "/api/conferences/{id}/bridges/{bridge}/mute", 200, fixed(c+"/bridges/commune-001/mute", "")},
		{"POST", "/api/conferences/{id}/mute-all", 200, fixed(c+"/mute-all", "")},
		{"POST", "/api/conferences/{id}/lock", 200, fixed(c+"/lock", "")},
		{"DELETE", "/api/conferences/{id}/lock", 200, fixed(c+"/lock", "")},
		{"POST", "/api/conferences/{id}/recording", 200, fixed(c+"/recording", "")},
		{"DELETE", "/api/conferences/{id}/recording", 200, fixed(c+"/recording", "")},
		{"GET", "/api/conferences/{id}/recording", 200, fixed(c+"/recording", "")},
		// Nothing recorded (no media in this test): refused, 409, after
		// the caller's rights were checked.
		{"POST", "/api/conferences/{id}/recording/minutes", 409, fixed(c+"/recording/minutes", "")},
		// No render under way: 404, after the caller's rights were checked.
		{"DELETE", "/api/conferences/{id}/recording/minutes", 404, fixed(c+"/recording/minutes", "")},
		// c1's recording was stopped by DELETE .../recording above; each call finds a
		// recorded file (recordings_access_test.go), each allowed delete
		// removes one.
		{"GET", "/api/conferences/{id}/recordings", 200, fixed(c+"/recordings", "")},
		{"GET", "/api/conferences/{id}/recordings/{file}", 200, func(t *testing.T, ts *testServer) (string, string) {
			return c + "/recordings/" + fakeRecording(t, ts, "c1").File, ""
		}},
		{"DELETE", "/api/conferences/{id}/recordings", 200, func(t *testing.T, ts *testServer) (string, string) {
			fakeRecording(t, ts, "c1")
			return c + "/recordings", ""
		}},
		{"DELETE", "/api/conferences/{id}/hands/{bridge}", 200, fixed(c+"/hands/commune-001", "")},
		{"GET", "/api/conferences/{id}/attendance", 200, fixed(c+"/attendance", "")},
		{"PUT", "/api/conferences/{id}/bridges/{bridge}/max-layer", 200, fixed(c+"/bridges/commune-001/max-layer", `{"layer":"h"}`)},
		{"GET", "/api/bridges", 200, fixed("/api/bridges", "")},
		{"POST", "/api/bridges", 201, func(*testing.T, *testServer) (string, string) {
			return "/api/bridges", `{"id":"` + next("new-") + `","name":"Xã Mới","kind":"commune"}`
		}},
		{"GET", "/api/bridges.csv", 200, fixed("/api/bridges.csv", "")},
		{"POST", "/api/bridges/import", 200, func(*testing.T, *testServer) (string, string) {
			return "/api/bridges/import", "id,name,kind,area,contact\n" + next("imp-") + ",Xã Nhập,commune,,\n"
		}},
		{"PUT", "/api/bridges/{id}", 200, fixed("/api/bridges/commune-002", `{"id":"commune-002","name":"Xã Hai","kind":"commune"}`)},
		{"DELETE", "/api/bridges/{id}", 204, func(t *testing.T, ts *testServer) (string, string) {
			id := next("gone-")
			if err := ts.store.PutBridges([]controlplane.Bridge{{ID: id, Name: "Tạm", Kind: controlplane.KindWard}}); err != nil {
				t.Fatal(err)
			}
			return "/api/bridges/" + id, ""
		}},
		{"POST", "/api/bridges/{id}/terminal-links", 201, fixed("/api/bridges/commune-003/terminal-links", "")},
		{"DELETE", "/api/bridges/{id}/terminal-links", 200, fixed("/api/bridges/commune-004/terminal-links", "")},
		{"GET", "/api/users", 200, fixed("/api/users", "")},
		{"POST", "/api/users", 201, func(*testing.T, *testServer) (string, string) {
			return "/api/users", `{"name":"` + next("tech") + `","role":"technician","password":"long-enough-1"}`
		}},
		{"DELETE", "/api/users/{name}", 204, func(t *testing.T, ts *testServer) (string, string) {
			name := next("leaving")
			if _, err := ts.store.AddUser(name, controlplane.RoleTechnician, "", "long-enough-1"); err != nil {
				t.Fatal(err)
			}
			return "/api/users/" + name, ""
		}},
		{"PUT", "/api/users/{name}/password", 204, fixed("/api/users/someone/password", `{"password":"another-long-1"}`)},
		{"GET", "/api/backup", 200, fixed("/api/backup", "")},
		{"GET", "/api/audit", 200, fixed("/api/audit", "")},
		{"GET", "/api/links", 200, fixed("/api/links", "")},
		{"GET", "/api/bridges/{id}/history", 200, fixed("/api/bridges/commune-001/history", "")},
		{"GET", "/api/events", 200, fixed("/api/events?format=csv", "")},
		{"GET", "/api/alerts", 200, fixed("/api/alerts?recent=1", "")},
		{"GET", "/api/nodes", 200, fixed("/api/nodes", "")},
		// Nobody is joined: an allowed action reaches the media side, which
		// answers 409 not_joined.
		{"POST", "/api/conferences/{id}/bridges/{bridge}/actions/{action}", 409, fixed(c+"/bridges/commune-001/actions/keyframe", "")},
		// Each allowed start checks a conference of its own (a second
		// start on one conference while its check runs answers 409).
		{"POST", "/api/conferences/{id}/readiness", 202, func(t *testing.T, ts *testServer) (string, string) {
			conf, err := ts.store.CreateConference(controlplane.Conference{Title: next("readiness "), Bridges: []string{"commune-001"}})
			if err != nil {
				t.Fatal(err)
			}
			return "/api/conferences/" + conf.ID + "/readiness", ""
		}},
		// No check has run on c1: an allowed caller is told so
		// (TestReadinessReport reads a finished report).
		{"GET", "/api/conferences/{id}/readiness", 404, fixed(c+"/readiness", "")},
		{"POST", "/api/conferences/{id}/viewer-links", 201, fixed(c+"/viewer-links", "")},
		{"DELETE", "/api/conferences/{id}/viewer-links", 200, fixed(c+"/viewer-links", "")},
		{"POST", "/api/conferences/{id}/host-links", 201, fixed(c+"/host-links", "")},
		// Revoking the callers' own host link would refuse every later
		// row: each allowed call revokes a conference of its own.
		{"DELETE", "/api/conferences/{id}/host-links", 200, func(t *testing.T, ts *testServer) (string, string) {
			conf, err := ts.store.CreateConference(controlplane.Conference{Title: next("rotated "), Bridges: []string{"commune-001"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleHost, Conference: conf.ID}); err != nil {
				t.Fatal(err)
			}
			return "/api/conferences/" + conf.ID + "/host-links", ""
		}},
		{"POST", "/api/technician-links", 201, func(*testing.T, *testServer) (string, string) {
			return "/api/technician-links", `{"name":"` + next("tech-") + `"}`
		}},
		{"DELETE", "/api/technician-links/{name}", 200, func(t *testing.T, ts *testServer) (string, string) {
			name := next("leaver-")
			if _, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleTechnician, Name: name}); err != nil {
				t.Fatal(err)
			}
			return "/api/technician-links/" + name, ""
		}},
	}
}

// TestAPIAuthorizationMatrix: every endpoint × every kind of caller
// (anonymous, a room terminal's link, a technician's link, the host's
// link, and logins of an administrator, a host and a technician). Allowed
// calls succeed; the others get 401 (anonymous) or 403 and leave the store
// exactly as it was. The table must cover every operation /api/openapi.json
// documents, with the same roles, and nothing else.
func TestAPIAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	runAuthzMatrix(t)
}

// runAuthzMatrix calls every operation of docs/SECURITY.md's table as
// every caller (the allowed ones from the table), checks refusals change
// nothing, then checks the table against openapi.json.
func runAuthzMatrix(t *testing.T) {
	ts := startTestServer(t)
	st := ts.store
	credential, call := authzCallers(t, ts)

	table := apiTable()
	doc := docAllowed(t)
	seen := map[string]bool{}
	for _, op := range table {
		key := op.method + " " + op.path
		if _, ok := doc[key]; !ok {
			t.Fatalf("%s is not in docs/SECURITY.md's table", key)
		}
		seen[key] = true
	}
	for key := range doc {
		if !seen[key] {
			t.Errorf("docs/SECURITY.md lists %s, which the test does not know how to call", key)
		}
	}
	for _, op := range table {
		for _, caller := range allCallers {
			allowed := slices.Contains(doc[op.method+" "+op.path], caller)
			t.Run(op.method+" "+op.path+" as "+caller, func(t *testing.T) {
				path, body := op.prepare(t, ts)
				cred := credential(t, caller)
				before, err := st.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				code, answer := call(t, op.method, path, body, cred, ts.base)
				if allowed {
					if code != op.want {
						t.Fatalf("allowed call: %d %s, want %d", code, answer, op.want)
					}
					return
				}
				want := http.StatusForbidden
				if caller == anon || caller == revTok || caller == expLog {
					want = http.StatusUnauthorized
				}
				if code != want {
					t.Fatalf("refused call: %d %s, want %d", code, answer, want)
				}
				var e struct{ Code, Message string }
				if json.Unmarshal([]byte(answer), &e) != nil || e.Code == "" || e.Message == "" {
					t.Errorf("error body %q is not {code, message}", answer)
				}
				after, err := st.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(before, after) {
					t.Errorf("a refused call changed the store: %s", diffKeys(before, after))
				}
			})
		}
	}

	// A login cookie on a changing request from another site's page.
	t.Run("cross-site request with an admin's cookie", func(t *testing.T) {
		cred := credential(t, adminLog)
		before, _ := st.Snapshot()
		code, answer := call(t, "POST", "/api/bridges", `{"id":"csrf-1","name":"X","kind":"ward"}`, cred, "https://evil.example")
		after, _ := st.Snapshot()
		if code != http.StatusForbidden || !strings.Contains(answer, "csrf") || !maps.Equal(before, after) {
			t.Errorf("cross-site POST: %d %s; store changed: %v", code, answer, !maps.Equal(before, after))
		}
	})

	// The "own" rule: a login changes its own password, with its current
	// one; without it, or with a wrong one, nothing changes. A link has no
	// password of its own.
	t.Run("own password", func(t *testing.T) {
		for _, who := range []string{"boss", "chair", "fixer"} {
			path := "/api/users/" + who + "/password"
			for _, tc := range []struct {
				body string
				want int
			}{
				{`{"password":"another-long-1"}`, http.StatusBadRequest},
				{`{"password":"another-long-1","current":"not-the-one-1"}`, http.StatusUnauthorized},
				{`{"password":"another-long-1","current":"long-enough-1"}`, http.StatusNoContent},
			} {
				before, _ := st.Snapshot()
				code, answer := call(t, "PUT", path, tc.body, credential(t, map[string]string{"boss": adminLog, "chair": hostLog, "fixer": techLog}[who]), ts.base)
				if code != tc.want {
					t.Errorf("%s changing their own password with %s: %d %s, want %d", who, tc.body, code, answer, tc.want)
				}
				if tc.want != http.StatusNoContent {
					after, _ := st.Snapshot()
					for k := range after {
						if before[k] != after[k] && !strings.HasPrefix(k, "audit/") && !strings.HasPrefix(k, "sessions/") {
							t.Errorf("%s: a refused change of password changed %s", who, k)
						}
					}
				}
			}
			if _, err := st.CheckPassword(who, "another-long-1"); err != nil {
				t.Errorf("%s's password was not changed: %v", who, err)
			}
			if err := st.SetPassword(who, "long-enough-1"); err != nil {
				t.Fatal(err)
			}
		}
		for _, caller := range []string{hostTok, techTok} {
			if code, answer := call(t, "PUT", "/api/users/chair/password", `{"password":"another-long-1","current":"long-enough-1"}`, credential(t, caller), ts.base); code != http.StatusForbidden {
				t.Errorf("a %s changing a login's password: %d %s, want 403", caller, code, answer)
			}
		}
	})

	// The table and the OpenAPI document describe the same API.
	code, specText := call(t, "GET", "/api/openapi.json", "", func(*http.Request) {}, ts.base)
	if code != 200 {
		t.Fatalf("openapi.json: %d", code)
	}
	var spec struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(specText), &spec); err != nil || !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Fatalf("openapi.json is not an OpenAPI 3 document: %v", err)
	}
	documented := map[string][]string{}
	for path, methods := range spec.Paths {
		for method, raw := range methods {
			var op struct {
				Roles []string `json:"x-roles"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			documented[strings.ToUpper(method)+" "+path] = op.Roles
		}
	}
	for _, op := range table {
		key := op.method + " " + op.path
		roles, ok := documented[key]
		if !ok {
			t.Errorf("%s is in the table but not in openapi.json", key)
			continue
		}
		delete(documented, key)
		want := map[string]bool{}
		for _, c := range doc[key] {
			want[roleOf[c]] = true
		}
		got := map[string]bool{}
		for _, r := range roles {
			got[r] = true
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: openapi.json says roles %v, the table allows %v", key, sortedKeys(got), sortedKeys(want))
		}
	}
	for key := range documented {
		t.Errorf("%s is documented in openapi.json but not in the table", key)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := slices.Collect(maps.Keys(m))
	sort.Strings(out)
	return out
}

func diffKeys(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "removed "+k)
		} else if w != v {
			out = append(out, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// TestAuthzTable: docs/SECURITY.md's "API operations" table is the rule.
// Every operation is called as every caller it names, plus a revoked
// token, an administrator's expired session and the host link of another
// conference (runAuthzMatrix), and each login changes its own password.
// The signaling tables are TestSignalingRoleTable's.
func TestAuthzTable(t *testing.T) {
	t.Parallel()
	runAuthzMatrix(t)
}
