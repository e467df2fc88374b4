package sfu

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FrontDoor shares one TCP port (443 on a city network, where firewalls
// often let nothing else through) between four protocols, told apart by
// their first bytes:
//
//   - TLS (first byte 0x16) is terminated here. Web clients (ALPN
//     http/1.1 or h2, or an HTTP request after a handshake without ALPN)
//     go to Web(); TURN over TLS (ALPN stun.turn, or a STUN message after
//     the handshake) goes to TURN().
//   - ICE-TCP (RFC 6544) frames every STUN message with a two-byte length
//     (RFC 4571): the STUN magic cookie sits at bytes 6-9. It goes to ICE().
//   - TURN over plain TCP sends STUN messages unframed: the magic cookie
//     sits at bytes 4-7. It goes to TURN().
//
// Anything else is closed. Nobody can hold the door: Serve never waits
// for a classification to finish. A connection that sends nothing within
// FirstByteTimeout, or is not classified and taken by its server within
// ClassifyTimeout, is closed; beyond MaxPending connections being
// classified at once, or MaxPendingPerSource from one address, new ones
// are closed at once (shed) instead of waiting.
//
// Set the exported fields before Serve.
type FrontDoor struct {
	ln   net.Listener
	tls  *tls.Config
	log  *slog.Logger
	web  *connQueue
	ice  *connQueue
	turn *connQueue

	// FirstByteTimeout is how long a new connection may stay silent
	// (default 3 s). Browsers, ICE and TURN clients speak first, at once.
	FirstByteTimeout time.Duration
	// ClassifyTimeout bounds a connection's whole stay, from accept to
	// being taken by its server: first bytes, TLS handshake, and for TLS
	// without ALPN the first decrypted byte (default 5 s).
	ClassifyTimeout time.Duration
	// MaxPending bounds the connections being classified at once
	// (default 2048).
	MaxPending int
	// MaxPendingPerSource bounds them per remote address, an IPv6 address
	// counted per /64 (default 64).
	MaxPendingPerSource int

	mu       sync.Mutex
	pending  int
	bySource map[netip.Addr]int

	shedFull, shedSource, timedOut atomic.Uint64

	closeOnce sync.Once
	done      chan struct{}
}

// FrontDoorStats counts the connections the front door closed before they
// reached a server, to protect itself.
type FrontDoorStats struct {
	ShedFull   uint64 // MaxPending connections were being classified
	ShedSource uint64 // MaxPendingPerSource from the same source were
	TimedOut   uint64 // silent past FirstByteTimeout, or not handed over within ClassifyTimeout
}

// stunMagic is the STUN magic cookie (RFC 5389).
var stunMagic = []byte{0x21, 0x12, 0xa4, 0x42}

// ALPN protocol IDs for TURN over TLS (RFC 7443).
const alpnTURN = "stun.turn"

// NewFrontDoor splits ln. tlsConf must carry the server certificate
// (Certificates or GetCertificate); its NextProtos are replaced. Take the
// listeners of the protocols served (Web, ICE, TURN), then call Serve.
func NewFrontDoor(ln net.Listener, tlsConf *tls.Config, log *slog.Logger) *FrontDoor {
	if log == nil {
		log = slog.Default()
	}
	conf := tlsConf.Clone()
	// HTTP/2 is left out: the pages' traffic is one WebSocket and a few
	// assets. TURN clients that send ALPN name stun.turn.
	conf.NextProtos = []string{"http/1.1", alpnTURN}
	f := &FrontDoor{
		ln: ln, tls: conf, log: log,
		FirstByteTimeout:    3 * time.Second,
		ClassifyTimeout:     5 * time.Second,
		MaxPending:          2048,
		MaxPendingPerSource: 64,
		bySource:            map[netip.Addr]int{},
		done:                make(chan struct{}),
	}
	f.web = newConnQueue(ln.Addr(), f.done)
	f.ice = newConnQueue(ln.Addr(), f.done)
	f.turn = newConnQueue(ln.Addr(), f.done)
	return f
}

// Web returns the listener of TLS connections for the HTTPS server. They
// are *tls.Conn with the handshake done, except for clients that sent no
// ALPN, whose first bytes had to be read to tell HTTP from TURN.
//
// A protocol whose listener was never taken (ICE-TCP or the embedded TURN
// server turned off) has no server: its connections are closed at once.
func (f *FrontDoor) Web() net.Listener { return f.web.take() }

// ICE returns the listener of ICE-TCP connections (for the ICE TCP mux).
func (f *FrontDoor) ICE() net.Listener { return f.ice.take() }

// TURN returns the listener of TURN connections, over TCP or decrypted TLS.
func (f *FrontDoor) TURN() net.Listener { return f.turn.take() }

// Addr is the shared port's address.
func (f *FrontDoor) Addr() net.Addr { return f.ln.Addr() }

// Stats returns the counts of connections closed to protect the door.
func (f *FrontDoor) Stats() FrontDoorStats {
	return FrontDoorStats{ShedFull: f.shedFull.Load(), ShedSource: f.shedSource.Load(), TimedOut: f.timedOut.Load()}
}

// Serve accepts connections until Close. It returns nil after Close.
func (f *FrontDoor) Serve() error {
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			select {
			case <-f.done:
				return nil
			default:
			}
			if retryable(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.log.Debug("front door: accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			f.Close()
			return err
		}
		delay = 0
		src := source(c.RemoteAddr())
		if !f.admit(src) {
			shed(c)
			continue
		}
		go func() {
			defer f.leave(src)
			f.classify(c)
		}()
	}
}

// retryable reports whether accepting can go on after err: a timeout, or
// running out of file descriptors, which closing connections frees.
func retryable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// source is what a connection's limit is counted against: its IPv4
// address, or its IPv6 /64 (a host may pick any address in its /64).
func source(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// admit takes a classification place for a connection from src, or
// counts why there is none.
func (f *FrontDoor) admit(src netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.pending >= f.MaxPending:
		f.shedFull.Add(1)
		f.log.Debug("front door: full, connection shed", "source", src.String())
		return false
	case f.bySource[src] >= f.MaxPendingPerSource:
		f.shedSource.Add(1)
		f.log.Debug("front door: source over its share, connection shed", "source", src.String())
		return false
	}
	f.pending++
	f.bySource[src]++
	return true
}

// leave gives back the place admit took.
func (f *FrontDoor) leave(src netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending--
	if f.bySource[src]--; f.bySource[src] == 0 {
		delete(f.bySource, src)
	}
}

// shed closes c at once with a reset: no TIME_WAIT left behind here, and
// the client learns straight away that it should try again later.
func shed(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Close stops accepting and closes the shared listener; connections
// already handed over belong to their servers.
func (f *FrontDoor) Close() error {
	var err error
	f.closeOnce.Do(func() {
		close(f.done)
		err = f.ln.Close()
	})
	return err
}

// drop closes c, which did not make it through classification.
func (f *FrontDoor) drop(c net.Conn, why string, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		f.timedOut.Add(1)
	}
	f.log.Debug("front door: "+why, "remote", c.RemoteAddr().String(), "err", err)
	_ = c.Close()
}

func (f *FrontDoor) classify(c net.Conn) {
	accepted := time.Now()
	deadline := accepted.Add(f.ClassifyTimeout)
	_ = c.SetDeadline(accepted.Add(min(f.FirstByteTimeout, f.ClassifyTimeout)))
	br := bufio.NewReaderSize(c, 1500)
	first, err := br.Peek(1)
	if err != nil {
		f.drop(c, "no first byte", err)
		return
	}
	// Slow senders (one byte, then a pause) get no more than the
	// classification's deadline in all.
	_ = c.SetDeadline(deadline)
	if first[0] == 0x16 { // TLS handshake record
		f.classifyTLS(&peekedConn{Conn: c, r: br}, deadline)
		return
	}
	head, err := br.Peek(10)
	if err != nil {
		f.drop(c, "closed before saying what it is", err)
		return
	}
	var q *connQueue
	switch {
	case bytes.Equal(head[6:10], stunMagic):
		q = f.ice
	case bytes.Equal(head[4:8], stunMagic):
		q = f.turn
	default:
		f.drop(c, "unknown protocol", nil)
		return
	}
	f.handOver(q, &peekedConn{Conn: c, r: br}, deadline)
}

func (f *FrontDoor) classifyTLS(c net.Conn, deadline time.Time) {
	tc := tls.Server(c, f.tls)
	if err := tc.Handshake(); err != nil {
		f.drop(tc, "TLS handshake", err)
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case "http/1.1", "h2":
		f.handOver(f.web, tc, deadline)
		return
	case alpnTURN:
		f.handOver(f.turn, tc, deadline)
		return
	}
	// No ALPN: read the first decrypted byte. STUN messages start with
	// two zero bits; HTTP requests start with a letter.
	br := bufio.NewReaderSize(tc, 1500)
	b, err := br.Peek(1)
	if err != nil {
		f.drop(tc, "no request after the TLS handshake", err)
		return
	}
	if b[0]&0xc0 == 0 {
		f.handOver(f.turn, &peekedConn{Conn: tc, r: br}, deadline)
		return
	}
	f.handOver(f.web, &peekedConn{Conn: tc, r: br}, deadline)
}

// handOver gives c to q's server, or closes it if the protocol has no
// server or the server does not take it by deadline: a slow server must
// not keep classification places.
func (f *FrontDoor) handOver(q *connQueue, c net.Conn, deadline time.Time) {
	if !q.taken.Load() {
		f.drop(c, "nobody serves this protocol", nil)
		return
	}
	_ = c.SetDeadline(time.Time{})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case q.ch <- c:
		return
	case <-t.C:
		f.timedOut.Add(1)
		f.log.Debug("front door: not taken by its server in time", "remote", c.RemoteAddr().String())
	case <-q.closed:
	case <-f.done:
	}
	_ = c.Close()
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if p.r != nil {
		if p.r.Buffered() > 0 {
			return p.r.Read(b)
		}
		p.r = nil
	}
	return p.Conn.Read(b)
}

// connQueue is a net.Listener fed by the front door. Its channel is
// unbuffered: a connection is handed over only to a server in Accept, so
// none is left behind when the server stops.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   <-chan struct{}
	closed chan struct{}
	once   sync.Once
	taken  atomic.Bool // some server asked for this listener
}

func newConnQueue(addr net.Addr, done <-chan struct{}) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: done, closed: make(chan struct{})}
}

// take marks q as having a server and returns it.
func (q *connQueue) take() *connQueue {
	q.taken.Store(true)
	return q
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
