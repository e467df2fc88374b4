package sfu

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// received records what a subscriber sees on one track and checks, packet
// by packet, that it is one continuous stream.
type received struct {
	mu       sync.Mutex
	ssrc     uint32
	lastSeq  uint16
	lastTS   uint32
	packets  int
	problems []string
	widths   []int // frame width of each keyframe, in order
}

func (r *received) add(ssrc uint32, seq uint16, ts uint32, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.packets > 0 {
		if ssrc != r.ssrc {
			r.problems = append(r.problems, fmt.Sprintf("SSRC changed %d -> %d", r.ssrc, ssrc))
		}
		if seq != r.lastSeq+1 {
			r.problems = append(r.problems, fmt.Sprintf("sequence %d after %d", seq, r.lastSeq))
		}
		if int32(ts-r.lastTS) < 0 {
			r.problems = append(r.problems, fmt.Sprintf("timestamp %d went back from %d", ts, r.lastTS))
		}
	}
	r.ssrc, r.lastSeq, r.lastTS = ssrc, seq, ts
	r.packets++
	if w := vp8KeyframeWidth(payload); w > 0 && (len(r.widths) == 0 || r.widths[len(r.widths)-1] != w) {
		r.widths = append(r.widths, w)
	}
}

func (r *received) lastWidth() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.widths) == 0 {
		return 0
	}
	return r.widths[len(r.widths)-1]
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packets
}

// vp8KeyframeWidth returns the width coded in a VP8 keyframe's header, or 0
// when payload does not start a keyframe.
func vp8KeyframeWidth(p []byte) int {
	if !isVP8Keyframe(p) {
		return 0
	}
	i := 1
	if p[0]&0x80 != 0 {
		x := p[1]
		i = 2
		if x&0x80 != 0 {
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 {
			i++
		}
		if x&0x30 != 0 {
			i++
		}
	}
	f := p[i:]
	if len(f) < 10 || f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0
	}
	return int(f[6]) | int(f[7]&0x3f)<<8
}

// TestForwardContinuity: pion publisher -> SFU -> pion subscriber in one
// process. Across forced layer changes f -> q -> h the subscriber sees
// continuous sequence numbers, monotonic timestamps and one SSRC, and the
// picture really changes size at each switch.
func TestForwardContinuity(t *testing.T) {
	checkGoroutines(t)
	_, r := newTestRouter(t, "conf-1", nil)

	sub := newClient(t, r, "room-1")
	var rec received
	sub.sub.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			rec.add(p.SSRC, p.SequenceNumber, p.Timestamp, p.Payload)
		}
	})
	downs := make(chan *DownTrack, 1)
	r.OnTrack(func(_ *Peer, tr *Track) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		d, err := sub.peer.Subscribe(tr, LayerHigh)
		if err != nil {
			t.Error(err)
			return
		}
		downs <- d
	})

	publishSynthetic(t, newClient(t, r, "hub"), "f", "h", "q")

	var d *DownTrack
	select {
	case d = <-downs:
	case err := <-sub.errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the SFU never reported the hub's video track")
	}

	steps := []struct {
		layer, width int
	}{{LayerHigh, 1280}, {LayerLow, 320}, {LayerMid, 640}}
	for _, step := range steps {
		d.SetMaxLayer(step.layer)
		waitFor(t, 10*time.Second, fmt.Sprintf("layer %d forwarded", step.layer), func() bool {
			return d.Layer() == step.layer
		})
		n := rec.count()
		waitFor(t, 10*time.Second, fmt.Sprintf("%d-pixel keyframe at the subscriber", step.width), func() bool {
			return rec.lastWidth() == step.width && rec.count() > n+60
		})
	}
	select {
	case err := <-sub.errs:
		t.Fatal(err)
	default:
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.problems) > 0 {
		t.Fatalf("stream not continuous over %d packets: %v", rec.packets, rec.problems)
	}
	// Before f arrives the subscriber may start on a lower layer; from the
	// first forced switch on, the sizes must follow the steps exactly.
	if n := len(rec.widths); n < 3 || fmt.Sprint(rec.widths[n-3:]) != "[1280 320 640]" {
		t.Fatalf("keyframe widths %v, want them to end 1280, 320, 640", rec.widths)
	}
	t.Logf("%d packets, one SSRC %d, widths %v", rec.packets, rec.ssrc, rec.widths)
}

