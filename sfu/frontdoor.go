package sfu

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
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
// Anything else is closed. A connection that has not said what it is
// within ClassifyTimeout is closed too, so idle sockets cannot pile up.
type FrontDoor struct {
	ln   net.Listener
	tls  *tls.Config
	log  *slog.Logger
	web  *connQueue
	ice  *connQueue
	turn *connQueue

	// ClassifyTimeout bounds the TLS handshake and the first bytes
	// (default 10 s).
	ClassifyTimeout time.Duration
	// pending bounds the connections being classified at once.
	pending chan struct{}

	closeOnce sync.Once
	done      chan struct{}
}

// stunMagic is the STUN magic cookie (RFC 5389).
var stunMagic = []byte{0x21, 0x12, 0xa4, 0x42}

// ALPN protocol IDs for TURN over TLS (RFC 7443).
const alpnTURN = "stun.turn"

// maxPendingClassify is how many connections may be in their first bytes
// or TLS handshake at once; more wait in the kernel's accept queue.
const maxPendingClassify = 512

// NewFrontDoor splits ln. tlsConf must carry the server certificate
// (Certificates or GetCertificate); its NextProtos are replaced. Call
// Serve to start accepting.
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
		ClassifyTimeout: 10 * time.Second,
		pending:         make(chan struct{}, maxPendingClassify),
		done:            make(chan struct{}),
	}
	f.web = newConnQueue(ln.Addr(), f.done)
	f.ice = newConnQueue(ln.Addr(), f.done)
	f.turn = newConnQueue(ln.Addr(), f.done)
	return f
}

// Web returns the listener of TLS connections for the HTTPS server. They
// are *tls.Conn with the handshake done, except for clients that sent no
// ALPN, whose first bytes had to be read to tell HTTP from TURN.
func (f *FrontDoor) Web() net.Listener { return f.web }

// ICE returns the listener of ICE-TCP connections (for the ICE TCP mux).
func (f *FrontDoor) ICE() net.Listener { return f.ice }

// TURN returns the listener of TURN connections, over TCP or decrypted TLS.
func (f *FrontDoor) TURN() net.Listener { return f.turn }

// Addr is the shared port's address.
func (f *FrontDoor) Addr() net.Addr { return f.ln.Addr() }

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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			f.Close()
			return err
		}
		delay = 0
		select {
		case f.pending <- struct{}{}:
		case <-f.done:
			_ = c.Close()
			return nil
		}
		go func() {
			defer func() { <-f.pending }()
			f.classify(c)
		}()
	}
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

func (f *FrontDoor) classify(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(f.ClassifyTimeout))
	br := bufio.NewReaderSize(c, 1500)
	first, err := br.Peek(1)
	if err != nil {
		_ = c.Close()
		return
	}
	if first[0] == 0x16 { // TLS handshake record
		f.classifyTLS(&peekedConn{Conn: c, r: br})
		return
	}
	head, err := br.Peek(10)
	if err != nil {
		f.log.Debug("front door: closed before saying what it is", "remote", c.RemoteAddr().String())
		_ = c.Close()
		return
	}
	var q *connQueue
	switch {
	case bytes.Equal(head[6:10], stunMagic):
		q = f.ice
	case bytes.Equal(head[4:8], stunMagic):
		q = f.turn
	default:
		f.log.Debug("front door: unknown protocol", "remote", c.RemoteAddr().String())
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	q.push(&peekedConn{Conn: c, r: br})
}

func (f *FrontDoor) classifyTLS(c net.Conn) {
	tc := tls.Server(c, f.tls)
	if err := tc.Handshake(); err != nil {
		f.log.Debug("front door: TLS handshake", "remote", c.RemoteAddr().String(), "err", err)
		_ = tc.Close()
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case "http/1.1", "h2":
		_ = tc.SetDeadline(time.Time{})
		f.web.push(tc)
		return
	case alpnTURN:
		_ = tc.SetDeadline(time.Time{})
		f.turn.push(tc)
		return
	}
	// No ALPN: read the first decrypted byte. STUN messages start with
	// two zero bits; HTTP requests start with a letter.
	br := bufio.NewReaderSize(tc, 1500)
	b, err := br.Peek(1)
	if err != nil {
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if b[0]&0xc0 == 0 {
		f.turn.push(&peekedConn{Conn: tc, r: br})
		return
	}
	f.web.push(&peekedConn{Conn: tc, r: br})
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

// connQueue is a net.Listener fed by the front door.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   <-chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr, done <-chan struct{}) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn, 64), done: done, closed: make(chan struct{})}
}

// push hands c to whoever accepts; c is closed if nobody does any more.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.closed:
		_ = c.Close()
	case <-q.done:
		_ = c.Close()
	}
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
