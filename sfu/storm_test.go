package sfu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestKeyframeStormBounded: a real pion hub publishes three layers; 116
// synthetic subscribers (peers in the router whose down tracks are bound to
// counting writers instead of a browser) join within 2 s, and then all
// switch layer at once. Each join and each switch asks for a keyframe; the
// publisher, counting the PLIs it really receives over its connection, gets
// no more than 2 per second per layer, and every subscriber still ends on
// the layer it asked for.
func TestKeyframeStormBounded(t *testing.T) {
	checkGoroutines(t)
	const rooms = 116
	s := newTestSFU(t)
	r, track, pub := threeLayerHub(t, s, "conf-storm")

	// 116 rooms join within 2 s, eight at a time.
	start := time.Now()
	downs := make([]*DownTrack, rooms)
	writers := make([]*countingWriter, rooms)
	errs := make(chan error, rooms)
	next := make(chan int, rooms)
	for i := range rooms {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p, err := r.NewPeer(fmt.Sprintf("room-%03d", i), nopListener{})
				if err != nil {
					errs <- err
					return
				}
				d, err := p.Subscribe(track, LayerHigh)
				if err != nil {
					errs <- err
					return
				}
				writers[i] = &countingWriter{}
				if _, err := d.Bind(fakeContext{w: writers[i], ssrc: webrtc.SSRC(1000 + i)}); err != nil {
					errs <- err
					return
				}
				downs[i] = d
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	joined := time.Since(start)
	if joined > 2*time.Second {
		t.Logf("warning: 116 joins took %v, more than the 2 s the storm is meant to fit in", joined)
	}
	waitFor(t, 15*time.Second, "every room receiving the hub", func() bool {
		for i, d := range downs {
			if d.Layer() == noLayer || writers[i].packets.Load() == 0 {
				return false
			}
		}
		return true
	})

	// All switch at once: a technician pins every room to the small layer.
	switchAt := time.Now()
	for _, d := range downs {
		d.sub.SetPin(LayerLow)
	}
	waitFor(t, 15*time.Second, "every room switched to the small layer", func() bool {
		for _, d := range downs {
			if d.Layer() != LayerLow {
				return false
			}
		}
		return true
	})
	t.Logf("116 joins in %v; switch of all 116 done in %v", joined, time.Since(switchAt))

	// The publisher's view of the storm.
	for _, rid := range []string{"q", "h", "f"} {
		times := pub.KeyframeRequests(rid)
		worst := 0
		for i := range times {
			n := 0
			for j := i; j < len(times) && times[j].Sub(times[i]) < time.Second; j++ {
				n++
			}
			worst = max(worst, n)
		}
		t.Logf("layer %s: %d keyframe requests in all, at most %d in any second", rid, len(times), worst)
		if worst > 2 {
			t.Errorf("layer %s: %d keyframe requests within one second, want at most 2 (all: %v)", rid, worst, times)
		}
	}
	if got := len(pub.KeyframeRequests("q")); got == 0 {
		t.Error("no keyframe request reached the publisher's small layer: the switch did not ask for one")
	}
}

// nopListener is a subscriber with no browser behind it.
type nopListener struct{}

func (nopListener) OnOffer(string)                                   {}
func (nopListener) OnCandidate(PC, webrtc.ICECandidateInit)          {}
func (nopListener) OnConnectionState(PC, webrtc.PeerConnectionState) {}

// countingWriter stands in for a subscriber's SRTP stream.
type countingWriter struct{ packets atomic.Int64 }

func (w *countingWriter) WriteRTP(*rtp.Header, []byte) (int, error) {
	w.packets.Add(1)
	return 0, nil
}
func (w *countingWriter) Write(b []byte) (int, error) { return len(b), nil }

// fakeContext binds a down track as pion would after negotiating VP8 (and
// its RTX) with a subscriber.
type fakeContext struct {
	w    webrtc.TrackLocalWriter
	ssrc webrtc.SSRC
}

func (c fakeContext) CodecParameters() []webrtc.RTPCodecParameters {
	v, rtx := videoCodecs[0].params()
	return []webrtc.RTPCodecParameters{v, rtx}
}
func (fakeContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c fakeContext) SSRC() webrtc.SSRC                                    { return c.ssrc }
func (fakeContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (fakeContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c fakeContext) WriteStream() webrtc.TrackLocalWriter                 { return c.w }
func (fakeContext) ID() string                                             { return "fake" }
func (fakeContext) RTCPReader() interceptor.RTCPReader                     { return nil }
