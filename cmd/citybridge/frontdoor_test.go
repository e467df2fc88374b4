package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestFrontDoorUnderSilentSockets: 1,000 TCP connections to the shared
// port that send nothing, from one loopback address or spread over a
// hundred, hold up nobody else. While they are open a page loads over a
// fresh TLS connection in under 1 s, a signaling WebSocket upgrades and a
// TURN-over-TCP binding request is answered. The front door closes those
// from one address beyond its share at once, and every other one at the
// first-byte deadline, a few seconds later.
func TestFrontDoorUnderSilentSockets(t *testing.T) {
	const silent = 1000
	raiseFileLimit(t, 4*silent)
	ts := startTestServerWith(t, func(c *Config) { c.ICETCP, c.TURN = true, true })
	addr := ts.addr.String()
	for _, c := range []struct {
		name    string
		sources []string
	}{
		{"one address", loopbackAddrs(2, 1)},
		{"100 addresses", loopbackAddrs(256, 100)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := holdSilent(t, addr, silent, c.sources)
			var worst time.Duration
			for i := range 5 {
				took, err := fetchFresh(ts, "/host")
				t.Logf("GET /host %d over a fresh TLS connection: %v", i, took.Round(time.Millisecond))
				if err != nil {
					t.Errorf("GET /host %d: %v after %v", i, err, took)
				}
				worst = max(worst, took)
			}
			began := time.Now()
			ws, _, err := wsDial(context.Background(), ts, "127.0.0.1", nil)
			took := time.Since(began)
			t.Logf("WebSocket upgrade of /signal: %v", took.Round(time.Millisecond))
			if err != nil {
				t.Errorf("WebSocket upgrade: %v after %v", err, took)
			} else {
				ws.Close()
			}
			worst = max(worst, took)
			took, err = turnBinding(addr)
			t.Logf("TURN over TCP binding request answered: %v", took.Round(10*time.Microsecond))
			if err != nil {
				t.Errorf("TURN over TCP binding: %v after %v", err, took)
			}
			worst = max(worst, took)
			if worst > time.Second {
				t.Errorf("with %d silent sockets held open from %s, a legitimate connection took %v, want under 1 s",
					silent, c.name, worst.Round(time.Millisecond))
			}

			atOnce, all := s.closedBy(time.Second), s.waitClosed(t, 8*time.Second)
			t.Logf("%d silent sockets from %s: %d closed by the server within 1 s, all within %v; worst legitimate connection %v",
				silent, c.name, atOnce, all.Round(100*time.Millisecond), worst.Round(time.Millisecond))
			if len(c.sources) == 1 && atOnce < silent*9/10 {
				t.Errorf("only %d of %d silent sockets from one address were closed at once, want all but the address's share", atOnce, silent)
			}
			if all > 5*time.Second {
				t.Errorf("the last silent socket was closed after %v, want within the first-byte deadline (a few seconds)", all)
			}
		})
	}
	// The shed connections are counted for Prometheus.
	_, body := get(t, ts, "/metrics", "")
	m := regexp.MustCompile(`citybridge_frontdoor_shed_connections_total\{reason="source"\} (\d+)`).FindStringSubmatch(body)
	if n, _ := strconv.Atoi(group1(m)); n < silent*9/10 {
		t.Errorf("citybridge_frontdoor_shed_connections_total{reason=\"source\"} is %q, want the ~%d shed from one address", group1(m), silent)
	}
}

// group1 is a regexp match's first group, "" without a match.
func group1(m []string) string {
	if len(m) < 2 {
		return ""
	}
	return m[1]
}

// loopbackAddrs returns n addresses of 127.0.0.0/8 from 127.0.x.y with
// x.y = first, first+1, ...
func loopbackAddrs(first, n int) []string {
	var out []string
	for i := first; i < first+n; i++ {
		out = append(out, fmt.Sprintf("127.0.%d.%d", i/256, i%256))
	}
	return out
}

// raiseFileLimit raises the soft limit on open files to at least n: the
// silent sockets and the server's ends of them live in this process.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	old := lim
	if lim.Max < n {
		lim.Max = n // root may raise the hard limit too; anyone else gets the error below
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("this test holds %d sockets open and cannot raise the open-file limit to that (hard limit %d): %v", n, old.Max, err)
	}
	t.Cleanup(func() {
		lim = old
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	})
}

// silence is TCP connections that say nothing, each watched for the
// server closing it.
type silence struct {
	n      int
	start  time.Time
	mu     sync.Mutex
	closed []time.Duration // when the server closed each, from start
}

// holdSilent opens n connections to addr, from sources in turn, and sends
// nothing on them; they are closed when the test ends.
func holdSilent(t *testing.T, addr string, n int, sources []string) *silence {
	t.Helper()
	s := &silence{n: n, start: time.Now()}
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[i%len(sources)])}}
				c, err := d.Dial("tcp", addr)
				switch {
				case errors.Is(err, syscall.ECONNRESET): // shed before the dial returned
					s.mu.Lock()
					s.closed = append(s.closed, time.Since(s.start))
					s.mu.Unlock()
				case err != nil:
					errs <- err
				default:
					conns[i] = c
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("silent socket: %v", err)
	}
	for _, c := range conns {
		if c == nil {
			continue
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			_, _ = c.Read(make([]byte, 1)) // returns when the server closes it
			s.mu.Lock()
			s.closed = append(s.closed, time.Since(s.start))
			s.mu.Unlock()
		}()
	}
	return s
}

// closedBy counts the connections the server closed within d of their
// opening.
func (s *silence) closedBy(d time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.closed {
		if at <= d {
			n++
		}
	}
	return n
}

// waitClosed waits up to d for the server to close every connection and
// returns when it closed the last.
func (s *silence) waitClosed(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	var last time.Duration
	waitUntil(t, d, "the server closing every silent socket", func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, at := range s.closed {
			last = max(last, at)
		}
		return len(s.closed) == s.n, fmt.Sprintf("%d of %d closed", len(s.closed), s.n)
	})
	return last
}

// fetchFresh GETs path over a new TLS connection and says how long the
// whole exchange took.
func fetchFresh(ts *testServer, path string) (time.Duration, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	began := time.Now()
	resp, err := c.Get(ts.base + path)
	if err != nil {
		return time.Since(began), err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return time.Since(began), err
	}
	if resp.StatusCode != http.StatusOK {
		return time.Since(began), fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(began), nil
}

// turnBinding sends a STUN binding request over plain TCP to the shared
// port and waits for the embedded TURN server's answer.
func turnBinding(addr string) (time.Duration, error) {
	began := time.Now()
	c, err := net.DialTimeout("tcp", addr, 15*time.Second)
	if err != nil {
		return time.Since(began), err
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := c.Write(req.Raw); err != nil {
		return time.Since(began), err
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return time.Since(began), err
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil {
		return time.Since(began), err
	}
	if res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		return time.Since(began), fmt.Errorf("answer %v, want a binding success", res.Type)
	}
	return time.Since(began), nil
}
