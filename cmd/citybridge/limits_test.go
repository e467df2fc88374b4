package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
)

// clientFrom is an HTTPS client of ts whose connections come from the
// loopback address from (127.0.0.0/8 only).
func clientFrom(ts *testServer, from string) *http.Client {
	d := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     d.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64,
	}}
}

// loginFrom posts a login from c as a page of ts would; it returns the
// status and the error code, if any.
func loginFrom(t *testing.T, ts *testServer, c *http.Client, name, password string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name, "password": password})
	req, _ := http.NewRequest("POST", ts.base+"/api/login", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", ts.base)
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var e struct{ Code string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Code
}

// auditCount counts the audit log's entries that match.
func auditCount(t *testing.T, st *controlplane.Store, match func(controlplane.AuditEntry) bool) int {
	t.Helper()
	es, err := st.AuditLog(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if match(e) {
			n++
		}
	}
	return n
}

// TestUnauthenticatedWritesBounded: what anyone can send without a
// credential writes a bounded amount, and no more. Names no login can
// have (64 KB, control characters, capitals) are refused before any
// limiter, log or write; a flood of wrong passwords from one address, and
// from thirty, writes at most the guard's count of failures per address
// (refusals write nothing), in entries of bounded size; and however many
// failures others caused, the administrator logs in from an address that
// did not fail. The audit log reads a page at a time.
func TestUnauthenticatedWritesBounded(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	st := ts.store
	if err := st.SetPassword("admin", "the-right-one-1"); err != nil {
		t.Fatal(err)
	}
	before := auditCount(t, st, func(controlplane.AuditEntry) bool { return true })

	// Names no login can have: 400, nothing written, nothing counted.
	odd := clientFrom(ts, "127.0.0.2")
	for i, name := range []string{strings.Repeat("a", 64<<10), "admin\r\n=cmd", "Admin", "", "../admin", strings.Repeat("x", 33)} {
		for range 50 {
			if code, _ := loginFrom(t, ts, odd, name, "guess"); code != http.StatusBadRequest {
				t.Fatalf("name %d (%d bytes): %d, want 400", i, len(name), code)
			}
		}
	}
	if n := auditCount(t, st, func(controlplane.AuditEntry) bool { return true }); n != before {
		t.Fatalf("%d audit entries written for logins with impossible names", n-before)
	}
	if code, _ := loginFrom(t, ts, odd, "admin", "the-right-one-1"); code != 200 {
		t.Fatalf("the address that sent impossible names was counted: %d", code)
	}

	// One address, 300 wrong passwords for the administrator, 30 at once.
	flood := func(from string, n int) map[int]int {
		c := clientFrom(ts, from)
		codes := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 30)
		for range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				code, _ := loginFrom(t, ts, c, "admin", "wrong-guess")
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return codes
	}
	failed := func() int {
		return auditCount(t, st, func(e controlplane.AuditEntry) bool { return e.Action == "login" && e.Result != "ok" })
	}
	codes := flood("127.0.0.3", 300)
	if codes[401] < 1 || codes[401] > 5 || codes[401]+codes[429] != 300 {
		t.Errorf("one address, 300 wrong passwords: %v; want at most 5 checked (401), the rest 429", codes)
	}
	if f := failed(); f != codes[401] {
		t.Errorf("%d failures written for %d checked", f, codes[401])
	}
	// Thirty addresses, 20 each.
	for i := range 30 {
		flood(fmt.Sprintf("127.0.1.%d", i+1), 20)
	}
	if f := failed(); f > 31*5 {
		t.Errorf("%d failed logins written from 31 addresses: want at most 5 each", f)
	}
	es, _ := st.AuditLog(time.Time{}, time.Time{})
	for _, e := range es[before:] {
		if b, _ := json.Marshal(e); len(b) > 512 {
			t.Errorf("an audit entry of %d bytes from an anonymous caller: %s", len(b), b)
		}
	}
	// The administrator is not shut out by all that.
	if code, _ := loginFrom(t, ts, clientFrom(ts, "127.0.0.99"), "admin", "the-right-one-1"); code != 200 {
		t.Errorf("the administrator from an address that never failed: %d, want 200", code)
	}
	// Nor the flooding address's other names: the address limit is a minute.
	if code, errc := loginFrom(t, ts, clientFrom(ts, "127.0.0.3"), "admin", "the-right-one-1"); code != 429 {
		t.Errorf("the flooding address with the right password: %d %s, want 429", code, errc)
	}

	// GET /api/audit pages.
	tok, _, err := st.NewSession(controlplane.User{Name: "admin", Role: controlplane.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	total := auditCount(t, st, func(controlplane.AuditEntry) bool { return true })
	seen, pages, next := 0, 0, "/api/audit?limit=50"
	for next != "" {
		req, _ := http.NewRequest("GET", ts.base+next, nil)
		req.AddCookie(&http.Cookie{Name: controlplane.SessionCookie, Value: tok})
		resp, err := ts.client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", next, resp, err)
		}
		var page []controlplane.AuditEntry
		_ = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if len(page) > 50 {
			t.Fatalf("a page of %d entries, limit 50", len(page))
		}
		seen += len(page)
		pages++
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = l[strings.Index(l, "<")+1 : strings.Index(l, ">")]
		}
	}
	// The pages' own reads are audited as they are made.
	if seen < total || pages < total/50 {
		t.Errorf("%d entries in %d pages, the log holds %d", seen, pages, total)
	}
}

