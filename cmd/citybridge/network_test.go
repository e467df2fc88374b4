package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"citybridge/signaling/terminal"
	"citybridge/signaling/wire"
	"citybridge/web"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// TestNoExternalAddresses: what a page is given at join (ICE servers) and
// every candidate the server sends contain only the configured addresses;
// no STUN server at all; the embedded pages reference no other host.
func TestNoExternalAddresses(t *testing.T) {
	configured := map[string]bool{"127.0.0.1": true, "127.0.0.2": true}
	ts := startTestServerWith(t, func(c *Config) {
		c.PublicIPs = []string{"127.0.0.1", "127.0.0.2"}
		c.ICETCP, c.TURN, c.TURNPort, c.TURNTTL = true, true, freeUDPPort(t), time.Hour
	})
	const room = "ward-001"
	conn, joined := joinRoom(t, ts, room)
	read := func() wire.Message {
		t.Helper()
		m, err := wsNext(conn, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if len(joined.ICEServers) == 0 {
		t.Fatal("no TURN server given to the page with the embedded TURN on")
	}
	for _, s := range joined.ICEServers {
		if !strings.HasSuffix(s.Username, ":"+room) || s.Credential == "" {
			t.Errorf("TURN credential %q/%q: want expiry:%s and a password", s.Username, s.Credential, room)
		}
		for _, u := range s.URLs {
			scheme, rest, _ := strings.Cut(u, ":")
			hostport, _, _ := strings.Cut(rest, "?")
			host, _, err := net.SplitHostPort(hostport)
			if (scheme != "turn" && scheme != "turns") || err != nil || !configured[strings.Trim(host, "[]")] {
				t.Errorf("page given %q: want only turn(s) URLs on the configured addresses", u)
			}
		}
	}

	// A publishing offer: the answer and the trickled candidates.
	offer := audioOffer(t)
	if err := wsSend(conn, wire.Offer{PC: wire.PCPublish, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	tcp := 0
	check := func(cand string) {
		// candidate:foundation component transport priority address port typ type ...
		f := strings.Fields(strings.TrimPrefix(cand, "a="))
		if len(f) < 8 {
			t.Errorf("odd candidate %q", cand)
			return
		}
		addrs = append(addrs, f[4])
		if strings.EqualFold(f[2], "tcp") {
			tcp++
		}
		if !configured[f[4]] {
			t.Errorf("server announced %q: not a configured address", cand)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (len(addrs) < 2 || tcp == 0) {
		switch m := read().(type) {
		case *wire.Answer:
			for _, line := range strings.Split(m.SDP, "\n") {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "a=candidate:") {
					check(line)
				}
				if strings.HasPrefix(line, "c=") && !strings.HasSuffix(line, " 0.0.0.0") {
					if f := strings.Fields(line); !configured[f[len(f)-1]] {
						t.Errorf("answer's connection line %q", line)
					}
				}
				if strings.Contains(line, "stun:") || strings.Contains(line, "turn:") {
					t.Errorf("answer names a server: %q", line)
				}
			}
		case *wire.Candidate:
			if m.Candidate.Candidate != "" {
				check(m.Candidate.Candidate)
			}
		}
	}
	if len(addrs) == 0 || tcp == 0 {
		t.Errorf("candidates %v (%d TCP): want UDP and ICE-TCP candidates on the configured addresses", addrs, tcp)
	}

	// The pages: nothing may point at another host.
	external := regexp.MustCompile(`(?i)(\b(https?|wss?|ftp)://[^\s"'<>)]+|(src|href|action)\s*=\s*["']//|url\(\s*["']?(//|https?:)|@import\s+["']?(//|https?:))`)
	n := 0
	err := fs.WalkDir(web.Static(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(web.Static(), path)
		if err != nil {
			return err
		}
		n++
		// A vendored library's licence banner (/*! … */) names its home
		// page; it is a comment, never fetched.
		if bytes.HasPrefix(b, []byte("/*!")) {
			if end := bytes.Index(b, []byte("*/")); end > 0 {
				b = b[end+2:]
			}
		}
		for _, m := range external.FindAll(b, -1) {
			t.Errorf("%s references %q", path, m)
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("scanned %d embedded files: %v", n, err)
	}
}

// writeCert writes a fresh self-signed certificate and key to dir and
// returns the certificate's serial number.
func writeCert(t *testing.T, dir string) string {
	t.Helper()
	certPEM, keyPEM, err := selfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		tmp := filepath.Join(dir, name+".new")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// servedSerial is the serial of the certificate a new TLS connection sees.
func servedSerial(addr string) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// TestCertificateReload: the real binary with a provided certificate gets
// SIGHUP after the files were replaced: new HTTPS connections see the new
// certificate, while a synthetic hub and room keep their signaling and
// media without a single reconnection. A broken file on the next SIGHUP
// changes nothing.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	first := writeCert(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startBinaryOn(t, filepath.Join(dir, "data"), addr, 0,
		"--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem"))
	if got, err := servedSerial(addr); err != nil || got != first {
		t.Fatalf("served certificate %s (%v), want the provided one %s", got, err, first)
	}
	host, tech := p.link(t, "/host"), p.link(t, "/rooms")
	const conf = "c1" // the demo conference of a first start
	var issued struct{ Token string }
	if code := p.api(t, "POST", "/api/bridges/ward-001/terminal-links", tech, &issued); code != 201 {
		t.Fatalf("terminal link: %d", code)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hub, err := terminal.StartFleet(p.base, conf, []string{host}, []string{"q"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Stop()
	rooms, err := terminal.StartFleet(p.base, conf, []string{issued.Token}, []string{"q"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer rooms.Stop()
	room := rooms.Terminals[0]
	waitFor(t, 30*time.Second, "the room receiving the hub", func() bool { return room.HubPackets() > 100 })

	second := writeCert(t, dir)
	before := room.HubPackets()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "new connections seeing the new certificate", func() bool {
		got, err := servedSerial(addr)
		return err == nil && got == second
	})
	waitFor(t, 5*time.Second, "the room still receiving the hub", func() bool { return room.HubPackets() > before+100 })
	if j, r := room.Joins(), room.Resumes(); j != 1 || r != 0 {
		t.Errorf("the room joined %d times and resumed %d times across the reload: want one join, no resume", j, r)
	}
	if j := hub.Terminals[0].Joins(); j != 1 {
		t.Errorf("the hub joined %d times across the reload", j)
	}

	// A half-written certificate: the reload fails, the served one stays.
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // nothing to wait for: the point is that nothing changes
	if got, err := servedSerial(addr); err != nil || got != second {
		t.Errorf("after a failed reload the server serves %s (%v), want %s still", got, err, second)
	}
	if err := p.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the server died on a bad certificate: %v", err)
	}
}

// blockUDP drops every UDP datagram in and out of the link's namespace,
// as a firewall that lets only TCP through would.
func (l *netLink) blockUDP(t *testing.T) {
	t.Helper()
	rules := `table inet cbnoudp {
	chain udpin {
		type filter hook input priority 0; policy accept;
		meta l4proto udp drop
	}
	chain udpout {
		type filter hook output priority 0; policy accept;
		meta l4proto udp drop
	}
}
`
	cmd := exec.Command("ip", "netns", "exec", l.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

// roomDecodesWithin opens the room's page and returns how long after its
// navigation (the page's own clock) it first decoded the hub's video, and
// the media path it reported.
func roomDecodesWithin(t *testing.T, tb *tab, within time.Duration) (time.Duration, string) {
	t.Helper()
	var at float64
	t.Cleanup(func() {
		if t.Failed() {
			pairs, err := eval[string](tb, iceReportJS)
			t.Logf("%s ICE candidates and pairs (%v):\n%s", tb.name, err, pairs)
		}
	})
	waitUntil(t, within+15*time.Second, "the room decoding the hub", func() (bool, string) {
		frames, _ := received(t, tb, "hub")
		if frames > 0 && at == 0 {
			at, _ = eval[float64](tb, `performance.now()`)
		}
		return frames > 0, fmt.Sprintf("frames %d", frames)
	})
	var path string
	waitUntil(t, 10*time.Second, "the room page showing its media path", func() (bool, string) {
		path, _ = eval[string](tb, `citybridge.path || ""`)
		shown, _ := eval[string](tb, `document.getElementById("path").textContent`)
		return path != "" && shown != "", path + " / " + shown
	})
	took := time.Duration(at * float64(time.Millisecond))
	if took > within {
		t.Errorf("the room decoded the hub %.1f s after its page loaded, want within %v", took.Seconds(), within)
	}
	return took, path
}

// iceReportJS lists a page's candidates and candidate pairs (sub and pub
// connections) for a failure's log.
const iceReportJS = `(async () => {
  const out = [];
  const ss = citybridge.session;
  out.push("state " + citybridge.state + " errors " + JSON.stringify(citybridge.errors) + " pending pub " + (ss ? ss.pending.pub.length : "-") + " sub " + (ss ? ss.pending.sub.length : "-"));
  for (const [name, pc] of Object.entries(ss ? ss.pcs : {})) {
    out.push(name + " " + pc.connectionState + "/" + pc.iceConnectionState + "/" + pc.signalingState + " remote has candidates: " + (pc.remoteDescription ? (pc.remoteDescription.sdp.match(/a=candidate.*/g) || []).join(" | ") : "no description"));
    const r = await pc.getStats();
    r.forEach((s) => {
      if (s.type === "local-candidate" || s.type === "remote-candidate")
        out.push(name + " " + s.type + " " + s.candidateType + " " + s.protocol + " " + s.address + ":" + s.port + (s.relayProtocol ? " via " + s.relayProtocol : ""));
      if (s.type === "candidate-pair")
        out.push(name + " pair " + s.state + " nominated=" + s.nominated + " " + s.localCandidateId + " -> " + s.remoteCandidateId + " sent=" + s.requestsSent + " resp=" + s.responsesReceived);
    });
  }
  return out.join("\n");
})()`

// hostSeesPath waits for the server's roster and the host's tile to show
// the room's path.
func hostSeesPath(t *testing.T, ts *testServer, host *tab, room, path string) {
	t.Helper()
	waitUntil(t, 10*time.Second, "the host's tile showing the room's path", func() (bool, string) {
		got := ""
		for _, e := range ts.sig.Roster(ts.demo.Conference.ID) {
			if e.ID == room {
				got = e.Path
			}
		}
		cls, _ := eval[string](host, `(document.querySelector('#wall [data-bridge="`+room+`"] .path') || {}).className || ""`)
		return got == path && strings.Contains(cls, path), "roster " + got + ", tile class " + cls
	})
}

// TestBrowserUDPBlocked: a room whose firewall drops all UDP still joins
// and decodes the hub's video within 10 s, over ICE-TCP on the HTTPS port
// (or the relay over TCP/TLS), and says so on its page and the host's wall.
func TestBrowserUDPBlocked(t *testing.T) {
	requireMediaPass(t)
	link := newNetLink(t)
	ts := startTestServerWith(t, func(c *Config) {
		c.Listen = netip.AddrPortFrom(link.hostAddr, 0).String()
		c.UDPHost = link.hostAddr.String()
		c.MediaAllow = []netip.Prefix{link.prefix}
		c.PublicIPs = []string{link.hostAddr.String()}
		c.ICETCP, c.TURN, c.TURNPort, c.TURNTTL = true, true, 3478, time.Hour
	})
	link.blockUDP(t)
	const room = "commune-007"
	host := openTab(t, newBrowser(t), "host", ts.base+"/host#t="+ts.demo.HostToken)
	waitUntil(t, 30*time.Second, "the hub publishing", func() (bool, string) {
		n := ts.media.Stats().Tracks
		return n >= 2, fmt.Sprint(n, " tracks")
	})
	tb := openTab(t, newBrowserIn(t, link), room, ts.terminalLink(t, room))
	saveScreenshotsOnFailure(t, host, tb)
	took, path := roomDecodesWithin(t, tb, 10*time.Second)
	t.Logf("UDP blocked: the room decoded the hub %.1f s after its page loaded, path %q", took.Seconds(), path)
	if path != "tcp" && path != "relay-tcp" && path != "relay-tls" {
		t.Errorf("path %q with UDP blocked: want tcp, relay-tcp or relay-tls", path)
	}
	hostSeesPath(t, ts, host, room, path)
}

// natRoom is a room behind a masquerading router: three namespaces' worth
// (the room's, the router's, and the root one where the server runs),
// joined by veth pairs with addresses the test makes. The router forwards
// only TCP to the server's HTTPS port and UDP/TCP to its TURN port, as a
// commune's firewall would: media can only go through the relay.
type natRoom struct {
	outer *netLink // root <-> router
	room  *netLink // router <-> room (host side in the router's namespace)
}

func newNATRoom(t *testing.T, httpsPort, turnPort int) *natRoom {
	t.Helper()
	outer := newNetLink(t) // its namespace is the router
	n := int(linkSeq.Add(1))
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, n)
	base := outer.prefix.Addr().As4()
	base[3] += 4 // the next /30 after the outer link's
	inner := netip.AddrFrom4(base)
	r := &natRoom{outer: outer, room: &netLink{
		ns: "cbn" + id, host: "cbr" + id, peer: "cbm" + id,
		hostAddr: inner.Next(), peerAddr: inner.Next().Next(), prefix: netip.PrefixFrom(inner, 30),
	}}
	rl := r.room
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", rl.ns).CombinedOutput(); err != nil {
			t.Logf("cleanup: %v: %s", err, out)
		}
	})
	rl.run(t, "ip", "netns", "add", rl.ns)
	rl.run(t, "ip", "link", "add", rl.host, "type", "veth", "peer", "name", rl.peer)
	rl.run(t, "ip", "link", "set", rl.host, "netns", outer.ns)
	rl.run(t, "ip", "link", "set", rl.peer, "netns", rl.ns)
	rl.run(t, "ip", "-n", outer.ns, "addr", "add", rl.hostAddr.String()+"/30", "dev", rl.host)
	rl.run(t, "ip", "-n", outer.ns, "link", "set", rl.host, "up")
	rl.run(t, "ip", "-n", rl.ns, "addr", "add", rl.peerAddr.String()+"/30", "dev", rl.peer)
	rl.run(t, "ip", "-n", rl.ns, "link", "set", rl.peer, "up")
	rl.run(t, "ip", "-n", rl.ns, "link", "set", "lo", "up")
	rl.run(t, "ip", "-n", rl.ns, "route", "add", "default", "via", rl.hostAddr.String())
	rl.run(t, "ip", "netns", "exec", outer.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rules := fmt.Sprintf(`table ip cbnat {
	chain routerfwd {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "%[1]s" ip daddr %[2]s tcp dport { %[3]d, %[4]d } accept
		iifname "%[1]s" ip daddr %[2]s udp dport %[4]d accept
	}
	chain routernat {
		type nat hook postrouting priority 100; policy accept;
		oifname "%[5]s" masquerade
	}
}
`, rl.host, outer.hostAddr, httpsPort, turnPort, outer.peer)
	cmd := exec.Command("ip", "netns", "exec", outer.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft (router): %v: %s", err, out)
	}
	return r
}

// TestBrowserBehindNAT: a room's Chromium behind a masquerading router
// that lets through only the HTTPS and TURN ports joins, gets TURN
// credentials at join, relays its media through the embedded TURN server
// and decodes the hub's video.
func TestBrowserBehindNAT(t *testing.T) {
	requireMediaPass(t)
	// The HTTPS port must be known before the router's rules: pick one.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsPort := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	const turnPort = 3478
	nat := newNATRoom(t, httpsPort, turnPort)
	outer := nat.outer
	ts := startTestServerWith(t, func(c *Config) {
		c.Listen = netip.AddrPortFrom(outer.hostAddr, uint16(httpsPort)).String()
		c.UDPHost = outer.hostAddr.String()
		c.MediaAllow = []netip.Prefix{outer.prefix}
		c.PublicIPs = []string{outer.hostAddr.String()}
		// No ICE-TCP: the relay is the only way in, so the test proves it.
		c.ICETCP, c.TURN, c.TURNPort, c.TURNTTL = false, true, turnPort, time.Hour
	})
	const room = "zone-02"
	host := openTab(t, newBrowser(t), "host", ts.base+"/host#t="+ts.demo.HostToken)
	waitUntil(t, 30*time.Second, "the hub publishing", func() (bool, string) {
		n := ts.media.Stats().Tracks
		return n >= 2, fmt.Sprint(n, " tracks")
	})
	u, _ := url.Parse(ts.terminalLink(t, room))
	tb := openTab(t, newBrowserIn(t, nat.room), room, u.String())
	saveScreenshotsOnFailure(t, host, tb)
	took, path := roomDecodesWithin(t, tb, 15*time.Second)
	t.Logf("behind NAT: the room decoded the hub %.1f s after its page loaded, path %q, %d relays", took.Seconds(), path, ts.turn.Allocations())
	if !strings.HasPrefix(path, "relay-") {
		t.Errorf("path %q behind the NAT: want the relay", path)
	}
	if ts.turn.Allocations() == 0 {
		t.Error("the embedded TURN server has no allocation")
	}
	hostSeesPath(t, ts, host, room, path)
}

// joinRoom joins the server's signaling as bridge, with a terminal link a
// technician issues, and returns the connection and its joined message.
func joinRoom(t *testing.T, ts *testServer, bridge string) (*websocket.Conn, *wire.Joined) {
	t.Helper()
	link := ts.terminalLink(t, bridge)
	return joinWith(t, ts, link[strings.Index(link, "#t=")+3:])
}

// joinWith joins with token; the connection closes when the test ends.
func joinWith(t *testing.T, ts *testServer, token string) (*websocket.Conn, *wire.Joined) {
	t.Helper()
	c, m := joinAt(t, ts, token)
	j, ok := m.(*wire.Joined)
	if !ok {
		t.Fatalf("join refused: %+v", m)
	}
	return c, j
}

// audioOffer is a pion client's publishing offer with one audio track.
func audioOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// TestExternalTURN: with --turn-url the pages get exactly those URLs, with
// a TURN REST credential a coturn sharing --turn-secret accepts (checked
// here by recomputing its HMAC), and no built-in relay runs. With TURN
// off, pages get no ICE server at all.
func TestExternalTURN(t *testing.T) {
	urls := []string{"turn:127.0.0.9:3478?transport=udp", "turns:127.0.0.9:5349?transport=tcp"}
	ts := startTestServerWith(t, func(c *Config) {
		c.TURN, c.TURNURLs, c.TURNSecret, c.TURNTTL = true, urls, "coturn-secret", 2*time.Hour
		c.PublicIPs = []string{"127.0.0.1"}
	})
	if ts.turn != nil {
		t.Error("the built-in relay runs although an external TURN server is configured")
	}
	_, j := joinRoom(t, ts, "ward-002")
	if len(j.ICEServers) != 1 || strings.Join(j.ICEServers[0].URLs, " ") != strings.Join(urls, " ") {
		t.Fatalf("ICE servers %+v, want exactly %v", j.ICEServers, urls)
	}
	s := j.ICEServers[0]
	exp, user, _ := strings.Cut(s.Username, ":")
	var expiry int64
	if _, err := fmt.Sscan(exp, &expiry); err != nil || user != "ward-002" {
		t.Fatalf("username %q: want expiry:ward-002", s.Username)
	}
	if left := time.Until(time.Unix(expiry, 0)); left < 2*time.Hour-time.Minute || left > 2*time.Hour+time.Minute {
		t.Errorf("credential valid for %v, want the configured 2h", left)
	}
	mac := hmac.New(sha1.New, []byte("coturn-secret"))
	mac.Write([]byte(s.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); s.Credential != want {
		t.Errorf("credential %q is not HMAC-SHA1(secret, username) %q", s.Credential, want)
	}

	off := startTestServerWith(t, func(c *Config) { c.TURN = false; c.PublicIPs = []string{"127.0.0.1"} })
	if _, j := joinRoom(t, off, "ward-002"); len(j.ICEServers) != 0 || off.turn != nil {
		t.Errorf("with TURN off: ICE servers %+v, relay %v", j.ICEServers, off.turn)
	}
}
