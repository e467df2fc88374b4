package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/controlplane/etcdtest"
	"citybridge/signaling/terminal"
	"citybridge/signaling/wire"
)

// nodeGet asks a node process for path, with a technician's token when
// tech is set, and returns the status and body.
func nodeGet(n *procNode, path, tech string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, n.base+path, nil)
	if tech != "" {
		req.Header.Set("Authorization", "Bearer "+tech)
	}
	resp, err := n.ts.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// health is a node's /healthz or /readyz answer.
type health struct {
	code      int
	Status    string `json:"status"`
	Etcd      string `json:"etcd"`
	LeaseHeld bool   `json:"lease_held"`
}

func nodeHealth(n *procNode, path string) (health, error) {
	code, body, err := nodeGet(n, path, "")
	if err != nil {
		return health{}, err
	}
	h := health{code: code}
	err = json.Unmarshal([]byte(body), &h)
	return h, err
}

// metric reads one unlabelled series from a node's /metrics.
func metric(n *procNode, name, tech string) (float64, error) {
	code, body, err := nodeGet(n, "/metrics", tech)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %d %s", code, body)
	}
	// A node's series carry its name: name{node="..."} value.
	want := name + `{node="` + n.name + `"} `
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", want)
}

// logged returns the node's log lines whose message starts with msg, as
// maps of their fields.
func logged(n *procNode, msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(n.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			if m, _ := l["msg"].(string); strings.HasPrefix(m, msg) {
				out = append(out, l)
			}
		}
	}
	return out
}

