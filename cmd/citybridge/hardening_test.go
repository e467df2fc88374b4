package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/terminal"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

// wsDial opens a signaling WebSocket to ts from the local address from
// ("" for any), with TLS session resumption from cache.
func wsDial(ctx context.Context, ts *testServer, from string, cache tls.ClientSessionCache) (*websocket.Conn, *http.Response, error) {
	nd := &net.Dialer{Timeout: 3 * time.Second}
	if from != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	d := websocket.Dialer{
		NetDialContext:   nd.DialContext,
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache},
		HandshakeTimeout: 3 * time.Second,
	}
	return d.DialContext(ctx, "wss"+strings.TrimPrefix(ts.base, "https")+"/signal", http.Header{"Origin": {ts.base}})
}

func wsSend(c *websocket.Conn, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	return c.WriteMessage(websocket.TextMessage, b)
}

// wsNext reads the next message of one of the given types (others are
// skipped), or fails after d.
func wsNext(c *websocket.Conn, d time.Duration, types ...string) (wire.Message, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return nil, err
		}
		m, err := wire.Decode(b)
		if err != nil {
			return nil, err
		}
		if len(types) == 0 || slices.Contains(types, m.MessageType()) {
			return m, nil
		}
	}
}

// TestJoinFlood: one address tries 1,000 joins a second with bad tokens.
// After a few failures its attempts are refused (429) before any work is
// done, and a legitimate room joining from another address meanwhile gets
// its "joined" within 1 s every time.
func TestJoinFlood(t *testing.T) {
	requireMediaPass(t) // measures delays: not under the race detector
	ts := startTestServer(t)
	link := ts.terminalLink(t, "commune-010")
	good := link[strings.Index(link, "#t=")+3:]

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var attempts, limited, refused, other atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Millisecond) // 1,000 a second, shared by the workers
	defer tick.Stop()
	cache := tls.NewLRUClientSessionCache(64)
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				attempts.Add(1)
				c, resp, err := wsDial(ctx, ts, "127.0.0.1", cache)
				if err != nil {
					if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
						limited.Add(1)
					} else if ctx.Err() == nil {
						other.Add(1)
					}
					continue
				}
				_ = wsSend(c, wire.Join{Token: "not-a-valid-token"})
				if m, err := wsNext(c, 3*time.Second, wire.TypeError); err == nil && m.(*wire.Error).Code == wire.CodeTokenInvalid {
					refused.Add(1)
				} else {
					other.Add(1)
				}
				c.Close()
			}
		}()
	}

	start := time.Now()
	time.Sleep(time.Second) // let the flood reach its rate
	var worst time.Duration
	for i := range 5 {
		began := time.Now()
		c, _, err := wsDial(context.Background(), ts, "127.0.0.2", nil)
		if err != nil {
			t.Fatalf("legitimate join %d from another address: %v", i, err)
		}
		if err := wsSend(c, wire.Join{Token: good}); err != nil {
			t.Fatal(err)
		}
		m, err := wsNext(c, 5*time.Second, wire.TypeJoined, wire.TypeError)
		took := time.Since(began)
		if err != nil || m.MessageType() != wire.TypeJoined {
			t.Fatalf("legitimate join %d: %v %v", i, m, err)
		}
		_ = wsSend(c, wire.Leave{})
		c.Close()
		worst = max(worst, took)
		time.Sleep(300 * time.Millisecond)
	}
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	rate := float64(attempts.Load()) / elapsed.Seconds()
	t.Logf("flood: %d attempts in %.1f s (%.0f/s): %d refused before upgrade (429), %d reached the join and were refused, %d other; legitimate joins from another address: worst %v",
		attempts.Load(), elapsed.Seconds(), rate, limited.Load(), refused.Load(), other.Load(), worst.Round(time.Millisecond))
	if rate < 300 {
		t.Errorf("the flood reached only %.0f attempts/s: the test did not test much", rate)
	}
	// The burst, then the refill rate over the run, and some slack for
	// attempts already past the check when the allowance ran out.
	if maxRefused := int64(20 + 2*elapsed.Seconds() + 30); refused.Load() > maxRefused {
		t.Errorf("%d bad joins reached the join step, want at most %d: the address was not limited", refused.Load(), maxRefused)
	}
	if limited.Load() == 0 {
		t.Error("no attempt was refused with 429")
	}
	if worst > time.Second {
		t.Errorf("a legitimate room's join took %v during the flood, want at most 1 s", worst)
	}
}

