package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// fakeBWE is a congestion controller whose target and state the test sets
// while the router's loop reads them.
type fakeBWE struct {
	mu    sync.Mutex
	rate  int
	state string
	cb    func(int)
}

func (f *fakeBWE) AddStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return w
}
func (f *fakeBWE) WriteRTCP([]rtcp.Packet, interceptor.Attributes) error { return nil }
func (f *fakeBWE) OnTargetBitrateChange(cb func(int))                    { f.cb = cb }
func (f *fakeBWE) Close() error                                          { return nil }

func (f *fakeBWE) GetTargetBitrate() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rate
}

func (f *fakeBWE) GetStats() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	usage := "normal"
	if f.state == "decrease" {
		usage = "overuse"
	}
	return map[string]any{"delayTargetBitrate": f.rate, "state": f.state, "usage": usage}
}

// set moves the target as GCC would, telling the listener (outside the
// lock: the listener reads the target back).
func (f *fakeBWE) set(rate int, state string) {
	f.mu.Lock()
	f.rate, f.state = rate, state
	f.mu.Unlock()
	f.cb(rate)
}

// TestEstimateFallsOnlyOnCongestion: the allocator's estimate follows
// GCC's target up at once, and down only when GCC lowered it on overuse or
// a receiver report said over 10% was lost; GCC's other dips (its target
// held under 1.5x what arrived) leave it where it was.
func TestEstimateFallsOnlyOnCongestion(t *testing.T) {
	var now int64 = 1
	p := clockedPeer(t, &now)
	gcc := &fakeBWE{rate: 2_000_000, state: "increase"}
	p.setEstimator(gcc)
	held := func() int {
		p.allocMu.Lock()
		defer p.allocMu.Unlock()
		return p.heldEstimate(now)
	}
	step := func(rate int, state string, want int, what string) {
		t.Helper()
		now += int64(2 * time.Second) // past any earlier signal
		gcc.set(rate, state)
		if got := held(); got != want {
			t.Errorf("%s: estimate %d, want %d", what, got, want)
		}
	}
	if got := held(); got != 2_000_000 {
		t.Fatalf("start: %d", got)
	}
	step(1_200_000, "increase", 2_000_000, "a dip in GCC's increase state")
	step(500_000, "decrease", 500_000, "a fall on overuse")
	step(800_000, "increase", 800_000, "a rise")
	step(600_000, "hold", 800_000, "a dip in hold")
	// A report of 5% loss is no congestion signal (a radio link loses
	// that much at random, and GCC's loss controller holds on it); a report
	// of heavy loss is one, and makes the next fall count.
	now += int64(2 * time.Second)
	p.onReceiverReport(0.05)
	gcc.set(600_000, "increase")
	if got := held(); got != 800_000 {
		t.Errorf("a fall right after a report of 5%% loss: %d, want 800000 held", got)
	}
	now += int64(2 * time.Second)
	p.as.sentBits.Store(1_000_000)
	p.onReceiverReport(0.2)
	gcc.set(500_000, "increase")
	if got := held(); got != 500_000 {
		t.Errorf("a fall right after a report of 20%% loss: %d, want 500000", got)
	}
	if p.as.dips != 3 {
		t.Errorf("%d dips counted, want 3", p.as.dips)
	}
}
