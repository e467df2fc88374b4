package sfu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRelayQuota: the quota's check and count are one step. 100 requests
// at once with one credential, none of them created yet (pion creates the
// allocation after the check), get exactly the quota; a reservation whose
// allocation never came lapses; a deleted relay frees its place.
func TestRelayQuota(t *testing.T) {
	q := newRelayQuota(24)
	now := time.Now()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if q.reserve("1700000000:ward-001", now) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 24 {
		t.Fatalf("100 requests at once: %d reserved, want 24", ok.Load())
	}
	if !q.reserve("1700000000:ward-002", now) {
		t.Error("another credential was refused")
	}
	for range 24 {
		q.created("1700000000:ward-001")
	}
	if q.reserve("1700000000:ward-001", now.Add(reserveFor)) {
		t.Error("a 25th relay once 24 were created")
	}
	q.deleted("1700000000:ward-001")
	if !q.reserve("1700000000:ward-001", now.Add(reserveFor)) {
		t.Error("no place after a relay was deleted")
	}
	// Reservations that never became relays lapse.
	q2 := newRelayQuota(2)
	q2.reserve("u", now)
	q2.reserve("u", now)
	if q2.reserve("u", now.Add(time.Second)) {
		t.Error("a third reservation while two are pending")
	}
	if !q2.reserve("u", now.Add(reserveFor)) {
		t.Error("the failed allocations' reservations did not lapse")
	}
}
