package signaling

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits on what one address, or one connection, may ask of the server.
const (
	// An address whose joins keep failing (bad or revoked tokens, bridges
	// not invited) gets failedJoinBurst attempts, then one every
	// 1/failedJoinRate seconds; meanwhile its WebSocket upgrades are
	// answered 429 before any work is done. Terminals with a valid link
	// never fail a join, and a NAT with many rooms behind it is only
	// limited when their links are bad.
	failedJoinBurst = 20
	failedJoinRate  = 2 // per second
	// maxTrackedAddrs bounds the table of addresses with failed joins.
	maxTrackedAddrs = 65536

	// A joined client may offer offerBurst times at once, then offerRate
	// times a second (renegotiation and ICE restarts are rare); beyond,
	// offers are refused with rate_limited, and a client that keeps going
	// after maxRefusedInARow refusals is disconnected.
	offerBurst       = 10
	offerRate        = 5
	maxRefusedInARow = 50

	// A joined client may send controlBurst control actions at once, then
	// controlRate a second: a chair clicking through the wall, or a room's
	// hand, never comes near it, while each accepted action is a stored
	// state, an audit entry and a broadcast to every participant.
	controlBurst = 20
	controlRate  = 4

	// A host console may say what its wall shows wallBurst times at once,
	// then wallRate times a second: the page sends one message a quarter
	// second after scrolling or resizing stops.
	wallBurst = 20
	wallRate  = 8

	// Any message at all: messageBurst at once (a page's ICE candidates
	// after a restart), then messageRate a second.
	messageBurst = 400
	messageRate  = 100
)

// allowance is one kind of request's rate limit on one connection, with
// the refusals in a row (the connection's reader goroutine only).
type allowance struct {
	l       *rate.Limiter
	refused int
}

func newAllowance(r rate.Limit, burst int) allowance {
	return allowance{l: rate.NewLimiter(r, burst)}
}

// take spends one request: ok if allowed; drop when the client kept going
// over the limit for maxRefusedInARow requests and is to be disconnected.
func (a *allowance) take() (ok, drop bool) {
	if a.l.Allow() {
		a.refused = 0
		return true, false
	}
	a.refused++
	return false, a.refused >= maxRefusedInARow
}

// failedJoins remembers, per address, how many joins failed lately, and
// how many joins from an address that has failed before are still
// undecided: those count against its allowance too, so that a flood of
// concurrent attempts cannot all pass the check before the first of them
// is refused. An address that never failed is not held back however many
// terminals join from it at once (a NAT in front of a whole district).
type failedJoins struct {
	mu    sync.Mutex
	addrs map[netip.Addr]*joinAllowance
	swept time.Time
}

type joinAllowance struct {
	l       *rate.Limiter
	pending int // undecided joins counted against l
}

func newFailedJoins() *failedJoins {
	return &failedJoins{addrs: map[netip.Addr]*joinAllowance{}}
}

// remoteIP is the address part of an http.Request's RemoteAddr.
func remoteIP(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// begin admits a join attempt from a, unless a has used up its failed
// joins. counted says the attempt is held against a's allowance until
// settle is called with the same counted.
func (f *failedJoins) begin(a netip.Addr) (ok, counted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.addrs[a]
	if st == nil {
		return true, false
	}
	if st.l.Tokens()-float64(st.pending) < 1 {
		return false, false
	}
	st.pending++
	return true, true
}

// settle records the outcome of an attempt that begin admitted.
func (f *failedJoins) settle(a netip.Addr, counted, failed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.addrs[a]
	if st != nil && counted && st.pending > 0 {
		st.pending--
	}
	if !failed {
		return
	}
	if st == nil {
		f.sweep()
		if len(f.addrs) >= maxTrackedAddrs {
			return // under a spread-out attack the table stays bounded
		}
		st = &joinAllowance{l: rate.NewLimiter(failedJoinRate, failedJoinBurst)}
		f.addrs[a] = st
	}
	st.l.Allow()
}

// sweep forgets addresses whose allowance has refilled, at most once a
// minute.
func (f *failedJoins) sweep() {
	now := time.Now()
	if now.Sub(f.swept) < time.Minute {
		return
	}
	f.swept = now
	for a, st := range f.addrs {
		if st.pending == 0 && st.l.Tokens() >= failedJoinBurst {
			delete(f.addrs, a)
		}
	}
}
