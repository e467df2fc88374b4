package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/deploy"
	"citybridge/signaling/wire"
)

// TestAuditLog: a failed and a good login, a change by an administrator's
// login, a terminal link issued with a technician's token, a floor action
// by the chair through the API and one over signaling, and reads that
// change nothing: the log holds the changes and the login attempts, with
// who, what, target, result and address, and not the reads; only an
// administrator reads it, as JSON or CSV, bounded in time.
func TestAuditLog(t *testing.T) {
	ts := startTestServer(t)
	if err := ts.store.SetPassword("admin", "audit-pass-1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	admin := cookieClient(ts)
	call := func(c *http.Client, method, path, bearer, body string) int {
		t.Helper()
		code, _ := sameOrigin(t, ts, c, method, path, bearer, body)
		return code
	}
	if code := call(admin, "POST", "/api/login", "", `{"name":"admin","password":"wrong"}`); code != 401 {
		t.Fatalf("bad login: %d", code)
	}
	if code := call(admin, "POST", "/api/login", "", `{"name":"admin","password":"audit-pass-1"}`); code != 200 {
		t.Fatalf("login: %d", code)
	}
	if code := call(admin, "POST", "/api/bridges", "", `{"id":"ward-900","name":"Phường 900","kind":"ward"}`); code != 201 {
		t.Fatalf("create bridge: %d", code)
	}
	if code := call(ts.client, "POST", "/api/bridges/ward-900/terminal-links", ts.demo.TechnicianToken, ""); code != 201 {
		t.Fatalf("terminal link: %d", code)
	}
	conf := ts.demo.Conference.ID
	if code := call(ts.client, "POST", "/api/conferences/"+conf+"/floor", ts.demo.HostToken, `{"bridge":"commune-001"}`); code != 200 {
		t.Fatalf("give floor: %d", code)
	}
	if code := call(ts.client, "GET", "/api/bridges", ts.demo.TechnicianToken, ""); code != 200 {
		t.Fatalf("read: %d", code)
	}
	if code := call(ts.client, "POST", "/api/bridges", ts.demo.TechnicianToken, `{"id":"ward-901","name":"x","kind":"ward"}`); code != 403 {
		t.Fatalf("a technician creating a bridge: %d", code)
	}
	// The chair over signaling.
	hostConn, _ := joinWith(t, ts, ts.demo.HostToken)
	_ = wsSend(hostConn, wire.Control{Action: string(controlplane.ActionMuteAll)})
	waitFor(t, 5*time.Second, "the chair's mute-all in the log", func() bool {
		es, _ := ts.store.AuditLog(time.Time{}, time.Time{})
		for _, e := range es {
			if e.Action == "control mute_all" {
				return true
			}
		}
		return false
	})

	var entries []controlplane.AuditEntry
	req, _ := http.NewRequest("GET", ts.base+"/api/audit?from="+start.Add(-time.Second).Format(time.RFC3339), nil)
	resp, err := admin.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/audit: %v %v", resp, err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&entries)
	resp.Body.Close()
	want := []struct{ who, action, target, result string }{
		{"admin", "login", "", "bad_login"},
		{"admin", "login", "", "ok"},
		{"admin", "POST /api/bridges", "/api/bridges", "ok"},
		{"technician link technician", "POST /api/bridges/{id}/terminal-links", "/api/bridges/ward-900/terminal-links", "ok"},
		{"host link " + conf, "POST /api/conferences/{id}/floor", "/api/conferences/" + conf + "/floor", "ok"},
		{"host link " + conf, "control mute_all", conf + "/", "ok"},
	}
	if len(entries) != len(want) {
		t.Errorf("%d entries, want %d (reads and refused calls are not logged): %+v", len(entries), len(want), entries)
	}
	for i, w := range want {
		if i >= len(entries) {
			break
		}
		e := entries[i]
		if e.Who != w.who || e.Action != w.action || e.Target != w.target || e.Result != w.result || e.Remote != "127.0.0.1" || e.At.Before(start.Add(-time.Second)) {
			t.Errorf("entry %d: %+v, want %+v from 127.0.0.1", i, e, w)
		}
	}
	// Only administrators read it; the time bounds and CSV work.
	if code := call(ts.client, "GET", "/api/audit", ts.demo.TechnicianToken, ""); code != 403 {
		t.Errorf("a technician reading the audit log: %d", code)
	}
	req, _ = http.NewRequest("GET", ts.base+"/api/audit?format=csv&to="+start.Add(-time.Hour).Format(time.RFC3339), nil)
	resp, err = admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || len(rows) != 1 || rows[0][0] != "seq" {
		t.Errorf("CSV before the test began: %v %v, want the header only", rows, err)
	}
	if code := call(admin, "GET", "/api/audit?from=yesterday", "", ""); code != 400 {
		t.Errorf("a bad time bound: %d", code)
	}
	// Reading the log and downloading a backup are logged; refused reads
	// are not.
	if code := call(admin, "GET", "/api/backup", "", ""); code != 200 {
		t.Fatalf("backup: %d", code)
	}
	// The entry is written once the handler returns, after the client
	// has its last byte.
	reads := map[string]int{}
	waitFor(t, 5*time.Second, "the backup in the log", func() bool {
		es, err := ts.store.AuditLog(start.Add(-time.Second), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		clear(reads)
		for _, e := range es[len(entries):] {
			if e.Who != "admin" {
				t.Errorf("a read logged as %+v", e)
			}
			reads[e.Action]++
		}
		return reads["GET /api/backup"] == 1
	})
	if reads["GET /api/audit"] != 2 || len(reads) != 2 {
		t.Errorf("reads logged: %v, want the two audit reads that succeeded and the backup", reads)
	}
}

// cookieClient is a client of ts that keeps the login cookie it is given.
func cookieClient(ts *testServer) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: ts.client.Transport, Timeout: 10 * time.Second}
}

