package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"citybridge/signaling/wire"
)

// TestLinkRotation: an administrator replaces the first start's host and
// technician links. The new links work; after the old ones are revoked
// they are refused by the API and by signaling, and revoking one
// technician's link leaves another's working.
func TestLinkRotation(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	if err := ts.store.SetPassword("admin", "rotate-pass-1"); err != nil {
		t.Fatal(err)
	}
	admin := cookieClient(ts)
	call := func(c *http.Client, method, path, bearer, body string) (int, []byte) {
		t.Helper()
		return sameOrigin(t, ts, c, method, path, bearer, body)
	}
	if code, _ := call(admin, "POST", "/api/login", "", `{"name":"admin","password":"rotate-pass-1"}`); code != 200 {
		t.Fatalf("login: %d", code)
	}
	issue := func(path, body string) string {
		t.Helper()
		code, b := call(admin, "POST", path, "", body)
		var l struct{ Token, Path string }
		if err := json.Unmarshal(b, &l); code != 201 || err != nil || l.Token == "" || !strings.Contains(l.Path, "#t=") {
			t.Fatalf("POST %s: %d %s", path, code, b)
		}
		return l.Token
	}
	conf := "/api/conferences/" + ts.demo.Conference.ID
	oldHost, oldTech := ts.demo.HostToken, ts.demo.TechnicianToken
	newHost := issue(conf+"/host-links", "")
	anna := issue("/api/technician-links", `{"name":"anna"}`)
	binh := issue("/api/technician-links", `{"name":"binh"}`)
	if code, b := call(admin, "POST", "/api/technician-links", "", `{"name":"../x"}`); code != 400 {
		t.Errorf("a bad name: %d %s", code, b)
	}
	if code, _ := call(ts.client, "POST", "/api/technician-links", oldTech, `{"name":"mallory"}`); code != 403 {
		t.Errorf("a technician issuing technician links: %d", code)
	}
	for name, tok := range map[string]string{"old host": oldHost, "new host": newHost} {
		if code, _ := call(ts.client, "GET", conf, tok, ""); code != 200 {
			t.Errorf("%s link before the revocation: %d", name, code)
		}
	}

	if code, b := call(admin, "DELETE", conf+"/host-links", "", ""); code != 200 || !strings.Contains(string(b), `"revoked":2`) {
		t.Errorf("revoking the host links: %d %s", code, b)
	}
	if code, b := call(admin, "DELETE", "/api/technician-links/technician", "", ""); code != 200 || !strings.Contains(string(b), `"revoked":1`) {
		t.Errorf("revoking the first start's technician link: %d %s", code, b)
	}
	if code, b := call(admin, "DELETE", "/api/technician-links/anna", "", ""); code != 200 {
		t.Errorf("revoking anna's link: %d %s", code, b)
	}
	if code, _ := call(admin, "DELETE", "/api/technician-links/anna", "", ""); code != 404 {
		t.Errorf("revoking anna's link again: %d, want 404", code)
	}
	for name, tok := range map[string]string{"old host": oldHost, "new host": newHost, "old technician": oldTech, "anna": anna} {
		if code, _ := call(ts.client, "GET", "/api/bridges", tok, ""); code != 401 {
			t.Errorf("%s link after the revocation: %d, want 401", name, code)
		}
	}
	if code, _ := call(ts.client, "GET", "/api/links", binh, ""); code != 200 {
		t.Errorf("binh's link after anna's was revoked: %d", code)
	}
	// Signaling refuses the revoked host link too; a fresh one chairs.
	joins := func(token string) bool {
		t.Helper()
		c, _, err := wsDial(t.Context(), ts, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := wsSend(c, wire.Join{Token: token}); err != nil {
			t.Fatal(err)
		}
		m, err := wsNext(c, 5*time.Second, wire.TypeJoined, wire.TypeError)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := m.(*wire.Joined)
		return ok
	}
	if joins(oldHost) {
		t.Error("the revoked host link joined the conference")
	}
	if !joins(issue(conf+"/host-links", "")) {
		t.Error("a host link issued after the revocation could not join")
	}
}