// runTerminal runs a synthetic terminal until the test ends.
func runTerminal(t *testing.T, cfg terminal.Config) *terminal.Terminal {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	tm, err := terminal.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := tm.Run(ctx); err != nil {
			t.Errorf("terminal %s stopped: %v", cfg.Token[:6], err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return tm
}

// hubWatch samples when a terminal last received the hub's video, four
// times a second, to find how long it went without.
type hubWatch struct {
	mu      sync.Mutex
	at      []time.Time // sample times
	packets []int64
}

func watchHub(t *testing.T, tm *terminal.Terminal) *hubWatch {
	w := &hubWatch{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				w.mu.Lock()
				w.at, w.packets = append(w.at, now), append(w.packets, tm.HubPackets())
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

// longestGap is the longest time in [from, to] between samples that saw
// new hub packets.
func (w *hubWatch) longestGap(from, to time.Time) (gap time.Duration, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lastAt time.Time
	var last int64 = -1
	for i, s := range w.at {
		if s.Before(from) || s.After(to) {
			continue
		}
		if last < 0 || w.packets[i] > last {
			if last >= 0 && s.Sub(lastAt) > gap {
				gap, at = s.Sub(lastAt), lastAt
			}
			lastAt, last = s, w.packets[i]
		}
	}
	if last >= 0 && to.Sub(lastAt) > gap {
		gap, at = to.Sub(lastAt), lastAt
	}
	return gap, at
}

// logTime reads a log line's time field.
func logTime(l map[string]any, field string) time.Time {
	s, _ := l[field].(string)
	at, _ := time.Parse(time.RFC3339Nano, s)
	return at
}

// TestNodeLosesEtcd: node-a runs as a process in a network namespace of
// its own and reaches etcd (a 3-member cluster of the test's own, on the
// root side of the namespace's veth) through that link only; node-b runs
// in the root namespace. A synthetic hub and room meet at node-a. Then
// nftables drops node-a's traffic to and from etcd's client ports, and
// nothing else. Node-a keeps the meeting (the room receives the hub
// without a gap over a second) until its lease's deadline, which is the
// TTL after its last renewal; meanwhile it refuses a new join at once with
// cluster_unavailable, /healthz says degraded (still 200: a liveness probe
// must not restart it), /readyz 503, and citybridge_cluster_etcd_up is 0
// (read with a technician token it can no longer check, but checked
// lately). After the deadline node-b takes the conference and the
// terminals join there; node-a's own log shows it stopped serving before
// node-b started, and admitted no join after the cut. When the drop is
// removed, node-a recovers by itself: healthy, a new lease, the alert
// cleared, and a new conference placed on it is served there.
func TestNodeLosesEtcd(t *testing.T) {
	requireMediaPass(t) // root (a namespace), and media timing
	link := newNetLink(t)
	cluster, err := etcdtest.Start(3, etcdtest.OnHost(link.hostAddr.String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop) // after the nodes (their cleanups run first)
	var etcdPorts []int
	for _, ep := range cluster.Endpoints {
		u, _ := url.Parse(ep)
		p, _ := strconv.Atoi(u.Port())
		etcdPorts = append(etcdPorts, p)
	}
	const ttl = 3 * time.Second
	pc := newProcClusterOn(t, "cut", ttl, cluster.Endpoints)
	pc.allowMedia(link.prefix.String())
	b := pc.start("node-b", 0, link.hostAddr.String())
	a := pc.start("node-a", 0, link.peerAddr.String(), "ip", "netns", "exec", link.ns)
	st := pc.store()
	conf, err := st.CreateConference(controlplane.Conference{Title: "etcd cut", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(g controlplane.Grant) string {
		t.Helper()
		tok, err := st.IssueToken(g)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hubTok := issue(controlplane.Grant{Role: controlplane.RoleHost, Conference: conf.ID})
	roomTok := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	lateTok := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-002"})
	tech := issue(controlplane.Grant{Role: controlplane.RoleTechnician, Name: "test"})

	// The meeting, at node-a (placement's tie between two idle nodes goes
	// by name). The terminals' media cross the veth as node-a's etcd
	// traffic does.
	local := link.hostAddr.String()
	hub := runTerminal(t, terminal.Config{Base: a.base, Token: hubTok, Conference: conf.ID, Layers: []string{"q"}, LocalAddr: local})
	room := runTerminal(t, terminal.Config{Base: a.base, Token: roomTok, Conference: conf.ID, Layers: []string{"q"}, LocalAddr: local})
	waitUntil(t, 30*time.Second, "the room receiving the hub at node-a", func() (bool, string) {
		return room.HubPackets() > 100 && time.Since(room.LastHub()) < time.Second,
			fmt.Sprintf("room %s, %d hub packets; hub %s", room.State(), room.HubPackets(), hub.State())
	})
	if !slices.ContainsFunc(logged(a, "cluster: serving"), func(l map[string]any) bool { return l["conference"] == conf.ID }) {
		t.Fatalf("node-a's log does not say it serves %s", conf.ID)
	}
	if v, err := metric(a, "citybridge_cluster_etcd_up", tech); err != nil || v != 1 {
		t.Fatalf("citybridge_cluster_etcd_up before the cut: %v %v", v, err)
	}
	joinsBefore := room.Joins()
	watch := watchHub(t, room)

	// The cut: etcd's client ports only, both ways.
	link.CutPorts(t, etcdPorts...)
	cutAt := time.Now()
	var h health
	waitUntil(t, 2*ttl, "node-a's /healthz saying degraded", func() (bool, string) {
		h, err = nodeHealth(a, "/healthz")
		return err == nil && h.Status == "degraded", fmt.Sprintf("%+v %v", h, err)
	})
	noticed := time.Since(cutAt)
	if h.code != http.StatusOK || !strings.HasPrefix(h.Etcd, "unreachable since") {
		t.Errorf("/healthz while cut: %+v, want 200, degraded, etcd unreachable since …", h)
	}
	if r, err := nodeHealth(a, "/readyz"); err != nil || r.code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while cut: %+v %v, want 503 (out of rotation)", r, err)
	}
	if v, err := metric(a, "citybridge_cluster_etcd_up", tech); err != nil || v != 0 {
		t.Errorf("citybridge_cluster_etcd_up while cut: %v %v, want 0", v, err)
	}
	asked := time.Now()
	m, answered, err := joinWithin(a.base, lateTok, conf.ID, 5*time.Second)
	if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.CodeClusterUnavailable {
		t.Errorf("a new join at node-a while cut: %+v %v, want error %s", m, err, wire.CodeClusterUnavailable)
	} else if took := answered.Sub(asked); took > time.Second {
		t.Errorf("the refusal took %v, want it at once", took)
	}
	if v, err := metric(a, "citybridge_cluster_joins_refused_total", tech); err != nil || v < 1 {
		t.Errorf("citybridge_cluster_joins_refused_total: %v %v, want at least 1", v, err)
	}

	// The lease's deadline: node-a gives the conference up then, and the
	// terminals are sent away, to node-b.
	var until time.Time
	waitUntil(t, 3*ttl, "node-a giving the conference up", func() (bool, string) {
		l := logged(a, "cluster: lease lost; stopped serving")
		if len(l) == 0 {
			return false, "no such line yet"
		}
		until = logTime(l[0], "until")
		return true, ""
	})
	kept := until.Sub(cutAt)
	gap, gapAt := watch.longestGap(cutAt, until.Add(-100*time.Millisecond))
	t.Logf("node-a noticed etcd gone %v after the cut, kept the meeting %v after it (lease TTL %v, renewed every %v), longest gap in the hub's media meanwhile %v (at %s)",
		noticed.Round(time.Millisecond), kept.Round(time.Millisecond), ttl, ttl/3, gap.Round(time.Millisecond), gapAt.Format("15:04:05.000"))
	if kept < ttl-ttl/3-300*time.Millisecond {
		t.Errorf("node-a gave the meeting up %v after the cut: want the rest of its lease, at least %v", kept, ttl-ttl/3)
	}
	if kept > ttl+500*time.Millisecond {
		t.Errorf("node-a served %v after the cut: past its lease's TTL %v", kept, ttl)
	}
	if gap > time.Second {
		t.Errorf("the room went %v without the hub's media while node-a still served it, want at most 1 s", gap)
	}
	waitUntil(t, 30*time.Second, "the terminals meeting again at node-b", func() (bool, string) {
		ok := room.Joins() > joinsBefore && time.Since(room.LastHub()) < 500*time.Millisecond
		return ok, fmt.Sprintf("room %s (joins %d), hub %s", room.State(), room.Joins(), hub.State())
	})
	var since time.Time
	for _, l := range logged(b, "cluster: serving") {
		if l["conference"] == conf.ID {
			since = logTime(l, "since")
		}
	}
	if since.IsZero() {
		t.Fatalf("node-b's log does not say it serves %s", conf.ID)
	}
	t.Logf("node-b serves the conference from %v after the cut, %v after node-a's lease ended",
		since.Sub(cutAt).Round(time.Millisecond), since.Sub(until).Round(time.Millisecond))
	// Node-a's own word: it served before node-b did, and admitted no
	// join after etcd went.
	var lostAt time.Time
	if l := logged(a, "cluster: etcd unreachable"); len(l) != 1 {
		t.Errorf("node-a logged etcd unreachable %d times, want once", len(l))
	} else {
		lostAt = logTime(l[0], "time")
	}
	for _, s := range a.servedStretches(time.Now()) {
		if s.conference == conf.ID && s.until.After(since) {
			t.Errorf("node-a served %s until %s, after node-b took it at %s", conf.ID,
				s.until.Format("15:04:05.000"), since.Format("15:04:05.000"))
		}
	}
	for _, l := range a.lines() {
		if l.Msg == "joined" && (l.Time.After(since) || !lostAt.IsZero() && l.Time.After(lostAt)) {
			t.Errorf("node-a admitted a join to %s at %s, after etcd went (%s) or node-b took over (%s)",
				l.Conference, l.Time.Format("15:04:05.000"), lostAt.Format("15:04:05.000"), since.Format("15:04:05.000"))
		}
	}
	if l := logged(a, "alert raised"); len(l) != 1 || l[0]["kind"] != controlplane.AlertEtcd {
		t.Errorf("node-a's alerts raised: %v, want one of kind etcd", l)
	}

	// The cut lasts 30 s: long enough for TCP's retransmissions on the
	// connections left open to back off past 20 s (a node that waited
	// for them would hear etcd again that long after it is back). Node-a
	// stays degraded all along, and the meeting stays at node-b.
	const cut = 30 * time.Second
	waitUntil(t, cut+10*time.Second, fmt.Sprintf("a cut of %v", cut), func() (bool, string) {
		if h, err := nodeHealth(a, "/healthz"); err != nil || h.Status != "degraded" {
			t.Fatalf("node-a's /healthz during the cut: %+v %v, want degraded", h, err)
		}
		if time.Since(room.LastHub()) > time.Second {
			t.Fatalf("the room has not had the hub's media for %v, at node-b", time.Since(room.LastHub()))
		}
		return time.Since(cutAt) >= cut, fmt.Sprint(time.Since(cutAt))
	})

	// etcd back: node-a recovers by itself, within seconds.
	link.Restore(t)
	restored := time.Now()
	waitUntil(t, 8*time.Second, "node-a healthy again", func() (bool, string) {
		h, err := nodeHealth(a, "/readyz")
		return err == nil && h.code == http.StatusOK && h.Status == "ok" && h.LeaseHeld, fmt.Sprintf("%+v %v", h, err)
	})
	t.Logf("node-a healthy again, with a new lease, %v after etcd came back (a %v cut)", time.Since(restored).Round(time.Millisecond), cut)
	if v, err := metric(a, "citybridge_cluster_etcd_up", tech); err != nil || v != 1 {
		t.Errorf("citybridge_cluster_etcd_up after: %v %v, want 1", v, err)
	}
	if l := logged(a, "cluster: etcd reachable again"); len(l) != 1 {
		t.Errorf("node-a logged etcd reachable again %d times, want once", len(l))
	}
	if l := logged(a, "cluster: etcd unreachable"); len(l) != 1 {
		t.Errorf("node-a logged etcd unreachable %d times in all, want once", len(l))
	}
	_, body, err := nodeGet(a, "/api/alerts?recent=1", tech)
	var alerts []controlplane.Alert
	if err == nil {
		err = json.Unmarshal([]byte(body), &alerts)
	}
	if i := slices.IndexFunc(alerts, func(al controlplane.Alert) bool { return al.Kind == controlplane.AlertEtcd }); err != nil || i < 0 ||
		alerts[i].Cleared.IsZero() || alerts[i].Node != "node-a" {
		t.Errorf("node-a's alerts after etcd came back: %s %v, want its etcd alert cleared", body, err)
	}
	// It serves again: a new conference is placed on it (node-b carries
	// the meeting) and admitted there.
	conf2, err := st.CreateConference(controlplane.Conference{Title: "after the cut", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	newTok := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-003"})
	waitUntil(t, 15*time.Second, "node-a admitting a join to a new conference", func() (bool, string) {
		m, _, err := joinWithin(a.base, newTok, conf2.ID, 5*time.Second)
		if r, ok := m.(*wire.Redirect); ok {
			return false, "sent to " + r.URL
		}
		return err == nil && m.MessageType() == wire.TypeJoined, fmt.Sprintf("%+v %v", m, err)
	})
}
