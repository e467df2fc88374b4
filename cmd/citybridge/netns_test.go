package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Impaired links for browser tests (see docs/TESTING.md): a room's
// Chromium runs in a network namespace of its own, joined to the root
// namespace by a veth pair with link-local addresses the test creates. The
// server listens on the root side's address only, so every packet to and
// from the room crosses the veth, where tc (rate limits) and nftables
// (random loss) act on it. Everything is removed when the test ends, failed
// or not. Nothing is sent to any address the test did not create.

var linkSeq atomic.Int32

// netLink is one namespace and its veth pair.
type netLink struct {
	ns, host, peer     string
	hostAddr, peerAddr netip.Addr
	prefix             netip.Prefix
	table              string // the nftables table for loss, once made
	cut                string // the nftables tables of a Cut (namespace and root side), while cut

	mu sync.Mutex
}

// newNetLink creates a namespace joined to the root namespace by a veth
// pair: 169.254.X.Y+1 on the root side, +2 inside. Names and addresses are
// unique to this process and call.
func newNetLink(t *testing.T) *netLink {
	t.Helper()
	for _, tool := range []string{"ip", "tc", "nft"} {
		requireTool(t, tool)
	}
	n := int(linkSeq.Add(1))
	pid := os.Getpid()
	id := fmt.Sprintf("%d%d", pid%100000, n)
	x := 1 + (pid/64)%250
	if x == 169 { // 169.254.169.0/24 holds cloud metadata addresses
		x = 251
	}
	y := (pid%64)*4 + 0
	if n > 1 { // several links in one process: move along within the /24
		y = (y + 4*(n-1)) % 256
	}
	base := netip.AddrFrom4([4]byte{169, 254, byte(x), byte(y)})
	l := &netLink{
		ns:       "cbt" + id,
		host:     "cbh" + id,
		peer:     "cbp" + id,
		hostAddr: base.Next(),
		peerAddr: base.Next().Next(),
		prefix:   netip.PrefixFrom(base, 30),
	}
	t.Cleanup(func() { l.remove(t) })
	l.run(t, "ip", "netns", "add", l.ns)
	l.run(t, "ip", "link", "add", l.host, "type", "veth", "peer", "name", l.peer)
	l.run(t, "ip", "link", "set", l.peer, "netns", l.ns)
	l.run(t, "ip", "addr", "add", l.hostAddr.String()+"/30", "dev", l.host)
	l.run(t, "ip", "link", "set", l.host, "up")
	l.run(t, "ip", "-n", l.ns, "addr", "add", l.peerAddr.String()+"/30", "dev", l.peer)
	l.run(t, "ip", "-n", l.ns, "link", "set", l.peer, "up")
	l.run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	return l
}