// TestMalformedSignaling: a joined client sends invalid JSON, unknown
// types, messages out of order, a second join and a thousand offers a
// second; other clients send an oversized frame and garbage before
// joining. Each gets a typed error or loses its own connection; a room
// terminal keeps receiving the hub's media throughout, and once the
// abusers are gone no goroutine is left behind.
func TestMalformedSignaling(t *testing.T) {
	ts := startTestServerWith(t, func(c *Config) { c.ReconnectGrace = 500 * time.Millisecond })
	var tokens []string
	for _, b := range []string{"ward-010", "ward-011"} {
		link := ts.terminalLink(t, b)
		tokens = append(tokens, link[strings.Index(link, "#t=")+3:])
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	conf := ts.demo.Conference.ID
	hub, err := terminal.StartFleet(ts.base, conf, []string{ts.demo.HostToken}, []string{"q"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Stop)
	rooms, err := terminal.StartFleet(ts.base, conf, tokens[:1], []string{"q"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rooms.Stop)
	room := rooms.Terminals[0]
	waitFor(t, 30*time.Second, "the room receiving the hub", func() bool { return room.HubPackets() > 50 })
	time.Sleep(time.Second) // goroutines of the joins settle
	baseline := runtime.NumGoroutine()
	flowing := func(what string) {
		t.Helper()
		before := room.HubPackets()
		waitFor(t, 5*time.Second, "the room still receiving the hub "+what, func() bool { return room.HubPackets() > before+20 })
	}

	// A joined abuser.
	c, _ := joinWith(t, ts, tokens[1])
	expect := func(what string, send func() error, code string) {
		t.Helper()
		if err := send(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		m, err := wsNext(c, 5*time.Second, wire.TypeError)
		if err != nil || m.(*wire.Error).Code != code {
			t.Errorf("%s: got %v %v, want error %s", what, m, err, code)
		}
	}
	raw := func(b string) func() error {
		return func() error { return c.WriteMessage(websocket.TextMessage, []byte(b)) }
	}
	expect("invalid JSON", raw(`{"type":"offer",`), wire.CodeBadMessage)
	expect("unknown type", raw(`{"type":"teleport"}`), wire.CodeUnknownType)
	expect("binary frame", func() error { return c.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}) }, wire.CodeBadMessage)
	expect("an answer nobody asked for", raw(`{"type":"answer","pc":"sub","sdp":"v=0\r\n"}`), wire.CodeNegotiationFailed)
	expect("a second join", func() error { return wsSend(c, wire.Join{Token: tokens[1]}) }, wire.CodeAlreadyJoined)
	expect("a server-only message", raw(`{"type":"roster","bridges":[]}`), wire.CodeBadMessage)
	expect("a path that is not one", raw(`{"type":"report","path":"carrier-pigeon"}`), wire.CodeBadMessage)
	flowing("after malformed messages")

	// A thousand offers in about a second.
	offer := audioOffer(t)
	var answers, limited atomic.Int64
	readDone := make(chan error, 1)
	go func() {
		for {
			m, err := wsNext(c, 10*time.Second)
			if err != nil {
				readDone <- err
				return
			}
			switch m := m.(type) {
			case *wire.Answer:
				answers.Add(1)
			case *wire.Error:
				if m.Code == wire.CodeRateLimited {
					limited.Add(1)
				}
			}
		}
	}()
	sent := 0
	for i := range 1000 {
		if err := wsSend(c, wire.Offer{PC: wire.PCPublish, SDP: offer}); err != nil {
			break // disconnected, as it should be
		}
		sent++
		if i%10 == 9 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	err = <-readDone
	var ce *websocket.CloseError
	if !errors.As(err, &ce) && !errors.Is(err, net.ErrClosed) && !strings.Contains(fmt.Sprint(err), "EOF") && !strings.Contains(fmt.Sprint(err), "reset") {
		t.Errorf("the offering client was not disconnected: %v", err)
	}
	t.Logf("offer flood: %d sent before the server closed, %d answered, %d refused as rate_limited", sent, answers.Load(), limited.Load())
	if answers.Load() > 20 || limited.Load() == 0 {
		t.Errorf("%d offers answered and %d refused: want the rate limit to refuse all but a few", answers.Load(), limited.Load())
	}
	flowing("after an offer flood")
	c.Close()

	// Clients that never join.
	for name, send := range map[string]func(*websocket.Conn) error{
		"an oversized frame": func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 2<<20))
		},
		"garbage before join": func(c *websocket.Conn) error { return c.WriteMessage(websocket.TextMessage, []byte("\x00\xff")) },
		"an offer before join": func(c *websocket.Conn) error {
			return wsSend(c, wire.Offer{PC: wire.PCPublish, SDP: offer})
		},
	} {
		c2, _, err := wsDial(context.Background(), ts, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = send(c2)
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		var rerr error
		for rerr == nil {
			_, _, rerr = c2.ReadMessage()
		}
		if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the connection stayed open", name)
		}
		c2.Close()
	}
	flowing("after clients that never joined")

	// Nothing left behind once the abusers' places have expired.
	var now int
	waitUntil(t, 15*time.Second, "goroutines back to where they were", func() (bool, string) {
		now = runtime.NumGoroutine()
		return now <= baseline+5, fmt.Sprintf("%d goroutines, %d before", now, baseline)
	})
	if errs := hub.Errors(); len(errs) > 0 {
		t.Errorf("the hub terminal reported %v", errs)
	}
}

