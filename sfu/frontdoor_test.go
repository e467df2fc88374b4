package sfu

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// testCert is a throwaway self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func startFrontDoor(t *testing.T) *FrontDoor {
	t.Helper()
	return startFrontDoorWith(t, func(f *FrontDoor) { f.ClassifyTimeout = 2 * time.Second })
}

// startFrontDoorWith starts a front door on loopback after letting edit
// set its limits.
func startFrontDoorWith(t *testing.T, edit func(*FrontDoor)) *FrontDoor {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFrontDoor(ln, &tls.Config{Certificates: []tls.Certificate{testCert(t)}}, nil)
	edit(f)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = f.Serve()
	}()
	t.Cleanup(func() {
		_ = f.Close()
		<-served
	})
	return f
}

// dialFrom connects to f from the loopback address src; the connection
// is closed when the test ends.
func dialFrom(t *testing.T, f *FrontDoor, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// shedAtOnce reports whether a connection from src is closed (or reset)
// within d; the reset may even beat the dial's return.
func shedAtOnce(t *testing.T, f *FrontDoor, src string, d time.Duration) bool {
	t.Helper()
	dl := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := dl.Dial("tcp", f.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return closedWithin(c, d)
}

// closedWithin reports whether the other side closed or reset c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

// pendingNow is how many connections are being classified.
func (f *FrontDoor) pendingNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending
}

// iceFrame frames a STUN message as ICE-TCP does (RFC 4571).
func iceFrame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

// bindingRequest is a STUN binding request's bytes.
func bindingRequest(t *testing.T) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("abcd:efgh"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// accepted returns the next connection on ln, or fails after d.
func accepted(t *testing.T, ln net.Listener, d time.Duration) net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			ch <- c
		}
	}()
	select {
	case c := <-ch:
		t.Cleanup(func() { _ = c.Close() })
		return c
	case <-time.After(d):
		t.Fatal("no connection handed over")
		return nil
	}
}

func TestFrontDoorRoutesByFirstBytes(t *testing.T) {
	f := startFrontDoor(t)
	web, ice, turnLn := f.Web(), f.ICE(), f.TURN()
	addr := f.Addr().String()
	stunMsg := bindingRequest(t)

	t.Run("ICE-TCP framed STUN", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		frame := iceFrame(stunMsg)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		got := accepted(t, ice, 2*time.Second)
		buf := make([]byte, len(frame))
		if _, err := io.ReadFull(got, buf); err != nil || !bytes.Equal(buf, frame) {
			t.Fatalf("ICE side read %x, %v; want the frame as sent", buf, err)
		}
	})
	t.Run("TURN over TCP", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(stunMsg); err != nil {
			t.Fatal(err)
		}
		got := accepted(t, turnLn, 2*time.Second)
		buf := make([]byte, len(stunMsg))
		if _, err := io.ReadFull(got, buf); err != nil || !bytes.Equal(buf, stunMsg) {
			t.Fatalf("TURN side read %x, %v", buf, err)
		}
	})
	for _, alpn := range [][]string{{"stun.turn"}, nil} {
		t.Run("TURN over TLS ALPN "+strings.Join(alpn, ","), func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: alpn})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(stunMsg); err != nil {
				t.Fatal(err)
			}
			got := accepted(t, turnLn, 2*time.Second)
			buf := make([]byte, len(stunMsg))
			if _, err := io.ReadFull(got, buf); err != nil || !bytes.Equal(buf, stunMsg) {
				t.Fatalf("TURN side read %x, %v", buf, err)
			}
		})
	}
	t.Run("HTTPS", func(t *testing.T) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "hello "+r.URL.Path)
		})}
		go func() { _ = srv.Serve(web) }()
		defer srv.Close()
		for _, alpn := range [][]string{{"h2", "http/1.1"}, nil} {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: alpn}}
			resp, err := (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get("https://" + addr + "/x")
			if err != nil {
				t.Fatalf("ALPN %v: %v", alpn, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if string(body) != "hello /x" {
				t.Fatalf("ALPN %v: body %q", alpn, body)
			}
		}
	})
	t.Run("unknown bytes and silence are closed", func(t *testing.T) {
		for _, send := range []string{"GET / HTTP/1.1\r\n\r\n", ""} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte(send))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(make([]byte, 1))
			c.Close()
			if n != 0 || err == nil || isTimeout(err) {
				t.Fatalf("sent %q: read %d, %v; want the connection closed", send, n, err)
			}
		}
	})
}

