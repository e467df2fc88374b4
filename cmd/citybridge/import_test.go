package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"citybridge/controlplane"
	"citybridge/deploy"
)

// badCSV has three good rows and three bad ones (lines 3, 5 and 6).
const badCSV = `id,name,kind,area,contact
ward-900,Phường 900,ward,Khu A,
ward-901,Phường 901,district,Khu A,
ward-902,Phường 902,ward,Khu B,0123
ward-900,Phường 900 lần nữa,ward,Khu A,
Bad Id!,Xã Sai,commune,,
commune-900,Xã 900,commune,Khu C,
`

// TestBridgeImportCSV: the 116-bridge sample imports into an empty
// registry; a file with bad rows reports each by line and imports none of
// them, or with the partial flag only the good ones; importing the same
// file again changes nothing. Through the store, the command line and the
// HTTP API.
func TestBridgeImportCSV(t *testing.T) {
	t.Parallel()
	wantBad := []controlplane.RowError{
		{Line: 3, Err: `kind "district": want commune, ward, special_zone or hub`},
		{Line: 5, Err: `id "ward-900" already on line 2`},
		{Line: 6, Err: `id "Bad Id!": want 1-32 of a-z, 0-9 and -, starting with a letter or digit`},
	}
	t.Run("store", func(t *testing.T) {
		st, err := controlplane.Open(filepath.Join(t.TempDir(), "citybridge.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		res, ok, err := st.ImportBridgesCSV(bytes.NewReader(deploy.SampleBridges), false)
		if err != nil || !ok || res.Added != 116 || res.Updated != 0 || len(res.Errors) != 0 {
			t.Fatalf("sample import: %+v ok=%v err=%v, want 116 added", res, ok, err)
		}
		before, _ := st.Snapshot()
		res, ok, err = st.ImportBridgesCSV(bytes.NewReader(deploy.SampleBridges), false)
		if after, _ := st.Snapshot(); err != nil || !ok || res.Added+res.Updated != 0 || res.Unchanged != 116 || !maps.Equal(before, after) {
			t.Fatalf("re-import: %+v, store unchanged: %v, want a no-op", res, maps.Equal(before, after))
		}
		res, ok, err = st.ImportBridgesCSV(strings.NewReader(badCSV), false)
		if after, _ := st.Snapshot(); err != nil || ok || !equalRows(res.Errors, wantBad) || res.Added != 0 || !maps.Equal(before, after) {
			t.Fatalf("bad file: %+v ok=%v err=%v; want the bad rows by line and nothing imported", res, ok, err)
		}
		res, ok, err = st.ImportBridgesCSV(strings.NewReader(badCSV), true)
		if err != nil || !ok || res.Added != 3 || !equalRows(res.Errors, wantBad) {
			t.Fatalf("partial import: %+v ok=%v err=%v, want the 3 good rows", res, ok, err)
		}
		for _, id := range []string{"ward-900", "ward-902", "commune-900"} {
			if b, err := st.Bridge(id); err != nil || b.Kind == "" {
				t.Errorf("%s not imported: %v", id, err)
			}
		}
		if _, err := st.Bridge("ward-901"); err == nil {
			t.Error("the bad row ward-901 was imported")
		}
	})

	t.Run("command line", func(t *testing.T) {
		dir := t.TempDir()
		sample := filepath.Join(dir, "bridges.csv")
		bad := filepath.Join(dir, "bad.csv")
		_ = os.WriteFile(sample, deploy.SampleBridges, 0o644)
		_ = os.WriteFile(bad, []byte(badCSV), 0o644)
		data := filepath.Join(dir, "data")
		run := func(args ...string) (int, string, string) {
			var out, errOut bytes.Buffer
			code := cli(append([]string{"bridges"}, args...), func(string) string { return "" }, &out, &errOut)
			return code, out.String(), errOut.String()
		}
		if code, out, errOut := run("import", "--data", data, sample); code != 0 || !strings.Contains(out, "116 added, 0 updated, 0 unchanged") {
			t.Fatalf("import: %d %q %q", code, out, errOut)
		}
		if code, out, _ := run("import", "--data", data, sample); code != 0 || !strings.Contains(out, "0 added, 0 updated, 116 unchanged") {
			t.Fatalf("re-import: %d %q", code, out)
		}
		code, _, errOut := run("import", "--data", data, bad)
		if code != 1 || !strings.Contains(errOut, bad+":3: kind") || !strings.Contains(errOut, bad+":5: id") ||
			!strings.Contains(errOut, bad+":6: id") || !strings.Contains(errOut, "nothing imported") {
			t.Fatalf("bad file: exit %d, stderr %q", code, errOut)
		}
		if code, out, _ := run("import", "--data", data, "--partial", bad); code != 0 || !strings.Contains(out, "3 added") {
			t.Fatalf("partial: %d %q", code, out)
		}
		code, out, _ := run("export", "--data", data)
		if code != 0 || strings.Count(out, "\n") != 1+116+3 || !strings.HasPrefix(out, "id,name,kind,area,contact\n") {
			t.Fatalf("export: %d, %d lines", code, strings.Count(out, "\n"))
		}
	})

	t.Run("HTTP", func(t *testing.T) {
		ts := startTestServer(t)
		if _, err := ts.store.AddUser("boss", controlplane.RoleAdmin, "", "long-enough-1"); err != nil {
			t.Fatal(err)
		}
		us, _ := ts.store.Users()
		var cookie string
		for _, u := range us {
			if u.Name == "boss" {
				cookie, _, _ = ts.store.NewSession(u)
			}
		}
		post := func(query, body string) (int, controlplane.ImportResult) {
			req, _ := http.NewRequest("POST", ts.base+"/api/bridges/import"+query, strings.NewReader(body))
			req.Header.Set("Content-Type", "text/csv")
			req.Header.Set("Origin", ts.base)
			req.AddCookie(&http.Cookie{Name: controlplane.SessionCookie, Value: cookie})
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var res controlplane.ImportResult
			_ = json.NewDecoder(resp.Body).Decode(&res)
			return resp.StatusCode, res
		}
		// The server seeded the sample: importing it again is a no-op.
		if code, res := post("", string(deploy.SampleBridges)); code != 200 || res.Unchanged != 116 || res.Added+res.Updated != 0 {
			t.Fatalf("re-import over HTTP: %d %+v", code, res)
		}
		before, _ := ts.store.Snapshot()
		code, res := post("", badCSV)
		after, _ := ts.store.Snapshot()
		if code != http.StatusUnprocessableEntity || !equalRows(res.Errors, wantBad) || !maps.Equal(before, after) {
			t.Fatalf("bad file over HTTP: %d %+v; store unchanged: %v", code, res, maps.Equal(before, after))
		}
		if code, res := post("?partial=1", badCSV); code != 200 || res.Added != 3 {
			t.Fatalf("partial over HTTP: %d %+v", code, res)
		}
	})
}

func equalRows(a, b []controlplane.RowError) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
