package controlplane

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestLoginGuard: the guard's rules, on its own clock. An IPv6 address is
// counted by its /64 (one machine can use any of it), IPv4 by itself;
// attempts in progress count, so a burst at once passes no more than the
// limit; failures age out of their windows.
func TestLoginGuard(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	g := newLoginGuard()
	fail := func(addr, name string) guardRefusal {
		t.Helper()
		a, refused := g.take(netip.MustParseAddr(addr), name, now)
		if refused == "" {
			g.settle(a, true, now)
		}
		return refused
	}
	// Five failures on a name from anywhere in one /64, then refused.
	for i := range pairFailures {
		if r := fail(fmt.Sprintf("2001:db8:1:2::%x", i+1), "admin"); r != "" {
			t.Fatalf("failure %d refused: %s", i, r)
		}
	}
	if r := fail("2001:db8:1:2:ffff::9", "admin"); r != refusedPair {
		t.Errorf("another address of the same /64: %q, want %q", r, refusedPair)
	}
	if r := fail("2001:db8:1:3::1", "admin"); r != "" {
		t.Errorf("the next /64: %q, want a try", r)
	}
	if r := fail("10.0.0.1", "admin"); r != "" {
		t.Errorf("an IPv4 address: %q, want a try", r)
	}
	// IPv4-mapped is the IPv4 address.
	if addrKey(netip.MustParseAddr("::ffff:10.0.0.1")) != addrKey(netip.MustParseAddr("10.0.0.1")) {
		t.Error("an IPv4-mapped address is counted apart from its IPv4 address")
	}
	// Ten failures a minute from one address, whatever the names.
	for i := range addressFailures - 1 {
		if r := fail("10.0.0.2", string(rune('a'+i))+"name"); r != "" {
			t.Fatalf("name %d refused: %s", i, r)
		}
	}
	if r := fail("10.0.0.2", "zname"); r != "" {
		t.Fatalf("the tenth: %s", r)
	}
	if r := fail("10.0.0.2", "yname"); r != refusedAddress {
		t.Errorf("the eleventh name from one address: %q, want %q", r, refusedAddress)
	}
	now = now.Add(addressWindow)
	if r := fail("10.0.0.2", "yname"); r != "" {
		t.Errorf("a minute later: %q, want a try", r)
	}
	now = now.Add(pairWindow)
	if r := fail("2001:db8:1:2::77", "admin"); r != "" {
		t.Errorf("15 minutes later: %q, want a try", r)
	}

	// A burst of 100 at once from one address: the pending ones count.
	// Every attempt is taken while those let through are still under
	// way (their password checks wait on gate).
	var wg, tried sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	gate := make(chan struct{})
	for range 100 {
		wg.Add(1)
		tried.Add(1)
		go func() {
			defer wg.Done()
			a, refused := g.take(netip.MustParseAddr("10.9.9.9"), "boss", now)
			tried.Done()
			if refused != "" {
				return
			}
			mu.Lock()
			passed++
			mu.Unlock()
			<-gate // the password check takes its time
			g.settle(a, true, now)
		}()
	}
	tried.Wait()
	close(gate)
	wg.Wait()
	if passed != pairFailures {
		t.Errorf("a burst of 100 at once: %d checked, want %d", passed, pairFailures)
	}
}
