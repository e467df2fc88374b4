package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/deploy"
	"citybridge/signaling/terminal"
)

// meeting is a conference on a cluster of node processes with rooms in
// it: the tests of failover and hand-over share it.
type meeting struct {
	pc      *procCluster
	st      *controlplane.Store
	demo    controlplane.Demo
	nodes   []*procNode
	fleet   *terminal.Fleet
	tokens  map[string]string // bridge → room token
	bridges []string          // the fleet's bridges
}

// newMeeting starts three nodes on a store seeded with the demo (by the
// test, so that it knows the links), and a fleet of n synthetic rooms
// joined at the first node, which thereby serves the conference.
func newMeeting(t *testing.T, name string, ttl time.Duration, n int, skip ...string) *meeting {
	t.Helper()
	m := &meeting{pc: newProcCluster(t, name, ttl), tokens: map[string]string{}}
	m.st = m.pc.store()
	demo, ok, err := m.st.SeedDemo(deploy.SampleBridges, "Failover")
	if err != nil || !ok {
		t.Fatalf("seed: %v %v", ok, err)
	}
	m.demo = demo
	for _, name := range []string{"node-1", "node-2", "node-3"} {
		m.nodes = append(m.nodes, m.pc.start(name, 0, ""))
	}
	bridges, err := m.st.Bridges()
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, b := range bridges {
		if b.Kind == controlplane.KindHub || slices.Contains(skip, b.ID) {
			continue
		}
		tok, err := m.st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: b.ID})
		if err != nil {
			t.Fatal(err)
		}
		m.tokens[b.ID] = tok
		if len(m.bridges) < n {
			m.bridges = append(m.bridges, b.ID)
			tokens = append(tokens, tok)
		}
	}
	for _, id := range skip {
		if m.tokens[id], err = m.st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Every node must know the others before anyone joins: the pages
	// learn the nodes from their first joined.
	waitUntil(t, 10*time.Second, "every node knowing the three", func() (bool, string) {
		var got []string
		for _, nd := range m.nodes {
			var list []struct{ Name string }
			if err := getJSON(nd, "/api/nodes", demo.TechnicianToken, &list); err != nil {
				return false, err.Error()
			}
			got = append(got, fmt.Sprint(len(list)))
		}
		return slices.Equal(got, []string{"3", "3", "3"}), strings.Join(got, ",")
	})
	if n > 0 {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if m.fleet, err = terminal.StartFleet(m.nodes[0].base, demo.Conference.ID, tokens, []string{"q"}, log); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.fleet.Stop)
	}
	return m
}

// getJSON GETs path at node with a bearer token and decodes the answer.
func getJSON(n *procNode, path, token string, v any) error {
	return callJSON(n, http.MethodGet, path, token, nil, v)
}

// callJSON sends a request to node with a bearer token (and a JSON body)
// and decodes a 2xx answer into v.
func callJSON(n *procNode, method, path, token string, body any, v any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, n.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := n.ts.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// owner is the node process serving the conference, by the store.
func (m *meeting) owner(t *testing.T) *procNode {
	t.Helper()
	for _, n := range m.nodes {
		owned, err := m.st.OwnedBy(n.name)
		if err == nil && slices.Contains(owned, m.demo.Conference.ID) {
			return n
		}
	}
	return nil
}

// resumes counts, over every node's log, the joins taken as coming back
// after the conference changed node, and the resumes refused.
func (m *meeting) resumes() (back, refused int) {
	for _, n := range m.nodes {
		for _, l := range n.lines() {
			switch l.Msg {
			case "resumed after the conference changed node":
				back++
			case "resume refused: token not known here":
				refused++
			}
		}
	}
	return back, refused
}

// roomTab opens a room terminal's page for bridge at node.
func (m *meeting) roomTab(t *testing.T, browser any, n *procNode, bridge string) string {
	return n.base + "/room#t=" + url.QueryEscape(m.tokens[bridge])
}