func (l *netLink) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// remove deletes what newNetLink and the impairments made; it reports but
// does not stop on errors, so one failure does not leave the rest behind.
func (l *netLink) remove(t *testing.T) {
	l.mu.Lock()
	table, cut := l.table, l.cut
	l.mu.Unlock()
	cmds := [][]string{}
	if table != "" {
		cmds = append(cmds, []string{"ip", "netns", "exec", l.ns, "nft", "delete", "table", "inet", table})
	}
	if cut != "" { // the namespace's table goes with the namespace; the root side's must go now
		cmds = append(cmds, []string{"nft", "delete", "table", "inet", cut})
	}
	cmds = append(cmds,
		[]string{"ip", "link", "del", l.host}, // takes the peer with it
		[]string{"ip", "netns", "del", l.ns})
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Logf("cleanup %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
}

// SetRate limits the room's downlink (what leaves the root side of the
// veth) to kbit kilobits per second with a token bucket and a 300 ms queue,
// like an access link.
func (l *netLink) SetRate(t *testing.T, kbit int) {
	t.Helper()
	burst := max(kbit*1000/8/50, 3000) // 20 ms of the rate, at least two full packets
	l.run(t, "tc", "qdisc", "replace", "dev", l.host, "root", "tbf",
		"rate", fmt.Sprintf("%dkbit", kbit), "burst", fmt.Sprint(burst), "latency", "300ms")
}

// ClearRate lifts the rate limit.
func (l *netLink) ClearRate(t *testing.T) {
	t.Helper()
	_ = exec.Command("tc", "qdisc", "del", "dev", l.host, "root").Run()
}

// SetLoss drops percent of the packets arriving in the namespace (the
// room's downlink) at random. The rule sits inside the namespace, on
// prerouting: dropped there, a packet is lost on the wire as far as both
// ends know (a drop on the sender's own output would fail its sendto).
func (l *netLink) SetLoss(t *testing.T, percent int) {
	t.Helper()
	l.mu.Lock()
	l.table = "cbloss"
	l.mu.Unlock()
	rules := fmt.Sprintf(`table inet %s {
	chain in {
		type filter hook prerouting priority 0; policy accept;
		iifname "%s" numgen random mod 100 < %d drop
	}
}
`, l.table, l.peer, percent)
	cmd := exec.Command("ip", "netns", "exec", l.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

// ClearLoss removes the loss rule.
func (l *netLink) ClearLoss(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	table := l.table
	l.table = ""
	l.mu.Unlock()
	if table != "" {
		l.run(t, "ip", "netns", "exec", l.ns, "nft", "delete", "table", "inet", table)
	}
}

// qdiscSentBytes reads how many bytes the root qdisc of the link has sent:
// proof that traffic crosses the veth.
func (l *netLink) qdiscSentBytes(t *testing.T) int64 {
	t.Helper()
	out, err := exec.Command("tc", "-s", "qdisc", "show", "dev", l.host).CombinedOutput()
	if err != nil {
		t.Fatalf("tc -s qdisc: %v: %s", err, out)
	}
	var n int64
	if i := strings.Index(string(out), "Sent "); i >= 0 {
		fmt.Sscanf(string(out[i:]), "Sent %d bytes", &n)
	}
	return n
}

// startTestServerOn starts a server listening (HTTPS and media) on the
// link's root-side address only, taking media from the link's /30 only.
func startTestServerOn(t *testing.T, l *netLink) *testServer {
	t.Helper()
	return startTestServerWith(t, onLink(l))
}

// onLink edits a test server's configuration to serve on l only.
func onLink(l *netLink) func(*Config) {
	return func(c *Config) {
		c.Listen = netip.AddrPortFrom(l.hostAddr, 0).String()
		c.UDPHost = l.hostAddr.String()
		c.MediaAllow = []netip.Prefix{l.prefix}
	}
}

// newBrowserIn starts a Chromium inside the link's namespace.
func newBrowserIn(t *testing.T, l *netLink, opts ...browserOption) context.Context {
	t.Helper()
	chromium := requireTool(t, "chromium")
	wrapper := filepath.Join(t.TempDir(), "chromium-in-"+l.ns)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", l.ns, chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return newBrowserExec(t, wrapper, opts...)
}

// requireMediaPass keeps the impaired-link browser tests out of the race
// detector's pass: under it the server forwards media several times slower,
// and the test would measure the detector, not the link. scripts/test runs
// them in a second pass without it (and -run selects them there), so they
// always run in CI.
func requireMediaPass(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("impaired-link browser test: runs in scripts/test's media pass, without the race detector")
	}
}

// Cut drops everything crossing the link, both ways, as a failed line
// upstream would: no interface goes down, packets just stop arriving. The
// downlink is dropped inside the namespace and the uplink in the root
// namespace, each on prerouting for this link's interface only, so neither
// sender sees an error.
func (l *netLink) Cut(t *testing.T) {
	t.Helper()
	l.cutWith(t, "", "")
}

// CutPorts drops only the TCP traffic between the namespace and ports of
// the root side's address (a service there, such as etcd), both ways, as
// Cut does everything: the rest of the link carries on.
func (l *netLink) CutPorts(t *testing.T, ports ...int) {
	t.Helper()
	set := make([]string, len(ports))
	for i, p := range ports {
		set[i] = fmt.Sprint(p)
	}
	list := "{ " + strings.Join(set, ", ") + " }"
	// Into the namespace: the service's answers; out of it, at the root
	// side: what is sent to the service.
	l.cutWith(t, "tcp sport "+list, "tcp dport "+list)
}

// cutWith drops what arrives over the link and matches (everything for
// ""): in the namespace what comes from the root side, at the root side
// what comes from the namespace.
func (l *netLink) cutWith(t *testing.T, intoNamespace, outOfIt string) {
	t.Helper()
	l.mu.Lock()
	l.cut = "cbcut" + strings.TrimPrefix(l.ns, "cbt")
	table := l.cut
	l.mu.Unlock()
	rules := func(iface, match string) string {
		return fmt.Sprintf(`table inet %s {
	chain in {
		type filter hook prerouting priority -10; policy accept;
		iifname "%s" %s drop
	}
}
`, table, iface, match)
	}
	in := exec.Command("ip", "netns", "exec", l.ns, "nft", "-f", "-")
	in.Stdin = strings.NewReader(rules(l.peer, intoNamespace))
	if out, err := in.CombinedOutput(); err != nil {
		t.Fatalf("nft (namespace): %v: %s", err, out)
	}
	up := exec.Command("nft", "-f", "-")
	up.Stdin = strings.NewReader(rules(l.host, outOfIt))
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("nft (root side, %s only): %v: %s", l.host, err, out)
	}
}

// Restore ends a Cut.
func (l *netLink) Restore(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	table := l.cut
	l.cut = ""
	l.mu.Unlock()
	if table != "" {
		l.run(t, "ip", "netns", "exec", l.ns, "nft", "delete", "table", "inet", table)
		l.run(t, "nft", "delete", "table", "inet", table)
	}
}
