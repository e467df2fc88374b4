package controlplane

import (
	"net/netip"
	"sync"
	"time"
)

// loginGuard decides whether a password may be checked at all, before
// bcrypt runs or anything is written, and remembers the failures:
//
//   - per address (an IPv6 address counted by its /64, which one machine
//     can fill): addressFailures a minute, then 429 for the rest of the
//     minute, whatever the names tried;
//   - per address and name: pairFailures in pairWindow, then 429 for that
//     name from that address until the window has passed;
//   - per name, from anywhere: once a name has failed accountFailures
//     times in pairWindow (a guesser spread over many addresses), each
//     address may fail on it only pairFailuresUnderAttack times.
//
// A name is never locked for everyone: an address that has not failed on
// it (the administrator at their own desk) may always try, so failed
// attempts from elsewhere cannot shut anybody out. Attempts in progress
// count as failures until they are settled (take, then settle), so a burst
// of concurrent attempts cannot all pass the check before the first fails.
type loginGuard struct {
	mu       sync.Mutex
	addrs    map[netip.Prefix]*failures
	pairs    map[pairKey]*failures
	accounts map[string]*failures
	swept    time.Time
}

const (
	addressFailures         = 10
	addressWindow           = time.Minute
	pairFailures            = 5
	pairFailuresUnderAttack = 2
	accountFailures         = 20
	pairWindow              = 15 * time.Minute
	// maxGuardKeys bounds each table under a spread-out flood; beyond it
	// a new key is not tracked (its address's limit still holds when the
	// address is tracked).
	maxGuardKeys = 100_000
)

type pairKey struct {
	addr netip.Prefix
	name string
}

// failures are one key's recent failed attempts, and its attempts not yet
// settled.
type failures struct {
	at      []time.Time
	pending int
}

// recent drops what fell out of window and counts what is left, the
// pending attempts included.
func (f *failures) recent(now time.Time, window time.Duration) int {
	if f == nil {
		return 0
	}
	i := 0
	for i < len(f.at) && now.Sub(f.at[i]) >= window {
		i++
	}
	f.at = f.at[i:]
	return len(f.at) + f.pending
}

// loginAttempt is a login attempt the guard let through, to be settled.
type loginAttempt struct {
	addr netip.Prefix
	name string
}

// guardRefusal says why the guard refused an attempt.
type guardRefusal string

const (
	refusedAddress guardRefusal = "too_many_attempts" // this address failed too often, on any name
	refusedPair    guardRefusal = "account_locked"    // this address failed too often on this name
)

// addrKey is how an address is counted: IPv4 by itself, IPv6 by its /64.
func addrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

func newLoginGuard() *loginGuard {
	return &loginGuard{
		addrs:    map[netip.Prefix]*failures{},
		pairs:    map[pairKey]*failures{},
		accounts: map[string]*failures{},
	}
}

// take lets an attempt on name from addr through, counting it as pending,
// or refuses it.
func (g *loginGuard) take(addr netip.Addr, name string, now time.Time) (loginAttempt, guardRefusal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := loginAttempt{addr: addrKey(addr), name: name}
	pk := pairKey{a.addr, name}
	if g.addrs[a.addr].recent(now, addressWindow) >= addressFailures {
		return a, refusedAddress
	}
	limit := pairFailures
	if g.accounts[name].recent(now, pairWindow) >= accountFailures {
		limit = pairFailuresUnderAttack
	}
	if g.pairs[pk].recent(now, pairWindow) >= limit {
		return a, refusedPair
	}
	for _, f := range []*failures{entry(g.addrs, a.addr), entry(g.pairs, pk)} {
		if f != nil {
			f.pending++
		}
	}
	return a, ""
}

// settle ends an attempt take let through: failed or not.
func (g *loginGuard) settle(a loginAttempt, failed bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	pk := pairKey{a.addr, a.name}
	for _, f := range []*failures{g.addrs[a.addr], g.pairs[pk]} {
		if f != nil && f.pending > 0 {
			f.pending--
		}
	}
	if failed {
		g.failLocked(a.addr, a.name, now)
	}
	g.sweepLocked(now)
}

// fail records a failure that happened at a time (the audit log's, read
// back at start).
func (g *loginGuard) fail(addr netip.Addr, name string, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failLocked(addrKey(addr), name, at)
}

func (g *loginGuard) failLocked(addr netip.Prefix, name string, at time.Time) {
	for _, f := range []*failures{entry(g.addrs, addr), entry(g.pairs, pairKey{addr, name}), entry(g.accounts, name)} {
		if f != nil {
			f.at = append(f.at, at)
		}
	}
}

// entry returns m's record of k, made if there is room; nil if the table
// is full.
func entry[K comparable](m map[K]*failures, k K) *failures {
	f := m[k]
	if f == nil && len(m) < maxGuardKeys {
		f = &failures{}
		m[k] = f
	}
	return f
}

// sweepLocked forgets, at most once a minute, the keys with nothing
// recent and nothing pending.
func (g *loginGuard) sweepLocked(now time.Time) {
	if now.Sub(g.swept) < time.Minute {
		return
	}
	g.swept = now
	sweep(g.addrs, now, addressWindow)
	sweep(g.pairs, now, pairWindow)
	sweep(g.accounts, now, pairWindow)
}

func sweep[K comparable](m map[K]*failures, now time.Time, window time.Duration) {
	for k, f := range m {
		if f.recent(now, window) == 0 {
			delete(m, k)
		}
	}
}
