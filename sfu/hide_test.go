package sfu

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// wallTrack is a room's camera on the test's clock, sending its lowest
// layer at 150 kbit/s, that counts the keyframe requests sent to it.
func wallTrack(id string, now *int64, plis *atomic.Int64) *Track {
	tr := newTrack(id, id, webrtc.RTPCodecTypeVideo, vp8Codec, &counters{}, func() int64 { return *now },
		500*time.Millisecond, func([]rtcp.Packet) error { plis.Add(1); return nil })
	tr.addLayer(LayerLow, 1234)
	tr.layers[LayerLow].rate.Store(150_000)
	return tr
}

// TestHiddenDownTrack: a video down track capped at LayerOff forwards
// nothing and asks its publisher for no keyframe, whatever comes (a
// keyframe, the subscriber's own PLI, the router's re-requests); shown
// again it starts at its lowest layer with a keyframe request. Its
// bandwidth, freed, lets a paused track come back without a probe, once.
func TestHiddenDownTrack(t *testing.T) {
	now := int64(time.Second)
	p := clockedPeer(t, &now)
	var plis atomic.Int64
	tr := wallTrack("video-room-a", &now, &plis)
	d := newDownTrack(tr, p, tr.id, LayerLow)
	bindFake(d, &recordingWriter{}, 1, 96)
	p.mu.Lock()
	p.downs[d] = nil
	p.mu.Unlock()
	tr.addDown(d)
	p.allocate()
	if d.target.Load() != LayerLow || plis.Load() != 1 {
		t.Fatalf("subscribed: target %d, %d keyframe requests; want the lowest layer asked for once", d.target.Load(), plis.Load())
	}
	now += int64(time.Second)
	if !d.forward(LayerLow, pkt(1, 0, vp8Key), now) {
		t.Fatal("keyframe not forwarded to a track shown")
	}
	p.allocMu.Lock()
	d.rateBits = 140_000 // what the router measured it sending
	p.allocMu.Unlock()

	p.SetCaps([]LayerCap{{Down: d, Layer: LayerOff, Temporal: 1}})
	if !d.Hidden() || d.Layer() != noLayer || d.allocReason != ReasonHidden {
		t.Fatalf("hidden: hidden %v, layer %d, reason %q", d.Hidden(), d.Layer(), d.allocReason)
	}
	asked := plis.Load()
	for i := uint16(2); i < 10; i++ {
		now += int64(300 * time.Millisecond)
		if d.forward(LayerLow, pkt(i, uint32(i)*3000, vp8Key), now) {
			t.Fatalf("packet %d forwarded to a hidden track", i)
		}
		tr.rerequestKeyframes()
		tr.requestKeyframe(d.Layer()) // what a subscriber's PLI does
		p.allocate()
	}
	if got := plis.Load(); got != asked {
		t.Errorf("%d keyframe requests for a hidden track", got-asked)
	}
	p.allocMu.Lock()
	if freed := p.as.freed; freed != 140_000 {
		t.Errorf("freed %d bit/s, want what it was sending (140000)", freed)
	}
	paused := allocTrack{rates: [MaxLayers]int{150_000}, policy: LayerLow, pin: LayerHigh, cur: noLayer}
	if l, ok := p.resumeIntoFreed(&paused, LayerLow); ok || l != 0 {
		t.Errorf("a 150 kbit/s track resumed into 140 kbit/s freed")
	}
	p.as.freed = 400_000
	if l, ok := p.resumeIntoFreed(&paused, LayerLow); !ok || l != LayerLow || p.as.freed != 250_000 {
		t.Errorf("resume into 400 kbit/s freed: %d %v, %d left", l, ok, p.as.freed)
	}
	p.allocMu.Unlock()

	now += int64(time.Second)
	tr.layers[LayerLow].lastPacket.Store(now) // the room still sends
	p.SetCaps([]LayerCap{{Down: d, Layer: LayerLow, Temporal: 1}})
	if d.Hidden() || d.target.Load() != LayerLow || plis.Load() != asked+1 {
		t.Errorf("shown again: hidden %v, target %d, %d keyframe requests; want the lowest layer asked for once", d.Hidden(), d.target.Load(), plis.Load()-asked)
	}
	p.allocMu.Lock()
	if p.as.freed != 100_000 {
		t.Errorf("shown again: freed %d, want 250000 less its 150000", p.as.freed)
	}
	p.allocMu.Unlock()
	if !d.forward(LayerLow, pkt(20, 60000, vp8Key), now) {
		t.Error("keyframe not forwarded once shown again")
	}
}
