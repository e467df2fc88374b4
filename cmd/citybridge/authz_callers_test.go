package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
)

// authzCallers sets up every kind of caller of the authorization tests
// on ts (logins boss, chair, fixer and someone; a room link, a revoked
// link, the host link of another conference) and returns credential,
// which prepares one caller's credential (fresh for each call: a logout
// ends the session it is called with), and call, which makes one API
// call with a credential and an Origin.
func authzCallers(t *testing.T, ts *testServer) (
	credential func(t *testing.T, caller string) func(*http.Request),
	call func(t *testing.T, method, path, body string, cred func(*http.Request), origin string) (int, string),
) {
	t.Helper()
	st := ts.store
	for _, u := range []struct {
		name string
		role controlplane.Role
	}{{"boss", controlplane.RoleAdmin}, {"chair", controlplane.RoleHost}, {"fixer", controlplane.RoleTechnician}, {"someone", controlplane.RoleTechnician}} {
		if _, err := st.AddUser(u.name, u.role, "", "long-enough-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetPassword("admin", adminPass); err != nil {
		t.Fatal(err)
	}
	room, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleTechnician})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := st.CreateConference(controlplane.Conference{Title: "Elsewhere", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	host2, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleHost, Conference: c2.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(revoked); err != nil {
		t.Fatal(err)
	}
	// credential prepares one caller's credential, fresh for each call (a
	// logout ends the session it is called with).
	credential = func(t *testing.T, caller string) func(*http.Request) {
		t.Helper()
		bearer := func(tok string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
		}
		login := func(name string) func(*http.Request) {
			us, _ := st.Users()
			for _, u := range us {
				if u.Name == name {
					tok, _, err := st.NewSession(u)
					if err != nil {
						t.Fatal(err)
					}
					return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: controlplane.SessionCookie, Value: tok}) }
				}
			}
			t.Fatalf("no user %s", name)
			return nil
		}
		switch caller {
		case roomTok:
			return bearer(room)
		case techTok:
			return bearer(ts.demo.TechnicianToken)
		case hostTok:
			return bearer(ts.demo.HostToken)
		case hostTok2:
			return bearer(host2)
		case adminLog:
			return login("boss")
		case hostLog:
			return login("chair")
		case techLog:
			return login("fixer")
		case revTok:
			return bearer(revoked)
		case expLog:
			u := controlplane.User{Name: "boss", Role: controlplane.RoleAdmin}
			tok, _, err := st.NewSessionFor(u, -time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: controlplane.SessionCookie, Value: tok}) }
		}
		return func(*http.Request) {}
	}
	call = func(t *testing.T, method, path, body string, cred func(*http.Request), origin string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.base+path, strings.NewReader(body))
		if strings.HasSuffix(path, "/import") {
			req.Header.Set("Content-Type", "text/csv")
		} else if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Origin", origin)
		cred(req)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	return credential, call
}