// sameOrigin calls the API as a page of the server would (Origin set, a
// JSON body), with c's cookies and a bearer token when not "".
func sameOrigin(t *testing.T, ts *testServer, c *http.Client, method, path, bearer, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	req.Header.Set("Origin", ts.base)
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestConsoleCommandsAudited: the commands that change the store from the
// server's console (users add, passwd, remove; bridges import; backup;
// restore) write the audit log as the API does, by "console NAME" with
// the admin role, and a command that fails writes nothing. The log is
// read back from the files: the restored store's, which ends with the
// restore, and the one it replaced.
func TestConsoleCommandsAudited(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	sample := filepath.Join(dir, "bridges.csv")
	if err := os.WriteFile(sample, deploy.SampleBridges, 0o644); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "copy.db")
	noEnv := func(string) string { return "" }
	run := func(stdin string, args ...string) int {
		t.Helper()
		var out, errOut bytes.Buffer
		var code int
		switch args[0] {
		case "users":
			code = usersCommand(args[1:], noEnv, strings.NewReader(stdin), &out, &errOut)
		case "bridges":
			code = bridgesCommand(args[1:], noEnv, &out, &errOut)
		case "backup":
			code = backupCommand(args[1:], noEnv, strings.NewReader(stdin), &out, &errOut)
		case "restore":
			code = restoreCommand(args[1:], noEnv, &out, &errOut)
		}
		if strings.Contains(errOut.String(), "audit log was not written") {
			t.Errorf("%v: %s", args, errOut.String())
		}
		return code
	}
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
	}{
		{"console-pass-1\n", []string{"users", "add", "--data", data, "--role", "host", "ana"}, 0},
		{"console-pass-2\n", []string{"users", "passwd", "--data", data, "ana"}, 0},
		{"console-pass-3\n", []string{"users", "passwd", "--data", data, "nobody"}, 1},
		{"", []string{"bridges", "import", "--data", data, sample}, 0},
		{"", []string{"bridges", "import", "--data", data, filepath.Join(dir, "missing.csv")}, 1},
		{"", []string{"backup", "--data", data, backup}, 0},
		{"", []string{"users", "remove", "--data", data, "ana"}, 0},
		{"", []string{"restore", "--data", data, backup}, 0},
	} {
		if code := run(c.stdin, c.args...); code != c.code {
			t.Fatalf("%v: exit %d, want %d", c.args, code, c.code)
		}
	}

	read := func(file string) []string {
		t.Helper()
		st, err := controlplane.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		log, err := st.AuditLog(time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range log {
			if !strings.HasPrefix(e.Who, "console ") || e.Role != controlplane.RoleAdmin || e.Remote != "console" || e.Result != "ok" {
				t.Errorf("entry %+v: want by \"console NAME\", role admin, from console, ok", e)
			}
			got = append(got, e.Action+" "+filepath.Base(e.Target))
		}
		return got
	}
	restored := filepath.Join(data, "citybridge.db")
	want := []string{"users add ana", "users passwd ana", "bridges import bridges.csv", "restore copy.db"}
	if got := read(restored); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("the restored store's log: %q, want %q", got, want)
	}
	want = []string{"users add ana", "users passwd ana", "bridges import bridges.csv", "backup copy.db", "users remove ana"}
	if got := read(restored + ".before-restore"); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("the replaced store's log: %q, want %q", got, want)
	}
}