// TestUnansweredOfferMadeAgain: a subscriber that never answers the SFU's
// offer (a page whose handling of it failed) is offered again after the
// answer timeout, answers that one and receives the hub's video; once the
// answer is in, no further offer comes.
func TestUnansweredOfferMadeAgain(t *testing.T) {
	checkGoroutines(t)
	const timeout = 400 * time.Millisecond
	s, r := newTestRouter(t, "conf-1", func(c *Config) { c.AnswerTimeout = timeout })

	room := newClient(t, r, "room-1")
	room.dropOffers.Store(1)
	var packets atomic.Int64
	room.sub.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := remote.ReadRTP(); err != nil {
				return
			}
			packets.Add(1)
		}
	})
	subscribeVideo(t, r, room, LayerHigh)
	publishSynthetic(t, newClient(t, r, "hub"), "q")

	for deadline := time.Now().Add(15 * time.Second); packets.Load() <= 20; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-room.errs:
			t.Fatal(err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room receives nothing of the hub after its first offer was lost: %d offers, %d repeated, %d packets, subscriber connection %s",
				room.offers.Load(), s.Stats().OffersRepeated, packets.Load(), room.sub.ConnectionState())
		}
	}
	if n := room.offers.Load(); n < 2 {
		t.Fatalf("%d offers: the lost one was never made again", n)
	}
	if got := s.Stats().OffersRepeated; got < 1 {
		t.Errorf("OffersRepeated = %d, want at least 1", got)
	}
	// Answered now: the timer is off, no offer follows.
	n := room.offers.Load()
	time.Sleep(3 * timeout)
	if got := room.offers.Load(); got != n {
		t.Errorf("%d more offers after the answer", got-n)
	}
}

// TestICERestartWithOfferOut: an ICE restart asked while the SFU's offer
// is still out (the participant's line went down before it could answer)
// makes that same offer again, and once it is answered, a second offer
// with new ICE credentials follows. (pion cannot roll a local offer back;
// the restart used to try, fail, and leave the participant with no offer
// at all.)
func TestICERestartWithOfferOut(t *testing.T) {
	checkGoroutines(t)
	_, r := newTestRouter(t, "conf-1", func(c *Config) { c.AnswerTimeout = time.Minute })
	room := newClient(t, r, "room-1")
	room.dropOffers.Store(1)
	r.OnTrack(func(_ *Peer, tr *Track) {
		if _, err := room.peer.Subscribe(tr, LayerHigh); err != nil {
			t.Error(err)
		}
	})
	publishSynthetic(t, newClient(t, r, "hub"), "q")

	waitFor(t, 10*time.Second, "the SFU's first offer", func() bool { return room.offers.Load() >= 1 })
	room.peer.RestartICE()
	waitFor(t, 10*time.Second, "the offer made again, then the restart's own", func() bool { return room.offers.Load() >= 3 })
	room.mu.Lock()
	sdps := append([]string(nil), room.offerSDPs...)
	room.mu.Unlock()
	if ufrag(sdps[1]) != ufrag(sdps[0]) || strings.Count(sdps[1], "m=") != strings.Count(sdps[0], "m=") {
		t.Error("the second offer is not the outstanding one made again")
	}
	if ufrag(sdps[2]) == "" || ufrag(sdps[2]) == ufrag(sdps[0]) {
		t.Errorf("the third offer's ICE ufrag %q, the first's %q: want new credentials", ufrag(sdps[2]), ufrag(sdps[0]))
	}
	waitFor(t, 15*time.Second, "the subscribing connection connected after the restart", func() bool {
		select {
		case err := <-room.errs:
			t.Fatal(err)
		default:
		}
		return room.sub.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
}

func ufrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}
