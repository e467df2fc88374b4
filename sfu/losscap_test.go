package sfu

import (
	"testing"
	"time"
)

// TestLossCapRelaxesWithTime: heavy loss caps the estimate; once reports
// stop saying so, the cap rises by the clock, whether or not reports keep
// coming (a paused room reports only on its audio, every few seconds).
func TestLossCapRelaxesWithTime(t *testing.T) {
	var now int64
	p := clockedPeer(t, &now)
	p.as.sentBits.Store(600_000)
	p.onReceiverReport(0.30) // 30% lost at 600 kbit/s
	capped := p.as.lossCap.Load()
	if capped != 510_000 {
		t.Fatalf("cap after 30%% loss at 600 kbit/s = %d, want 510000", capped)
	}
	tick := 250 * time.Millisecond
	now += int64(tick)
	p.relaxLossCap(now, tick)
	if got := p.as.lossCap.Load(); got != capped {
		t.Fatalf("cap moved to %d within a second of the loss report", got)
	}
	p.onReceiverReport(0.05) // moderate loss: holds
	for range 3 {
		now += int64(tick)
		p.relaxLossCap(now, tick)
	}
	if got := p.as.lossCap.Load(); got != capped {
		t.Fatalf("cap moved to %d within a second of a 5%% report", got)
	}
	// No more reports at all: 25% a second.
	for range 8 {
		now += int64(tick)
		p.relaxLossCap(now, tick)
	}
	if got, lo, hi := p.as.lossCap.Load(), int64(float64(capped)*1.25*1.25*0.99), int64(float64(capped)*1.25*1.25*1.01); got < lo || got > hi {
		t.Fatalf("cap after 2 quiet seconds = %d, want about %d", got, int64(float64(capped)*1.5625))
	}
	for range 4 * 30 {
		now += int64(tick)
		p.relaxLossCap(now, tick)
	}
	if got := p.as.lossCap.Load(); got != 0 {
		t.Fatalf("cap still %d after 30 quiet seconds, want lifted", got)
	}
}

// clockedPeer is a peer of a fresh SFU whose clock reads *now.
func clockedPeer(t *testing.T, now *int64) *Peer {
	t.Helper()
	s := newTestSFU(t)
	s.clock = func() int64 { return *now }
	r := openRouter(t, s, "conf-"+t.Name())
	p, err := r.NewPeer("room", nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