// TestAllowedOrigins: a page from another site cannot open the signaling
// WebSocket nor use an administrator's cookie; an origin named by
// --allowed-origin (a reverse proxy's name) can; clients that send no
// Origin reach the join; the server's own host under http:// is another
// origin; a bad --allowed-origin is refused at start.
func TestAllowedOrigins(t *testing.T) {
	const proxy = "https://bridge.city.example"
	ts := startTestServerWith(t, func(c *Config) { c.AllowedOrigins = []string{proxy} })
	if err := ts.store.SetPassword("admin", "origin-pass-1"); err != nil {
		t.Fatal(err)
	}
	us, _ := ts.store.Users()
	cookie, _, err := ts.store.NewSession(us[0])
	if err != nil {
		t.Fatal(err)
	}
	upgrade := func(origin string) int {
		t.Helper()
		d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 3 * time.Second}
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := d.Dial("wss"+strings.TrimPrefix(ts.base, "https")+"/signal", h)
		if err == nil {
			c.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	post := func(origin string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", ts.base+"/api/bridges", strings.NewReader(`{"id":"`+next("origin-")+`","name":"O","kind":"ward"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		req.AddCookie(&http.Cookie{Name: controlplane.SessionCookie, Value: cookie})
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The server's own host under another scheme is another origin.
	plain := "http" + strings.TrimPrefix(ts.base, "https")
	for origin, want := range map[string]int{ts.base: 101, proxy: 101, "https://evil.example": 403, "": 101, "https://bridge.city.example.evil.example": 403, plain: 403} {
		if got := upgrade(origin); got != want {
			t.Errorf("WebSocket upgrade from %q: %d, want %d", origin, got, want)
		}
	}
	for origin, want := range map[string]int{ts.base: 201, proxy: 201, "https://evil.example": 403, "http://bridge.city.example": 403, plain: 403} {
		if got := post(origin); got != want {
			t.Errorf("cookie POST from %q: %d, want %d", origin, got, want)
		}
	}
	if _, err := parseServeFlags([]string{"--allowed-origin", "bridge.city.example/path"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("an origin with a path and no scheme was accepted")
	}
}