// TestAdmissionLimitsConcurrent: limits hold when the requests come all at
// once. 60 WHEP viewers with one viewer link against --max-viewers 50:
// exactly 50 are admitted. 40 wrong passwords at once from one address:
// at most the guard's 5 are checked. 40 TURN allocations at once with one
// credential over TCP: at most the quota's 24 relays.
func TestAdmissionLimitsConcurrent(t *testing.T) {
	t.Parallel()
	ts := startTestServerWith(t, func(c *Config) {
		c.MaxViewers = 50
		c.PublicIPs = []string{"127.0.0.1"}
		c.TURN, c.TURNPort = true, 0 // TURN over TCP on the shared port only
	})
	conf := ts.demo.Conference.ID
	viewer, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleViewer, Conference: conf})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer := offerGathered(t, pc)
	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", ts.base+"/whep/"+conf, strings.NewReader(offer))
			req.Header.Set("Authorization", "Bearer "+viewer)
			req.Header.Set("Content-Type", "application/sdp")
			resp, err := ts.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if statuses[201] != 50 || statuses[503] != 10 {
		t.Errorf("60 WHEP viewers at once against 50: %v, want 50 × 201 and 10 × 503", statuses)
	}
	if n := ts.sig.Sessions()[controlplane.RoleViewer]; n != 50 {
		t.Errorf("%d viewer sessions, want 50", n)
	}

	// Logins.
	c := clientFrom(ts, "127.0.0.5")
	codes := map[int]int{}
	start = make(chan struct{})
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, _ := loginFrom(t, ts, c, "admin", "wrong-guess")
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if codes[401] > 5 || codes[401]+codes[429] != 40 {
		t.Errorf("40 wrong passwords at once: %v, want at most 5 checked (401), the rest 429", codes)
	}

	// TURN relays.
	user, pass, err := sfu.TURNCredentials(ts.turnSecret, "ward-001", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var relays, answered atomic.Int32
	start = make(chan struct{})
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", ts.addr.String(), 3*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			stun := turn.NewSTUNConn(conn)
			defer stun.Close()
			cl, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: ts.addr.String(), TURNServerAddr: ts.addr.String(), Conn: stun,
				Username: user, Password: pass, Realm: "citybridge", RTO: 200 * time.Millisecond,
			})
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			if err := cl.Listen(); err != nil {
				t.Error(err)
				return
			}
			<-start
			relay, err := cl.Allocate()
			answered.Add(1)
			if err == nil {
				relays.Add(1)
				<-t.Context().Done()
				relay.Close()
			}
		}()
	}
	close(start)
	waitFor(t, 15*time.Second, "every allocation answered", func() bool { return answered.Load() == 40 })
	if n := ts.turn.Allocations(); n != 24 || relays.Load() != 24 {
		t.Errorf("40 allocations at once with one credential: %d relays (%d clients told yes), want the quota's 24", n, relays.Load())
	}
	t.Cleanup(wg.Wait) // the allocating clients end with the test's context
}

