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
)

// failedJoins remembers, per address, how many joins failed lately.
type failedJoins struct {
	mu    sync.Mutex
	addrs map[netip.Addr]*rate.Limiter
	swept time.Time
}

func newFailedJoins() *failedJoins {
	return &failedJoins{addrs: map[netip.Addr]*rate.Limiter{}}
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

// blocked says whether a has used up its failed joins.
func (f *failedJoins) blocked(a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.addrs[a]
	return l != nil && l.Tokens() < 1
}

// failed records a failed join from a.
func (f *failedJoins) failed(a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.addrs[a]
	if l == nil {
		f.sweep()
		if len(f.addrs) >= maxTrackedAddrs {
			return // under a spread-out attack the table stays bounded
		}
		l = rate.NewLimiter(failedJoinRate, failedJoinBurst)
		f.addrs[a] = l
	}
	l.Allow()
}

// sweep forgets addresses whose allowance has refilled, at most once a
// minute.
func (f *failedJoins) sweep() {
	now := time.Now()
	if now.Sub(f.swept) < time.Minute {
		return
	}
	f.swept = now
	for a, l := range f.addrs {
		if l.Tokens() >= failedJoinBurst {
			delete(f.addrs, a)
		}
	}
}
