package main

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/controlplane/etcdtest"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

// clusterCert is the certificate every test node presents, as a
// cluster's nodes share one (docs/CLUSTER.md): each node trusts it when
// it forwards a request to another.
var clusterCert = sync.OnceValues(func() ([2][]byte, error) {
	cert, key, err := selfSigned(nil)
	return [2][]byte{cert, key}, err
})

// startNode starts a test server as a node named name of a cluster on the
// shared embedded etcd, under prefix.
func startNode(t *testing.T, name, prefix string) *testServer {
	t.Helper()
	return startNodeOn(t, name, prefix, etcdtest.Shared(t).Endpoints, 2*time.Second)
}

// startNodeOn starts a test server as a node of the etcd cluster at
// endpoints (one of the test's own), with a lease of ttl.
func startNodeOn(t *testing.T, name, prefix string, endpoints []string, ttl time.Duration) *testServer {
	t.Helper()
	port := freePort(t)
	pair, err := clusterCert()
	if err != nil {
		t.Fatal(err)
	}
	return startTestServerWith(t, func(c *Config) {
		for i, f := range []string{"tls-cert.pem", "tls-key.pem"} {
			if err := os.WriteFile(filepath.Join(c.Data, f), pair[i], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c.Listen = "127.0.0.1:" + strconv.Itoa(port)
		c.Etcd = etcdFlags{endpoints: strings.Join(endpoints, ","), prefix: prefix}
		c.Node, c.Advertise, c.LeaseTTL = name, "https://127.0.0.1:"+strconv.Itoa(port), ttl
	})
}

// joinAt dials ts's signaling and joins with token; it returns the
// connection (closed when the test ends) and the first answer: joined, an
// error or a redirect.
func joinAt(t *testing.T, ts *testServer, token string) (*websocket.Conn, wire.Message) {
	t.Helper()
	c, _, err := wsDial(t.Context(), ts, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := wsSend(c, wire.Join{Token: token}); err != nil {
		t.Fatal(err)
	}
	m, err := wsNext(c, 10*time.Second, wire.TypeJoined, wire.TypeError, wire.TypeRedirect)
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

// answer is joinAt's first answer alone.
func answer(t *testing.T, ts *testServer, token string) wire.Message {
	t.Helper()
	_, m := joinAt(t, ts, token)
	return m
}

// TestClusterRedirect: two nodes on one etcd cluster share the store
// (the demo is seeded once, by whichever node starts first). A conference
// is served by one of them: a room joining at the other is sent to it
// (redirect with its address), a WHEP player too (307 to the same path
// there), and only its owner admits joins, naming every node in joined. When the owner shuts down it
// hands the conference over: the next join at the other node is served
// there, with the floor the first node left in the store.
func TestClusterRedirect(t *testing.T) {
	t.Parallel()
	prefix := etcdtest.Prefix("cluster")
	a := startNode(t, "node-a", prefix)
	b := startNode(t, "node-b", prefix)
	if a.demo == nil || b.demo != nil {
		t.Fatalf("the demo seeded by a: %v, by b: %v (want a only)", a.demo != nil, b.demo != nil)
	}
	conf := a.demo.Conference.ID
	room, err := a.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	// Both idle: the placement's tie goes to node-a by name.
	m := answer(t, b, room)
	r, ok := m.(*wire.Redirect)
	if !ok || r.URL != a.cfg.Advertise {
		t.Fatalf("a room joining at node-b: %+v, want a redirect to %s", m, a.cfg.Advertise)
	}
	a.refreshNodes() // b has started since a last read the nodes
	m = answer(t, a, room)
	j, ok := m.(*wire.Joined)
	if !ok {
		t.Fatalf("the room at node-a: %+v", m)
	}
	// The page learns every node: where to try when node-a stops answering.
	if !slices.Equal(j.Nodes, []string{a.cfg.Advertise, b.cfg.Advertise}) {
		t.Errorf("joined names the nodes %v, want node-a's and node-b's", j.Nodes)
	}
	if owner, ok, _ := a.node.Owner(conf); !ok || owner.Name != "node-a" {
		t.Fatalf("the owner: %+v %v", owner, ok)
	}
	// The host link at the other node: sent to the owner too.
	if m, ok := answer(t, b, a.demo.HostToken).(*wire.Redirect); !ok || m.URL != a.cfg.Advertise {
		t.Errorf("the host joining at node-b: %+v", m)
	}
	// A WHEP player at node-b: 307 to node-a, same path.
	viewer, _ := a.store.IssueToken(controlplane.Grant{Role: controlplane.RoleViewer, Conference: conf})
	noFollow := &http.Client{Transport: b.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("POST", b.base+"/whep/"+conf, strings.NewReader("v=0\r\n"))
	req.Header.Set("Authorization", "Bearer "+viewer)
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != a.cfg.Advertise+"/whep/"+conf {
		t.Errorf("WHEP at node-b: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The chair gives the floor at node-a; node-a stops (gracefully).
	if err := a.sig.Control(conf, controlplane.FloorRequest{Action: controlplane.ActionGiveFloor, Bridge: "ward-002"}); err != nil {
		t.Fatal(err)
	}
	a.Close(t.Context())
	if m := answer(t, b, room); m.MessageType() != wire.TypeJoined {
		t.Fatalf("the room at node-b after node-a left: %+v", m)
	}
	f, err := b.sig.Floor(conf)
	if err != nil || f.Holder != "ward-002" {
		t.Errorf("the floor at node-b: %+v %v, want ward-002 holding it", f, err)
	}
	if owner, ok, _ := b.node.Owner(conf); !ok || owner.Name != "node-b" {
		t.Errorf("the owner after the hand-over: %+v %v", owner, ok)
	}
}
