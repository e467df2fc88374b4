package sfu

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// fakeBWE is a congestion controller whose target and state the test sets.
type fakeBWE struct {
	rate  int
	state string
	cb    func(int)
}

func (f *fakeBWE) AddStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return w
}
func (f *fakeBWE) WriteRTCP([]rtcp.Packet, interceptor.Attributes) error { return nil }
func (f *fakeBWE) GetTargetBitrate() int                                 { return f.rate }
func (f *fakeBWE) OnTargetBitrateChange(cb func(int))                    { f.cb = cb }
func (f *fakeBWE) Close() error                                          { return nil }
func (f *fakeBWE) GetStats() map[string]any {
	usage := "normal"
	if f.state == "decrease" {
		usage = "overuse"
	}
	return map[string]any{"delayTargetBitrate": f.rate, "state": f.state, "usage": usage}
}

// set moves the target as GCC would, telling the listener.
func (f *fakeBWE) set(rate int, state string) {
	f.rate, f.state = rate, state
	f.cb(rate)
}

// TestEstimateFallsOnlyOnCongestion: the allocator's estimate follows
// GCC's target up at once, and down only when GCC lowered it on overuse or
// a receiver report said packets were lost; GCC's other dips (its target
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
	// A receiver report of 5% loss makes the next fall count.
	now += int64(2 * time.Second)
	p.onReceiverReport(0.05)
	gcc.set(600_000, "increase")
	if got := held(); got != 600_000 {
		t.Errorf("a fall right after a loss report: %d, want 600000", got)
	}
	if p.as.dips != 2 {
		t.Errorf("%d dips counted, want 2", p.as.dips)
	}
}
