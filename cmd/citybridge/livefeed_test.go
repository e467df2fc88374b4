package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"

	"github.com/gorilla/websocket"
)

// TestLiveFeedAuthorization: the technicians' live feed (/api/links/live)
// as SECURITY.md's route table says: the upgrade only from the server's own
// pages; then a technician link (or an administrator's login) gets the
// links view, and every other token is told why and disconnected.
func TestLiveFeedAuthorization(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	room, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "commune-001"})
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleViewer, Conference: ts.demo.Conference.ID})
	if err != nil {
		t.Fatal(err)
	}
	url := "wss" + strings.TrimPrefix(ts.base, "https") + "/api/links/live"
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 3 * time.Second}

	if c, resp, err := d.Dial(url, http.Header{"Origin": {"https://elsewhere.example"}}); err == nil {
		c.Close()
		t.Error("a page from another origin opened the live feed")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("another origin: %v %v, want 403", resp, err)
	}

	first := func(token string) map[string]json.RawMessage {
		t.Helper()
		c, _, err := d.Dial(url, http.Header{"Origin": {ts.base}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteJSON(map[string]string{"token": token}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var m map[string]json.RawMessage
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("first message: %v", err)
		}
		return m
	}
	if m := first(ts.demo.TechnicianToken); m["error"] != nil || m["links"] == nil {
		t.Errorf("a technician link got %v, want the links view", keys(m))
	}
	for name, tok := range map[string]string{"room": room, "host": ts.demo.HostToken, "viewer": viewer, "bad": "not-a-token"} {
		if m := first(tok); m["error"] == nil || m["links"] != nil {
			t.Errorf("a %s token got %v, want an error and nothing else", name, keys(m))
		}
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
