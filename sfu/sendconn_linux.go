//go:build !386

package sfu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// sendConn is a media socket whose writes do not queue on each other. Every
// peer's packets leave through the one socket of the ICE UDP mux, and the Go
// runtime lets one goroutine at a time write to a socket: with the fan-out
// spread over several goroutines (fanPool), and the read loops of other
// tracks writing too, they would wait for each other's send system calls.
// The kernel has no such limit for UDP. So the writes go through sendto on a
// duplicate of the socket's descriptor, which no goroutine locks and the
// runtime's poller does not watch; a write the socket cannot take at once
// (its buffer full) goes the runtime's way, which waits for it.
//
// It also keeps to AllowedNetworks when they are set: datagrams from
// elsewhere are dropped before ICE sees them, datagrams to elsewhere are
// refused (what filterConn does for other kinds of socket).
type sendConn struct {
	conn    *net.UDPConn
	allowed []netip.Prefix // empty: every address
	family  int            // AF_INET or AF_INET6, the socket's

	mu sync.RWMutex // held for reading around sendto, for writing by Close
	fd int          // the duplicate descriptor; -1 once closed
}

// errOutside is the answer to a write to an address outside AllowedNetworks.
var errOutside = errors.New("sfu: destination outside the allowed networks")

// newSendConn wraps c; allowed may be empty.
func newSendConn(c *net.UDPConn, allowed []netip.Prefix) (*sendConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, family := -1, 0
	var opErr error
	if err := raw.Control(func(s uintptr) {
		if family, opErr = syscall.GetsockoptInt(int(s), syscall.SOL_SOCKET, syscall.SO_DOMAIN); opErr != nil {
			return
		}
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			opErr = errno
			return
		}
		fd = int(r)
	}); err != nil {
		return nil, err
	}
	if opErr != nil {
		return nil, opErr
	}
	return &sendConn{conn: c, allowed: allowed, family: family, fd: fd}, nil
}

func (c *sendConn) ok(a netip.Addr) bool {
	if len(c.allowed) == 0 {
		return true
	}
	a = a.Unmap().WithZone("") // a prefix contains no address with a zone (a link-local peer's)
	for _, p := range c.allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ReadFromAddrPort reads the next datagram from an allowed address. pion's
// UDP mux reads through it (ice.AddrPortReaderWriter), allocating nothing.
func (c *sendConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(b)
		if err != nil || c.ok(from.Addr()) {
			return n, from, err
		}
	}
}

// WriteToAddrPort sends b to an allowed address: pion's UDP mux writes
// every packet of every peer through it.
func (c *sendConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if !c.ok(to.Addr()) {
		return 0, errOutside
	}
	if n, sent := c.send(b, to); sent {
		return n, nil
	}
	return c.conn.WriteToUDPAddrPort(b, to)
}

// send tries sendto on the duplicate descriptor; sent is false when it did
// not send (an address it does not handle, a full socket buffer, an error,
// a closed socket), for the runtime's path to do it or say why not.
func (c *sendConn) send(b []byte, to netip.AddrPort) (n int, sent bool) {
	a := to.Addr()
	if len(b) == 0 || !a.IsValid() || a.Zone() != "" {
		return 0, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.fd < 0 {
		return 0, false
	}
	var r uintptr
	var errno syscall.Errno
	switch {
	case c.family == syscall.AF_INET && a.Unmap().Is4():
		sa := syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: a.Unmap().As4()}
		putPort(&sa.Port, to.Port())
		r, _, errno = syscall.Syscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			0, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	case c.family == syscall.AF_INET6:
		// An IPv4 destination goes as its IPv4-mapped address, which a
		// dual-stack socket takes and an IPv6-only one refuses (then the
		// runtime's path reports it).
		sa := syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: a.As16()}
		putPort(&sa.Port, to.Port())
		r, _, errno = syscall.Syscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			0, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	default:
		return 0, false
	}
	if errno != 0 {
		return 0, false
	}
	return int(r), true
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	p := (*[2]byte)(unsafe.Pointer(dst))
	p[0], p[1] = byte(port>>8), byte(port)
}

func (c *sendConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (c *sendConn) WriteTo(b []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("sfu: a media socket writes to UDP addresses, not %T", to)
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// Close closes the duplicate, once no write is using it, then the socket.
func (c *sendConn) Close() error {
	c.mu.Lock()
	if c.fd >= 0 {
		_ = syscall.Close(c.fd)
		c.fd = -1
	}
	c.mu.Unlock()
	return c.conn.Close()
}

func (c *sendConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *sendConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *sendConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *sendConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