// TestFrontDoorPerSourceLimit: one address gets MaxPendingPerSource
// places; its next connections are closed at once, while another address
// still gets through.
func TestFrontDoorPerSourceLimit(t *testing.T) {
	checkGoroutines(t)
	f := startFrontDoorWith(t, func(f *FrontDoor) { f.MaxPendingPerSource = 4 })
	ice := f.ICE()
	var held []net.Conn
	for range 4 {
		held = append(held, dialFrom(t, f, "127.0.0.2"))
	}
	for i := range 3 {
		if !shedAtOnce(t, f, "127.0.0.2", time.Second) {
			t.Errorf("connection %d from the address was not closed at once", 5+i)
		}
	}
	for i, c := range held {
		if closedWithin(c, 50*time.Millisecond) {
			t.Errorf("silent connection %d within the share was closed before its deadline", i)
		}
	}
	c := dialFrom(t, f, "127.0.0.3")
	if _, err := c.Write(iceFrame(bindingRequest(t))); err != nil {
		t.Fatal(err)
	}
	accepted(t, ice, time.Second)
	if st := f.Stats(); st.ShedSource != 3 || st.ShedFull != 0 {
		t.Errorf("stats %+v, want 3 shed for their source", st)
	}
}

// TestFrontDoorSource: limits count an IPv4 address (also written as
// IPv6) alone, and an IPv6 address with the rest of its /64.
func TestFrontDoorSource(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"192.0.2.1", "::ffff:192.0.2.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::7"},
	} {
		if sa, sb := source(&net.TCPAddr{IP: net.ParseIP(c.a)}), source(&net.TCPAddr{IP: net.ParseIP(c.b)}); sa != sb {
			t.Errorf("%s counts as %v, %s as %v: want the same source", c.a, sa, c.b, sb)
		}
	}
	for _, c := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.2"},
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
	} {
		if sa, sb := source(&net.TCPAddr{IP: net.ParseIP(c.a)}), source(&net.TCPAddr{IP: net.ParseIP(c.b)}); sa == sb {
			t.Errorf("%s and %s both count as %v: want different sources", c.a, c.b, sa)
		}
	}
}

// TestFrontDoorDeadlines: a silent connection is closed at
// FirstByteTimeout; one that starts and stalls (a byte of a TLS record,
// half a STUN header) at ClassifyTimeout. Each counts as timed out and
// gives its place back.
func TestFrontDoorDeadlines(t *testing.T) {
	checkGoroutines(t)
	f := startFrontDoorWith(t, func(f *FrontDoor) {
		f.FirstByteTimeout, f.ClassifyTimeout = 200*time.Millisecond, time.Second
	})
	for _, c := range []struct {
		name     string
		send     []byte
		min, max time.Duration
	}{
		{"silent", nil, 150 * time.Millisecond, 700 * time.Millisecond},
		{"one byte of a TLS record", []byte{0x16}, 900 * time.Millisecond, 1600 * time.Millisecond},
		{"half a STUN header", bindingRequest(t)[:6], 900 * time.Millisecond, 1600 * time.Millisecond},
	} {
		began := time.Now()
		conn := dialFrom(t, f, "127.0.0.1")
		if _, err := conn.Write(c.send); err != nil {
			t.Fatal(err)
		}
		closed := closedWithin(conn, 3*time.Second)
		if took := time.Since(began); !closed || took < c.min || took > c.max {
			t.Errorf("%s: closed %v after %v, want closed after %v to %v", c.name, closed, took, c.min, c.max)
		}
	}
	if st := f.Stats(); st.TimedOut != 3 {
		t.Errorf("stats %+v, want 3 timed out", st)
	}
	waitFor(t, time.Second, "the places given back", func() bool { return f.pendingNow() == 0 })
}

// TestFrontDoorShedsWhenFull: with every place taken by silent
// connections, a new one is closed at once instead of waiting behind
// them, and once their deadline frees the places the door serves again.
func TestFrontDoorShedsWhenFull(t *testing.T) {
	checkGoroutines(t)
	f := startFrontDoorWith(t, func(f *FrontDoor) {
		f.MaxPending, f.FirstByteTimeout = 8, 500*time.Millisecond
	})
	ice := f.ICE()
	for i := range 8 {
		dialFrom(t, f, fmt.Sprintf("127.0.0.%d", 10+i))
	}
	began := time.Now()
	if !shedAtOnce(t, f, "127.0.0.99", 300*time.Millisecond) {
		t.Fatalf("a connection beyond MaxPending was not closed at once")
	}
	t.Logf("shed after %v", time.Since(began))
	if st := f.Stats(); st.ShedFull != 1 || st.ShedSource != 0 {
		t.Errorf("stats %+v, want 1 shed for a full door", st)
	}
	waitFor(t, 2*time.Second, "the silent connections' places freed", func() bool { return f.pendingNow() == 0 })
	c := dialFrom(t, f, "127.0.0.99")
	if _, err := c.Write(iceFrame(bindingRequest(t))); err != nil {
		t.Fatal(err)
	}
	accepted(t, ice, time.Second)
}

