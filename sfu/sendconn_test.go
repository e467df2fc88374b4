//go:build linux && !386

package sfu

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loopbackPair opens a sendConn on network's loopback (allowed to it) and
// a plain receiving socket beside it.
func loopbackPair(t *testing.T, network string, ip net.IP, allowed []netip.Prefix) (*sendConn, *net.UDPConn) {
	t.Helper()
	rx, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	t.Cleanup(func() { _ = rx.Close() })
	tx, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newSendConn(tx, allowed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() })
	return sc, rx
}

// readOne reads one datagram within 2 s.
func readOne(t *testing.T, rx *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("nothing received: %v", err)
	}
	return buf[:n], from
}

// TestSendConnDelivers: a datagram written through the duplicate
// descriptor arrives whole, from the socket's own address and port, over
// IPv4 and IPv6, and by the fast path (not the runtime's fallback).
func TestSendConnDelivers(t *testing.T) {
	for _, c := range []struct {
		network string
		ip      net.IP
	}{{"udp4", net.IPv4(127, 0, 0, 1)}, {"udp6", net.IPv6loopback}} {
		t.Run(c.network, func(t *testing.T) {
			sc, rx := loopbackPair(t, c.network, c.ip, nil)
			msg := bytes.Repeat([]byte{0xab}, 1200)
			to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
			if n, sent := sc.send(msg, to); !sent || n != len(msg) {
				t.Fatalf("sendto: sent %v, %d bytes", sent, n)
			}
			got, from := readOne(t, rx)
			if !bytes.Equal(got, msg) {
				t.Fatalf("received %d bytes, not the %d sent", len(got), len(msg))
			}
			if want := sc.LocalAddr().(*net.UDPAddr).AddrPort(); from.Port() != want.Port() || from.Addr().Unmap() != want.Addr().Unmap() {
				t.Fatalf("from %v, want the socket's own %v", from, want)
			}
			// And through the interface pion uses.
			if _, err := sc.WriteToAddrPort([]byte("second"), to); err != nil {
				t.Fatal(err)
			}
			if got, _ := readOne(t, rx); string(got) != "second" {
				t.Fatalf("received %q", got)
			}
		})
	}
}

// TestSendConnDualStack: the socket the server opens without --udp-host
// on a dual-stack machine is IPv6 ([::]); an IPv4 peer is written to as its
// IPv4-mapped address and gets the datagram from the socket's port.
func TestSendConnDualStack(t *testing.T) {
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
	if err != nil {
		t.Skipf("no dual-stack socket here: %v", err)
	}
	sc, err := newSendConn(tx, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if sc.family != syscall.AF_INET6 {
		t.Skipf("the wildcard socket is family %d, not IPv6", sc.family)
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	if n, sent := sc.send([]byte("mapped"), to); !sent || n != 6 {
		t.Fatalf("sendto an IPv4 peer from [::]: sent %v, %d bytes", sent, n)
	}
	got, from := readOne(t, rx)
	if string(got) != "mapped" || from.Port() != uint16(sc.LocalAddr().(*net.UDPAddr).Port) {
		t.Fatalf("received %q from %v", got, from)
	}
}

// TestSendConnKeepsToAllowedNetworks: with only 127.0.0.2 allowed, a write
// to 127.0.0.1 is refused (nothing sent), and of two datagrams arriving
// only the one from 127.0.0.2 is read.
func TestSendConnKeepsToAllowedNetworks(t *testing.T) {
	only := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	sc, rx := loopbackPair(t, "udp4", net.IPv4(127, 0, 0, 1), only)
	if _, err := sc.WriteToAddrPort([]byte("x"), rx.LocalAddr().(*net.UDPAddr).AddrPort()); !errors.Is(err, errOutside) {
		t.Fatalf("write to 127.0.0.1: %v, want errOutside", err)
	}
	if _, err := sc.WriteTo([]byte("x"), rx.LocalAddr()); !errors.Is(err, errOutside) {
		t.Fatalf("WriteTo 127.0.0.1: %v, want errOutside", err)
	}
	_ = rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := rx.ReadFromUDP(make([]byte, 16)); err == nil {
		t.Fatalf("a refused write arrived (%d bytes)", n)
	}

	to := sc.LocalAddr().(*net.UDPAddr)
	if _, err := rx.WriteToUDP([]byte("from .1"), to); err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.WriteToUDP([]byte("from .2"), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = sc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := sc.ReadFromAddrPort(buf)
	if err != nil || string(buf[:n]) != "from .2" || from.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("read %q from %v (%v), want only the datagram from 127.0.0.2", buf[:n], from, err)
	}
}

// TestSendConnAllowsLinkLocalPeers: the runtime names the interface (the
// zone) of a link-local sender, and a prefix contains no address with a
// zone; an allowed link-local network still lets its peers in.
func TestSendConnAllowsLinkLocalPeers(t *testing.T) {
	c := &sendConn{allowed: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}}
	for _, a := range []string{"fe80::1%eth0", "fe80::1"} {
		if !c.ok(netip.MustParseAddr(a)) {
			t.Errorf("%s refused with fe80::/10 allowed", a)
		}
	}
	if c.ok(netip.MustParseAddr("fd00::1")) {
		t.Error("fd00::1 allowed with only fe80::/10")
	}
}

// TestSendConnDoesNotAllocate: a packet sent costs no allocation, as the
// runtime's own WriteToUDPAddrPort.
func TestSendConnDoesNotAllocate(t *testing.T) {
	sc, rx := loopbackPair(t, "udp4", net.IPv4(127, 0, 0, 1), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	msg := make([]byte, 1200)
	if allocs := testing.AllocsPerRun(200, func() {
		if _, err := sc.WriteToAddrPort(msg, to); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("%.1f allocations per packet", allocs)
	}
}

// TestSendConnCloseWhileWriting: writers on four goroutines while the
// socket closes: every write ends, the later ones report the closed socket,
// and (under -race) the duplicate descriptor is never read while Close
// takes it away.
func TestSendConnCloseWhileWriting(t *testing.T) {
	sc, rx := loopbackPair(t, "udp4", net.IPv4(127, 0, 0, 1), nil)
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range 2000 {
				_, _ = sc.WriteToAddrPort(make([]byte, 100), to)
			}
		}()
	}
	close(start)
	time.Sleep(time.Millisecond)
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, waited(&wg), 10*time.Second, "writes still running 10 s after the socket closed")
	if _, err := sc.WriteToAddrPort([]byte("late"), to); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}
