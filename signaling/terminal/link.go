package terminal

import (
	"context"
	"net"
	"sync"
	"time"
)

// Link is a synthetic terminal's line to the server, which a drill can
// cut and restore. A cut drops every datagram both ways and stalls the
// signaling stream (bytes wait, as TCP's would behind a dead line); no
// socket reports an error, exactly as when a commune's line fails
// upstream. New connections cannot be made while it is cut.
type Link struct {
	mu       sync.Mutex
	down     bool
	cutAt    time.Time
	restored time.Time
	awaiting bool // restored, the hub's media not seen since
	detected bool // the terminal noticed this cut
	faults   []Fault

	// A downlink limit: a token bucket of rate bits per second holding
	// at most burst bits; datagrams beyond it are dropped (a policer, as
	// an access line's shaper with a full queue would).
	rate, burst float64
	tokens      float64
	filled      time.Time
}

// SetRate limits the line's downlink to kbit kilobits per second (0: no
// limit), with 100 ms worth of burst.
func (l *Link) SetRate(kbit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = float64(kbit) * 1000
	l.burst = max(l.rate/10, 12_000)
	l.tokens, l.filled = l.burst, time.Now()
}

// admitDown takes n bytes from the downlink's bucket, reporting whether
// the datagram gets through.
func (l *Link) admitDown(n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate == 0 {
		return true
	}
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+l.rate*now.Sub(l.filled).Seconds())
	l.filled = now
	bits := float64(8 * n)
	if l.tokens < bits {
		return false
	}
	l.tokens -= bits
	return true
}

// Fault is one cut and what the terminal made of it.
type Fault struct {
	Cut      time.Time
	Restored time.Time
	// Detected is how long after the cut the terminal noticed (0: it did
	// not, the cut was shorter than its stall detection).
	Detected time.Duration
	// Recovered is how long after the restore the hub's video flowed
	// again (0 while it has not).
	Recovered time.Duration
}

// Cut takes the line down.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return
	}
	l.down, l.cutAt, l.detected = true, time.Now(), false
	l.faults = append(l.faults, Fault{Cut: l.cutAt})
}

// Restore brings the line back.
func (l *Link) Restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.down {
		return
	}
	l.down, l.restored, l.awaiting = false, time.Now(), true
	l.faults[len(l.faults)-1].Restored = l.restored
}

// Down reports whether the line is cut.
func (l *Link) Down() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down
}

// Faults returns the cuts so far and what became of them.
func (l *Link) Faults() []Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Fault(nil), l.faults...)
}

// noticed records that the terminal saw the line fail.
func (l *Link) noticed() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.faults) > 0 && !l.detected && (l.down || l.awaiting) {
		l.detected = true
		l.faults[len(l.faults)-1].Detected = time.Since(l.cutAt)
	}
}

// hubMedia records that the hub's video arrived: the end of a recovery.
func (l *Link) hubMedia() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.awaiting && !l.down {
		l.awaiting = false
		l.faults[len(l.faults)-1].Recovered = time.Since(l.restored)
	}
}

// waitUp blocks while the line is cut, until done closes.
func (l *Link) waitUp(done <-chan struct{}) bool {
	for l.Down() {
		select {
		case <-done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// DialContext dials through the line: while it is cut, the attempt hangs
// until ctx ends, as a TCP handshake into a dead line would.
func (l *Link) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if l == nil {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	if !l.waitUp(ctx.Done()) {
		return nil, ctx.Err()
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, link: l, closed: make(chan struct{})}, nil
}

// stallConn holds reads and writes while the line is cut.
type stallConn struct {
	net.Conn
	link      *Link
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *stallConn) Read(b []byte) (int, error) {
	if !c.link.waitUp(c.closed) {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(b)
}

func (c *stallConn) Write(b []byte) (int, error) {
	if !c.link.waitUp(c.closed) {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *stallConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// PacketConn wraps the terminal's media socket: while the line is cut,
// datagrams are dropped both ways.
func (l *Link) PacketConn(pc net.PacketConn) net.PacketConn {
	if l == nil {
		return pc
	}
	return &dropConn{PacketConn: pc, link: l}
}

type dropConn struct {
	net.PacketConn
	link *Link
}

func (c *dropConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || (!c.link.Down() && c.link.admitDown(n)) {
			return n, addr, err
		}
	}
}

func (c *dropConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.link.Down() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}
