package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"
)

// issueLink posts a link's issue with body as the caller of call and
// returns the status and the answer's token and expiry.
func issueLink(t *testing.T, ts *testServer, path, token, body string) (int, string, time.Time) {
	t.Helper()
	var ct string
	if body != "" {
		ct = "application/json"
	}
	resp, b := request(t, ts, http.MethodPost, path, token, ct, body)
	var link struct {
		Token   string
		Expires time.Time
	}
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(b, &link); err != nil {
			t.Fatalf("%s: %v in %s", path, err, b)
		}
	}
	return resp.StatusCode, link.Token, link.Expires
}

// TestLinkExpiry: a link may be issued with an expiry (a time or a
// duration); a terminal link without one stays valid until revoked, a
// viewer link lasts 24 h unless told otherwise. When its time is up the
// link stops working everywhere at once: the terminal's joined session
// ends (bye "revoked") within a second, it cannot join again, an API call
// with an expired technician link gets 401. Bad expiries are refused and
// change nothing.
func TestLinkExpiry(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	conf := ts.demo.Conference.ID
	tech, host := ts.demo.TechnicianToken, ts.demo.HostToken

	code, tok, roomExp := issueLink(t, ts, "/api/bridges/ward-005/terminal-links", tech, `{"expires":"2s"}`)
	if code != 201 || time.Until(roomExp) > 2*time.Second || time.Until(roomExp) < time.Second {
		t.Fatalf("a terminal link for 2 s: %d, expires %v", code, roomExp)
	}
	room, _ := joinWith(t, ts, tok)
	if code, _, none := issueLink(t, ts, "/api/bridges/ward-006/terminal-links", tech, ""); code != 201 || !none.IsZero() {
		t.Errorf("a terminal link without an expiry: %d, expires %v; want none", code, none)
	}
	code, _, exp := issueLink(t, ts, "/api/conferences/"+conf+"/viewer-links", host, "")
	if d := time.Until(exp); code != 201 || d < 24*time.Hour-time.Minute || d > 24*time.Hour {
		t.Errorf("a viewer link: %d, expires in %v; want 24 h", code, d)
	}
	code, _, exp = issueLink(t, ts, "/api/conferences/"+conf+"/viewer-links", host, `{"expires":"`+time.Now().Add(3*time.Hour).Format(time.RFC3339)+`"}`)
	if d := time.Until(exp); code != 201 || d < 3*time.Hour-time.Minute || d > 3*time.Hour {
		t.Errorf("a viewer link for 3 h: %d, expires in %v", code, d)
	}
	code, techTok, _ := issueLinkAsAdmin(t, ts, `{"name":"night","expires":"1s"}`)
	if code != 201 {
		t.Fatalf("a technician link for 1 s: %d", code)
	}
	if code, _ := callAs(t, ts, "GET", "/api/links", techTok); code != 200 {
		t.Errorf("the technician link before its time: %d", code)
	}

	// Bad expiries: 400, nothing issued: no token, no audit entry. (The
	// rest of the store may change meanwhile: the room's 2 s link can run
	// out during these calls on a loaded machine, and its session's end
	// writes its attendance and an event.)
	links := func(snap map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range snap {
			if strings.HasPrefix(k, "tokens/") || strings.HasPrefix(k, "audit/") {
				out[k] = v
			}
		}
		return out
	}
	before := links(settled(t, ts.store))
	for _, body := range []string{`{"expires":"yesterday"}`, `{"expires":"-1h"}`, `{"expires":"0s"}`,
		`{"expires":"2020-01-01T00:00:00Z"}`, `{"expires":"100000h"}`, `{"expires":5}`, `{"name":"x"}`, `{"expire":"1h"}`} {
		if code, _, _ := issueLink(t, ts, "/api/bridges/ward-007/terminal-links", tech, body); code != 400 {
			t.Errorf("expiry %s: %d, want 400", body, code)
		}
	}
	if d := diffKeys(before, links(settled(t, ts.store))); d != "" {
		t.Errorf("refused issues changed the store: %s", d)
	}

	// The terminal's time is up.
	m, err := wsNext(room, 5*time.Second, wire.TypeBye)
	if err != nil || m.(*wire.Bye).Reason != wire.ByeRevoked {
		t.Fatalf("the terminal when its link expired: %v %v, want bye revoked", m, err)
	}
	if late := time.Since(roomExp); late > 1500*time.Millisecond {
		t.Errorf("the terminal's session ended %v after its link expired, want within a second", late)
	}
	c, _, err := wsDial(t.Context(), ts, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = wsSend(c, wire.Join{Token: tok})
	if m, err := wsNext(c, 5*time.Second, wire.TypeError, wire.TypeJoined); err != nil || m.MessageType() != wire.TypeError || m.(*wire.Error).Code != wire.CodeTokenInvalid {
		t.Errorf("joining with the expired link: %v %v, want token_invalid", m, err)
	}
	code, body := callAs(t, ts, "GET", "/api/links", techTok)
	if code != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("the technician link after its time: %d %s, want 401 saying it expired", code, body)
	}
	// The expired tokens are gone from the store at the next issue.
	if _, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleTechnician, Name: "day"}); err != nil {
		t.Fatal(err)
	}
	snap, _ := ts.store.Snapshot()
	for k, v := range snap {
		if strings.HasPrefix(k, "tokens/") && strings.Contains(v, `"expires"`) {
			var g controlplane.Grant
			_ = json.Unmarshal([]byte(v), &g)
			if time.Now().After(g.Expires) {
				t.Errorf("an expired token is still stored: %s", v)
			}
		}
	}
}

// issueLinkAsAdmin issues a technician link as a logged-in administrator.
func issueLinkAsAdmin(t *testing.T, ts *testServer, body string) (int, string, time.Time) {
	t.Helper()
	code, b := asAdmin(t, ts, "POST", "/api/technician-links", body)
	var link struct {
		Token   string
		Expires time.Time
	}
	_ = json.Unmarshal([]byte(b), &link)
	return code, link.Token, link.Expires
}
