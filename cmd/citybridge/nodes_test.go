package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/controlplane/etcdtest"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

// twoNodes starts node-a and node-b on one store and joins ward-001 to
// the demo conference at node-a, its owner. It returns both nodes, the
// conference and the room's token.
func twoNodes(t *testing.T, name string) (a, b *testServer, conf, room string) {
	t.Helper()
	prefix := etcdtest.Prefix(name)
	a = startNode(t, "node-a", prefix)
	b = startNode(t, "node-b", prefix)
	a.refreshNodes() // b started after a last read the nodes
	conf = a.demo.Conference.ID
	room, err := a.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	if m := answer(t, a, room); m.MessageType() != wire.TypeJoined {
		t.Fatalf("the room at node-a: %+v", m)
	}
	if !a.node.Serves(conf) || b.node.Serves(conf) {
		t.Fatalf("node-a serves %v, node-b %v: want node-a alone", a.node.Serves(conf), b.node.Serves(conf))
	}
	return a, b, conf, room
}

// linkOf finds a bridge's link in a links view.
func linkOf(v controlplane.LinksView, conf, bridge string) (controlplane.LinkView, bool) {
	for _, l := range v.Links {
		if l.Conference == conf && l.Bridge == bridge {
			return l, true
		}
	}
	return controlplane.LinkView{}, false
}

// TestTechViewFromAnyNode: a room joined at node-a is in node-a's memory
// only, yet a technician whose page is open on node-b sees it: GET
// /api/links and the live feed at node-b show its link from node-a's
// monitor, marked with node-a; the conference's presence and a
// technician's action asked of node-b are answered by node-a (node-b on
// its own knows nobody joined).
func TestTechViewFromAnyNode(t *testing.T) {
	t.Parallel()
	a, b, conf, _ := twoNodes(t, "techview")
	tech := a.demo.TechnicianToken
	if _, ok := linkOf(controlplane.LinksView{Links: toViews(b.mon.Links())}, conf, "ward-001"); ok {
		t.Fatal("node-b's own monitor has ward-001: the test would prove nothing")
	}
	waitUntil(t, 10*time.Second, "ward-001 in node-b's /api/links, from node-a", func() (bool, string) {
		code, body := get(t, b, "/api/links", tech)
		var v controlplane.LinksView
		if code != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		l, ok := linkOf(v, conf, "ward-001")
		own, _ := a.mon.Link(conf, "ward-001")
		return ok && l.Node == "node-a" && l.State != "" && l.State == own.State && len(v.Missing) == 0,
			fmt.Sprintf("%+v (node-a's own: %q)", v, own.State)
	})

	// The live feed at node-b carries it too.
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(b.base, "https")+"/api/links/live", http.Header{"Origin": {b.base}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]string{"token": tech}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = ws.SetReadDeadline(deadline)
		var v controlplane.LinksView
		if err := ws.ReadJSON(&v); err != nil {
			t.Fatalf("live feed at node-b: no ward-001 from node-a before %v", err)
		}
		if l, ok := linkOf(v, conf, "ward-001"); ok && l.Node == "node-a" {
			break
		}
	}

	// Presence, from node-a's memory.
	code, body := get(t, b, "/api/conferences/"+conf+"/bridges", tech)
	var roster []struct{ ID, State string }
	if err := json.Unmarshal([]byte(body), &roster); code != http.StatusOK || err != nil {
		t.Fatalf("presence at node-b: %d %s", code, body)
	}
	for _, e := range roster {
		if e.ID == "ward-001" && e.State == wire.StateAbsent {
			t.Errorf("presence at node-b says ward-001 is %s: not node-a's answer", e.State)
		}
	}
	// An action: node-b alone would answer 409 not_joined.
	action := "/api/conferences/" + conf + "/bridges/ward-001/actions/keyframe"
	if code, body := callAs(t, b, http.MethodPost, action, tech); code != http.StatusAccepted {
		t.Errorf("a keyframe action at node-b: %d %s, want 202 from node-a", code, body)
	}
}

// toViews wraps a monitor's links as a view's.
func toViews(ls []controlplane.BridgeLink) []controlplane.LinkView {
	out := make([]controlplane.LinkView, len(ls))
	for i, l := range ls {
		out[i] = controlplane.LinkView{BridgeLink: l}
	}
	return out
}

