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
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFrontDoor(ln, &tls.Config{Certificates: []tls.Certificate{testCert(t)}}, nil)
	f.ClassifyTimeout = 2 * time.Second
	go func() { _ = f.Serve() }()
	t.Cleanup(func() { _ = f.Close() })
	return f
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
	addr := f.Addr().String()
	stunMsg := bindingRequest(t)

	t.Run("ICE-TCP framed STUN", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(stunMsg)))
		frame = append(frame, stunMsg...)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		got := accepted(t, f.ICE(), 2*time.Second)
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
		got := accepted(t, f.TURN(), 2*time.Second)
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
			got := accepted(t, f.TURN(), 2*time.Second)
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
		go func() { _ = srv.Serve(f.Web()) }()
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