// TestFrontDoorHandOver: a protocol nobody serves is closed at once; a
// server that does not accept in time does not keep the place.
func TestFrontDoorHandOver(t *testing.T) {
	checkGoroutines(t)
	f := startFrontDoorWith(t, func(f *FrontDoor) { f.ClassifyTimeout = 500 * time.Millisecond })
	stunMsg := bindingRequest(t)
	c := dialFrom(t, f, "127.0.0.1")
	if _, err := c.Write(iceFrame(stunMsg)); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(c, 300*time.Millisecond) {
		t.Error("ICE-TCP with no ICE listener taken: not closed at once")
	}
	_ = f.TURN() // taken, never accepted from
	began := time.Now()
	c = dialFrom(t, f, "127.0.0.1")
	if _, err := c.Write(stunMsg); err != nil {
		t.Fatal(err)
	}
	closed := closedWithin(c, 2*time.Second)
	if took := time.Since(began); !closed || took < 400*time.Millisecond {
		t.Errorf("TURN with nobody accepting: closed %v after %v, want closed at the classification deadline", closed, took)
	}
	if st := f.Stats(); st.TimedOut != 1 {
		t.Errorf("stats %+v, want 1 timed out", st)
	}
	waitFor(t, time.Second, "the places given back", func() bool { return f.pendingNow() == 0 })
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestTURNRelaysOnlyToMediaPort: a pion TURN client with a REST
// credential gets a relay over UDP and over TLS on the front door, and
// its packets reach the "media port"; the same relay cannot reach another
// port; wrong and expired credentials get no relay.
func TestTURNRelaysOnlyToMediaPort(t *testing.T) {
	media, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	other, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	turnUDP, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := startFrontDoor(t)
	const secret = "s3cret"
	srv, err := NewTURN(TURNConfig{
		PacketConns: []net.PacketConn{turnUDP},
		Listeners:   []net.Listener{f.TURN()},
		RelayIP:     net.IPv4(127, 0, 0, 1),
		Peers:       func(ip net.IP) bool { return ip.IsLoopback() },
		MediaPorts:  []int{media.LocalAddr().(*net.UDPAddr).Port},
		Secret:      secret,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	dial := func(t *testing.T, via string, user, pass string) (*turn.Client, error) {
		t.Helper()
		var conn net.PacketConn
		switch via {
		case "udp":
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			conn = c
		case "tls":
			c, err := tls.Dial("tcp", f.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"stun.turn"}})
			if err != nil {
				t.Fatal(err)
			}
			conn = turn.NewSTUNConn(c)
		}
		server := turnUDP.LocalAddr().String()
		if via == "tls" {
			server = f.Addr().String()
		}
		cl, err := turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
			Username: user, Password: pass, Realm: "citybridge", RTO: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(); _ = conn.Close() })
		if err := cl.Listen(); err != nil {
			t.Fatal(err)
		}
		return cl, nil
	}
	user, pass, err := TURNCredentials(secret, "ward-001", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, via := range []string{"udp", "tls"} {
		t.Run(via, func(t *testing.T) {
			cl, _ := dial(t, via, user, pass)
			relay, err := cl.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			defer relay.Close()
			payload := []byte("media via " + via)
			if _, err := relay.WriteTo(payload, media.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			_ = media.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 100)
			n, from, err := media.ReadFrom(buf)
			if err != nil || string(buf[:n]) != string(payload) {
				t.Fatalf("media port got %q, %v", buf[:n], err)
			}
			// And back: the SFU answers the relay address.
			if _, err := media.WriteTo([]byte("answer"), from); err != nil {
				t.Fatal(err)
			}
			_ = relay.SetReadDeadline(time.Now().Add(3 * time.Second))
			if n, _, err := relay.ReadFrom(buf); err != nil || string(buf[:n]) != "answer" {
				t.Fatalf("relay got %q, %v", buf[:n], err)
			}
			// Another port on the same host is out of reach.
			_, _ = relay.WriteTo([]byte("probe"), other.LocalAddr())
			_ = other.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, _, err := other.ReadFrom(buf); err == nil {
				t.Fatalf("the relay reached a port that is not the media port: %q", buf[:n])
			}
		})
	}
	t.Run("bad credentials", func(t *testing.T) {
		expiredUser, expiredPass, _ := TURNCredentials(secret, "ward-001", -time.Minute)
		for name, up := range map[string][2]string{
			"wrong password": {user, "nope"},
			"expired":        {expiredUser, expiredPass},
			"wrong secret":   mustCred(t, "other-secret"),
		} {
			cl, _ := dial(t, "udp", up[0], up[1])
			if relay, err := cl.Allocate(); err == nil {
				relay.Close()
				t.Errorf("%s: got a relay", name)
			}
		}
	})
}

// mustCred is a credential signed with another secret.
func mustCred(t *testing.T, secret string) [2]string {
	t.Helper()
	user, pass, err := TURNCredentials(secret, "ward-001", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return [2]string{user, pass}
}