// TestForwardRefusesLoop: a request another node forwarded (it carries
// Citybridge-Forwarded) is never sent on. At a node that does not serve
// the conference it is refused (508 forward_loop) and reaches nobody; at
// the owner it is answered. Asked for the links, a node gives only its
// own part.
func TestForwardRefusesLoop(t *testing.T) {
	t.Parallel()
	a, b, conf, _ := twoNodes(t, "loop")
	tech := a.demo.TechnicianToken
	forwarded := func(ts *testServer, method, path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tech)
		req.Header.Set(controlplane.ForwardedHeader, "node-x")
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Code string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, []byte(e.Code)
	}
	action := "/api/conferences/" + conf + "/bridges/ward-001/actions/keyframe"
	// Each action carried out is logged by the API where it is done, with
	// who asked.
	actions := func(ts *testServer) int { return strings.Count(ts.logs.String(), "action=keyframe who=") }
	if code, c := forwarded(b, http.MethodPost, action); code != http.StatusLoopDetected || string(c) != "forward_loop" {
		t.Errorf("a forwarded action at node-b: %d %s, want 508 forward_loop", code, c)
	}
	if na, nb := actions(a), actions(b); na+nb != 0 {
		t.Errorf("the refused action was carried out: %d times at node-a, %d at node-b", na, nb)
	}
	if code, c := forwarded(a, http.MethodPost, action); code != http.StatusAccepted || actions(a) != 1 {
		t.Errorf("a forwarded action at node-a, the owner: %d %s, carried out %d times; want 202, once", code, c, actions(a))
	}
	// node-b's own part of the links has nothing of node-a's.
	waitUntil(t, 10*time.Second, "ward-001 in node-a's links", func() (bool, string) {
		_, ok := a.mon.Link(conf, "ward-001")
		return ok, ""
	})
	req, _ := http.NewRequest(http.MethodGet, b.base+"/api/links", nil)
	req.Header.Set("Authorization", "Bearer "+tech)
	req.Header.Set(controlplane.ForwardedHeader, "node-a")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v controlplane.LinksView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("node-b's own links: %d %v", resp.StatusCode, err)
	}
	if _, ok := linkOf(v, conf, "ward-001"); ok {
		t.Error("node-b, asked by another node, passed on node-a's links")
	}
}

// TestNodesPanelAPI: GET /api/nodes at either node lists both, with the
// conference under node-a, its load as reported, and their health;
// technicians and administrators only. On one machine it lists this
// server alone, named by its host name.
func TestNodesPanelAPI(t *testing.T) {
	t.Parallel()
	a, b, conf, room := twoNodes(t, "nodes")
	tech := a.demo.TechnicianToken
	waitUntil(t, 10*time.Second, "node-b's /api/nodes with node-a serving the conference and its load reported",
		func() (bool, string) {
			code, body := get(t, b, "/api/nodes", tech)
			var v controlplane.NodesView
			if code != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil || len(v.Nodes) != 2 {
				return false, fmt.Sprintf("%d %s", code, body)
			}
			na, nb := v.Nodes[0], v.Nodes[1]
			ok := v.Mode == controlplane.ModeCluster &&
				na.Name == "node-a" && slices.Equal(na.Conferences, []string{conf}) && na.Health == controlplane.HealthOK &&
				na.Advertise == a.cfg.Advertise && na.Load == 1 && !na.Self &&
				nb.Name == "node-b" && len(nb.Conferences) == 0 && nb.Health == controlplane.HealthOK && nb.Self &&
				v.Titles[conf] == demoTitle
			return ok, body
		})

	viewer, err := a.store.IssueToken(controlplane.Grant{Role: controlplane.RoleViewer, Conference: conf})
	if err != nil {
		t.Fatal(err)
	}
	for who, tok := range map[string]string{"room": room, "viewer": viewer, "host": a.demo.HostToken} {
		if code, body := get(t, b, "/api/nodes", tok); code != http.StatusForbidden {
			t.Errorf("a %s link: %d %s, want 403", who, code, body)
		}
	}
	if code, body := get(t, b, "/api/nodes", ""); code != http.StatusUnauthorized {
		t.Errorf("no credential: %d %s, want 401", code, body)
	}

	// One machine.
	one := startTestServer(t)
	code, body := get(t, one, "/api/nodes", one.demo.TechnicianToken)
	var v controlplane.NodesView
	if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
		t.Fatalf("one machine: %d %s", code, body)
	}
	host, _ := os.Hostname()
	if v.Mode != controlplane.ModeSingle || len(v.Nodes) != 1 || v.Nodes[0].Name != host || !v.Nodes[0].Self ||
		v.Nodes[0].Health != controlplane.HealthOK || v.Nodes[0].Version != version {
		t.Errorf("one machine: %s", body)
	}
}

