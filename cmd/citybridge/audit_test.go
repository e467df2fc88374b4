package main

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
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
	_ = wsSend(hostConn, wire.Control{Action: wire.ActionMuteAll})
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
