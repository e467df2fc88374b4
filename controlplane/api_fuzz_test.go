package controlplane

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzRoutes are the API operations that read a body, called by
// FuzzAPIBody with whatever body the fuzzer makes.
var fuzzRoutes = []struct{ method, path, contentType string }{
	{"POST", "/api/login", "application/json"},
	{"POST", "/api/conferences", "application/json"},
	{"PUT", "/api/conferences/c1", "application/json"},
	{"POST", "/api/conferences/c1/state", "application/json"},
	{"POST", "/api/bridges", "application/json"},
	{"PUT", "/api/bridges/commune-001", "application/json"},
	{"POST", "/api/bridges/import", "text/csv"},
	{"POST", "/api/users", "application/json"},
	{"PUT", "/api/users/admin/password", "application/json"},
}

// FuzzAPIBody: whatever body an administrator's page sends to an API
// operation that reads one, the answer is a success or a 4xx JSON error,
// never a panic or a 500 (an import with bad rows: 422 and its per-row
// report), and the store still reads afterwards.
func FuzzAPIBody(f *testing.F) {
	for i, seed := range []string{
		`{"name":"admin","password":"x"}`, `{"title":"Giao ban","all_bridges":true}`,
		`{"title":"T","bridges":["commune-001","nope"]}`, `{"state":"live"}`, `{"state":"ended"}`,
		`{"id":"ward-999","name":"W","kind":"ward"}`, `{"id":"commune-001","name":"C","kind":"commune","area":"a"}`,
		"id,name,kind,area,contact\nward-998,W,ward,,\n", `{"name":"tech9","role":"technician","password":"long-enough-1"}`,
		`{"password":"short"}`, `null`, `[]`, `{"title":123}`, `{"state":"scheduled"}`,
	} {
		f.Add(uint8(i%len(fuzzRoutes)), []byte(seed))
	}
	st, err := Open(filepath.Join(f.TempDir(), "citybridge.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	PasswordCost = 4
	if _, _, err := st.SeedDemo([]byte("id,name,kind,area,contact\ncommune-001,C1,commune,,\nward-001,W1,ward,,\n"), "Demo"); err != nil {
		f.Fatal(err)
	}
	us, err := st.Users()
	if err != nil || len(us) == 0 {
		f.Fatalf("no admin: %v", err)
	}
	cookie, _, err := st.NewSessionFor(us[0], SessionLifetime*1000)
	if err != nil {
		f.Fatal(err)
	}
	api := NewAPI(st, func(string) map[string]string { return nil }, discardLogger())
	mux := http.NewServeMux()
	api.Register(mux)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(r.method, "https://cb.example"+r.path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", r.contentType)
		req.Header.Set("Origin", "https://cb.example")
		req.RemoteAddr = "10.9.9.9:1000"
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusUnprocessableEntity && r.path == "/api/bridges/import" {
			// An import with bad rows answers its per-row report.
			var res ImportResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || len(res.Errors) == 0 {
				t.Fatalf("import %q: 422 with body %q, want the per-row report", body, rec.Body)
			}
			return
		}
		if rec.Code >= 400 {
			var e struct{ Code, Message string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%s %s %q: %d with body %q, want a JSON error", r.method, r.path, body, rec.Code, rec.Body)
			}
		}
		if _, err := st.Bridges(); err != nil {
			t.Fatalf("the store no longer reads: %v", err)
		}
	})
}