// TestMetricsNodeLabel: every series a node exposes carries
// node="node-a"; one machine's carry no node label.
func TestMetricsNodeLabel(t *testing.T) {
	t.Parallel()
	a := startNode(t, "node-a", etcdtest.Prefix("metrics"))
	one := startTestServer(t)
	for _, tc := range []struct {
		ts   *testServer
		want string
	}{{a, `node="node-a"`}, {one, ""}} {
		code, body := get(t, tc.ts, "/metrics", "")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		series := 0
		for line := range strings.Lines(body) {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			series++
			has := strings.Contains(line, `node="`)
			if tc.want != "" && !strings.Contains(line, tc.want) || tc.want == "" && has {
				t.Errorf("want %q: %s", tc.want, strings.TrimSpace(line))
			}
		}
		if series < 30 {
			t.Errorf("only %d series", series)
		}
	}
}

// TestBrowserNodesPanel: the technicians' page open on node-b shows the
// bridge joined at node-a, and its Nodes panel lists both nodes with the
// conference under node-a; the administrators' page at node-b, logged in,
// lists them too, in either language.
func TestBrowserNodesPanel(t *testing.T) {
	t.Parallel()
	a, b, conf, _ := twoNodes(t, "nodespanel")
	browser := newBrowser(t)
	tech := openTab(t, browser, "tech", b.base+"/tech#t="+a.demo.TechnicianToken)
	saveScreenshotsOnFailure(t, tech)
	type row struct{ Node, Health, Text string }
	rows := func(tb *tab) ([]row, error) {
		return eval[[]row](tb, `[...document.querySelectorAll("#nodes .nodes-rows tr")].map((e) =>
			({node: e.dataset.node, health: e.dataset.health, text: e.textContent}))`)
	}
	bothNodes := func(tb *tab) func() (bool, string) {
		return func() (bool, string) {
			rs, err := rows(tb)
			ok := err == nil && len(rs) == 2 && rs[0].Node == "node-a" && rs[0].Health == "ok" &&
				strings.Contains(rs[0].Text, demoTitle+" ("+conf+")") && rs[1].Node == "node-b"
			return ok, fmt.Sprint(rs, err)
		}
	}
	waitUntil(t, 15*time.Second, "the Nodes panel at node-b listing both nodes", bothNodes(tech))
	waitUntil(t, 15*time.Second, "ward-001's tile at node-b", func() (bool, string) {
		n, err := eval[int](tech, `document.querySelectorAll('.link-tile[data-bridge="ward-001"]').length`)
		return err == nil && n == 1, fmt.Sprint(n, err)
	})

	if err := a.store.SetPassword("admin", "admin-password-1"); err != nil {
		t.Fatal(err)
	}
	adm := openTab(t, browser, "admin", b.base+"/admin")
	saveScreenshotsOnFailure(t, adm)
	waitUntil(t, 10*time.Second, "the login form", func() (bool, string) {
		hidden, err := eval[bool](adm, `document.getElementById("login").hidden`)
		return err == nil && !hidden, fmt.Sprint(err)
	})
	setValue(t, adm, "login-name", "admin")
	setValue(t, adm, "login-password", "admin-password-1")
	click(t, adm, `#login button[type=submit]`)
	waitUntil(t, 15*time.Second, "the administrators' Nodes panel at node-b", bothNodes(adm))
	head := func() string {
		h, _ := eval[string](adm, `document.querySelector("#nodes h2").textContent`)
		return h
	}
	before := head()
	click(t, adm, "#lang")
	waitUntil(t, 5*time.Second, "the panel's heading in the other language", func() (bool, string) {
		h := head()
		return h != before && strings.Contains(h, "2"), before + " → " + h
	})
}