// TestControlRateLimited: a room floods its hand (2,000 raise and lower
// in 3 s): past the allowance (20 at once, 4 a second) its actions are
// refused with rate_limited without a write or a broadcast, and after 50
// refusals in a row it is disconnected (the client may see a reset rather
// than the last answers: it had not read them); what was written (audit entries,
// floor broadcasts the chair received) stays within the allowance; the
// chair's session meanwhile carries on, and an action that changes
// nothing (a second raised hand) broadcasts nothing.
func TestControlRateLimited(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	host, _ := joinWith(t, ts, ts.demo.HostToken)
	room, _ := joinRoom(t, ts, "ward-001")
	var floors atomic.Int32
	var lastFloor atomic.Pointer[wire.Floor]
	hostDone := make(chan struct{})
	go func() {
		defer close(hostDone)
		for {
			m, err := wsNext(host, 30*time.Second, wire.TypeFloor)
			if err != nil {
				return
			}
			if f := m.(*wire.Floor); f.State != "" {
				lastFloor.Store(f)
				floors.Add(1)
			}
		}
	}()
	audited := func() int {
		return auditCount(t, ts.store, func(e controlplane.AuditEntry) bool { return e.Who == "room link ward-001" })
	}
	began := time.Now()
	limited, sent := 0, 0
	var dropped error
	readDone := make(chan struct{})
	go func() { // the room's answers
		defer close(readDone)
		for {
			m, err := wsNext(room, 10*time.Second, wire.TypeError)
			if err != nil {
				dropped = err
				return
			}
			if m.(*wire.Error).Code == wire.CodeRateLimited {
				limited++
			}
		}
	}()
	for i := range 2000 {
		action := controlplane.ActionRaiseHand
		if i%2 == 1 {
			action = controlplane.ActionLowerHand
		}
		if wsSend(room, wire.Control{Action: string(action)}) != nil {
			break
		}
		sent++
		if time.Since(began) > 3*time.Second {
			break
		}
	}
	<-readDone
	elapsed := time.Since(began)
	// Disconnected: closed, or reset (the server closed with the flood
	// unread in its buffer), not a read that timed out.
	var ne net.Error
	if dropped == nil || (errors.As(dropped, &ne) && ne.Timeout()) || !strings.Contains(ts.logs.String(), "kept sending control over the limit") {
		t.Errorf("the flooding room was not disconnected for its controls (%v)", dropped)
	}
	allowance := 20 + int(4*elapsed.Seconds()) + 2
	if n := audited(); n > allowance || n < 20 {
		t.Errorf("%d of %d hand actions in %v were carried out and audited; the allowance is %d", n, sent, elapsed.Round(time.Millisecond), allowance)
	}
	// The answers may be lost with the connection: the server closes it
	// with the flood unread, which resets it, and a reset can discard what
	// the room had not read yet. The server disconnects only after 50
	// refusals answered rate_limited, and says so in its log.
	reset := websocket.IsCloseError(dropped, websocket.CloseAbnormalClosure) || errors.Is(dropped, syscall.ECONNRESET)
	if limited == 0 && !(reset && strings.Contains(ts.logs.String(), "kept sending control over the limit")) {
		t.Errorf("no rate_limited answer before the disconnection (%d sent, ended by %v)", sent, dropped)
	}
	if f := int(floors.Load()); f > allowance {
		t.Errorf("the chair received %d floor broadcasts from the flood; the allowance is %d", f, allowance)
	}
	// The chair carries on.
	before := floors.Load()
	if err := wsSend(host, wire.Control{Action: string(controlplane.ActionGiveFloor), Bridge: "ward-002"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the chair's action broadcast", func() bool { return floors.Load() > before })
	// A second room raising its hand twice: one broadcast.
	other, _ := joinRoom(t, ts, "ward-003")
	before = floors.Load()
	_ = wsSend(other, wire.Control{Action: string(controlplane.ActionRaiseHand)})
	waitFor(t, 5*time.Second, "the raised hand broadcast", func() bool { return floors.Load() > before })
	_ = wsSend(other, wire.Control{Action: string(controlplane.ActionRaiseHand)})
	if _, err := wsNext(other, 5*time.Second, wire.TypeFloor); err != nil {
		t.Fatal(err) // the first raise's broadcast
	}
	if _, err := wsNext(other, 5*time.Second, wire.TypeFloor); err != nil {
		t.Fatalf("the unchanged raise was not answered to its sender: %v", err)
	}
	// Then the hand lowered: its broadcast comes after any the unchanged
	// raise would have caused.
	_ = wsSend(other, wire.Control{Action: string(controlplane.ActionLowerHand)})
	waitFor(t, 5*time.Second, "the lowered hand broadcast", func() bool {
		f := lastFloor.Load()
		return f != nil && !slices.Contains(f.Hands, "ward-003")
	})
	if n := floors.Load() - before; n != 2 {
		t.Errorf("raise, raise again, lower: %d broadcasts to the chair, want 2", n)
	}
	host.Close()
	<-hostDone
}

// whepSession posts a receive-only WHEP offer with token and returns the
// resource's location.
func whepSession(t *testing.T, ts *testServer, offer, token string) string {
	t.Helper()
	resp, body := mediaPost(t, ts, "/whep/"+ts.demo.Conference.ID, token, "application/sdp", offer)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// recvOffer is a gathered receive-only offer of video and audio.
func recvOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	return offerGathered(t, pc)
}

// TestRevocationEndsSessions: revoking links ends what they opened within
// a second: a room's WebSocket (bye "revoked", its media closed, the
// roster showing it left), 60 WHEP viewers of a viewer link (their
// resources gone), and a technician's live links feed.
func TestRevocationEndsSessions(t *testing.T) {
	t.Parallel()
	ts := startTestServerWith(t, func(c *Config) { c.MaxViewers = 60 })
	conf := ts.demo.Conference.ID
	room, _ := joinRoom(t, ts, "ward-001")
	host, _ := joinWith(t, ts, ts.demo.HostToken)
	viewer, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleViewer, Conference: conf})
	if err != nil {
		t.Fatal(err)
	}
	offer := recvOffer(t)
	var locations []string
	for range 60 {
		locations = append(locations, whepSession(t, ts, offer, viewer))
	}
	tech, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleTechnician, Name: "night"})
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	feed, _, err := d.Dial("wss"+strings.TrimPrefix(ts.base, "https")+"/api/links/live", http.Header{"Origin": {ts.base}})
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	if err := feed.WriteJSON(map[string]string{"token": tech}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := feed.ReadMessage(); err != nil {
		t.Fatalf("live feed: %v", err)
	}
	if n := ts.sig.Sessions()[controlplane.RoleViewer]; n != 60 {
		t.Fatalf("%d viewers before the revocation, want 60", n)
	}

	revoked := time.Now()
	if code, b := callAs(t, ts, "DELETE", "/api/bridges/ward-001/terminal-links", ts.demo.TechnicianToken); code != 200 {
		t.Fatalf("revoking the terminal links: %d %s", code, b)
	}
	if code, b := callAs(t, ts, "DELETE", "/api/conferences/"+conf+"/viewer-links", ts.demo.HostToken); code != 200 {
		t.Fatalf("revoking the viewer links: %d %s", code, b)
	}
	if code, b := asAdmin(t, ts, "DELETE", "/api/technician-links/night", ""); code != 200 {
		t.Fatalf("revoking the technician link: %d %s", code, b)
	}

	m, err := wsNext(room, 3*time.Second, wire.TypeBye)
	if err != nil || m.(*wire.Bye).Reason != wire.ByeRevoked {
		t.Fatalf("the room after its link was revoked: %v %v, want bye revoked", m, err)
	}
	if took := time.Since(revoked); took > 1500*time.Millisecond {
		t.Errorf("the room's session ended %v after the revocation, want within a second", took)
	}
	waitFor(t, time.Second, "every viewer ended", func() bool { return ts.sig.Sessions()[controlplane.RoleViewer] == 0 })
	for _, loc := range locations[:5] {
		resp, body := request(t, ts, "DELETE", loc, viewer, "", "")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("DELETE %s after the revocation: %d %s, want 404 (the resource is gone)", loc, resp.StatusCode, body)
		}
	}
	_ = feed.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		if _, _, err := feed.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("the live feed went on after its technician link was revoked")
			}
			break
		}
	}
	// The chair sees the room left (not reconnecting): it will not come back.
	waitFor(t, 3*time.Second, "ward-001 left on the roster", func() bool {
		for _, e := range ts.sig.Roster(conf) {
			if e.ID == "ward-001" {
				return e.State == wire.StateLeft
			}
		}
		return false
	})
	_ = host
}

// asAdmin calls the API as a logged-in administrator from the server's own
// page; it returns the status and the body.
func asAdmin(t *testing.T, ts *testServer, method, path, body string) (int, string) {
	t.Helper()
	tok, _, err := ts.store.NewSession(controlplane.User{Name: "admin", Role: controlplane.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", ts.base)
	req.AddCookie(&http.Cookie{Name: controlplane.SessionCookie, Value: tok})
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
