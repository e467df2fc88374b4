package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling"

	bolt "go.etcd.io/bbolt"
)

// TestReservedBridgeIDs: the participant IDs the server gives the hub, the
// host console and viewers are refused as bridge IDs wherever one comes
// in (the API's create and update, the CSV import over HTTP and from the
// command line, the store itself, a conference's list of bridges) with a
// 400 or a row error saying the ID is reserved, and nothing in the store
// changes. A registry from before the rule keeps its bridge "hub" but it
// no longer joins, gets no terminal link, and the start warns of it.
func TestReservedBridgeIDs(t *testing.T) {
	t.Parallel()
	reserved := []string{controlplane.HubBridge.ID, controlplane.ViewerBridge.ID, signaling.HubConsole.ID,
		controlplane.ViewerIDPrefix + "abcdefghij", "hub-2", "viewer-"}
	for _, id := range reserved {
		if !controlplane.ReservedBridgeID(id) {
			t.Errorf("%q is not reserved", id)
		}
	}
	for _, id := range []string{"ward-001", "hubei-1", "viewers-hall", "commune-hub"} {
		if controlplane.ReservedBridgeID(id) {
			t.Errorf("%q is reserved", id)
		}
	}

	// A registry from before: a bridge "hub" among the others.
	data := t.TempDir()
	legacy(t, filepath.Join(data, "citybridge.db"), controlplane.Bridge{ID: "hub", Name: "Hub ward", Kind: controlplane.KindWard})
	ts := startTestServerWith(t, func(c *Config) { c.Data = data })
	if err := ts.store.SetPassword("admin", "reserved-pass-1"); err != nil {
		t.Fatal(err)
	}
	admin := cookieClient(ts)
	if code, b := sameOrigin(t, ts, admin, "POST", "/api/login", "", `{"name":"admin","password":"reserved-pass-1"}`); code != http.StatusOK {
		t.Fatalf("login: %d %s", code, b)
	}
	before, err := ts.store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	refused := func(what string, code int, body []byte) {
		t.Helper()
		var e struct{ Code, Message string }
		_ = json.Unmarshal(body, &e)
		if code != http.StatusBadRequest || !strings.Contains(e.Message, "reserved") {
			t.Errorf("%s: %d %s, want 400 saying the id is reserved", what, code, body)
		}
	}
	for _, id := range reserved[:5] {
		body, _ := json.Marshal(controlplane.Bridge{ID: id, Name: "Phường giả", Kind: controlplane.KindWard})
		code, b := sameOrigin(t, ts, admin, "POST", "/api/bridges", "", string(body))
		refused("POST /api/bridges "+id, code, b)
		code, b = sameOrigin(t, ts, admin, "PUT", "/api/bridges/"+id, "", string(body))
		refused("PUT /api/bridges/"+id, code, b)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/conferences", `{"title":"Họp","bridges":["commune-001","hub"]}`},
		{"PUT", "/api/conferences/" + ts.demo.Conference.ID, `{"title":"Họp","bridges":["viewer"]}`},
		{"PUT", "/api/conferences/" + ts.demo.Conference.ID, `{"title":"Họp","bridges":["hub-console"]}`},
	} {
		code, b := sameOrigin(t, ts, admin, c.method, c.path, "", c.body)
		refused(c.method+" "+c.path+" "+c.body, code, b)
	}
	code, b := callAs(t, ts, "POST", "/api/bridges/hub/terminal-links", ts.demo.TechnicianToken)
	refused("a terminal link for the old bridge hub", code, b)

	const file = "id,name,kind,area,contact\nward-950,Phường 950,ward,,\nhub,Hub,ward,,\nviewer-x1,Xem,commune,,\n"
	wantRows := []int{3, 4}
	code, b = sameOrigin(t, ts, admin, "POST", "/api/bridges/import", "", file)
	var res controlplane.ImportResult
	_ = json.Unmarshal(b, &res)
	if code != http.StatusUnprocessableEntity || len(res.Errors) != len(wantRows) {
		t.Errorf("import: %d %s, want 422 with lines %v", code, b, wantRows)
	}
	for i, e := range res.Errors {
		if i < len(wantRows) && (e.Line != wantRows[i] || !strings.Contains(e.Err, "reserved")) {
			t.Errorf("import row error %+v, want line %d reserved", e, wantRows[i])
		}
	}
	if err := ts.store.PutBridges([]controlplane.Bridge{{ID: "viewer", Name: "Xem", Kind: controlplane.KindWard}}); !errors.Is(err, controlplane.ErrReservedBridgeID) {
		t.Errorf("the store took a bridge viewer: %v", err)
	}
	after, _ := ts.store.Snapshot()
	if !maps.Equal(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("store changed: %s = %s (was %q)", k, v, before[k])
			}
		}
	}

	// The old bridge hub: its room link is refused, and the start said why.
	tok, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	if adm, err := ts.store.Admit(tok, ts.demo.Conference.ID); !errors.Is(err, controlplane.ErrTokenInvalid) {
		t.Errorf("a room link for the old bridge hub admitted as %+v (%v), want token_invalid", adm.Bridge, err)
	}
	if !strings.Contains(ts.logs.String(), "reserved id") || !strings.Contains(ts.logs.String(), "bridge=hub") {
		t.Errorf("no warning about the old bridge hub at the start:\n%s", ts.logs.String())
	}

	// The command line.
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "bridges.csv")
	if err := os.WriteFile(csvFile, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code = cli([]string{"bridges", "import", "--data", filepath.Join(dir, "data"), csvFile}, func(string) string { return "" }, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), csvFile+":3: bridge id \"hub\" is reserved") ||
		!strings.Contains(errOut.String(), csvFile+":4: bridge id \"viewer-x1\" is reserved") || !strings.Contains(errOut.String(), "nothing imported") {
		t.Errorf("bridges import: exit %d, stderr %q", code, errOut.String())
	}
	st, err := controlplane.Open(filepath.Join(dir, "data", "citybridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if bs, _ := st.Bridges(); len(bs) != 0 {
		t.Errorf("the command line imported %v", bs)
	}
}

// legacy writes a store holding b as a registry from before reserved IDs
// would have: straight into bbolt, past the checks.
func legacy(t *testing.T, path string, b controlplane.Bridge) {
	t.Helper()
	st, err := controlplane.Open(path) // the buckets
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, _ := json.Marshal(b)
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("bridges")).Put([]byte(b.ID), v) }); err != nil {
		t.Fatal(err)
	}
}
