package main

import (
	"fmt"
	"testing"
	"time"

	"citybridge/sfu"

	"github.com/pion/webrtc/v4"
)

// TestLossRecovery: the room's downlink drops 5% of packets at random
// (nftables on its veth). The room's Chromium NACKs what it misses, the
// server answers from its packet cache (each retransmission sent twice, see
// sfu.DownTrack.sendAgain), and the picture keeps its frame rate and its
// size: above 25 frames a second over ten seconds, and 1280x720 in at
// least 90% of the samples taken four times a second from the loss on (an
// unlimited link carries the hub's full layer; loss alone must not cost
// the room its picture's size).
func TestLossRecovery(t *testing.T) {
	requireMediaPass(t) // not parallel: it needs the machine's CPU to itself
	link := newNetLink(t)
	ts := startTestServerOn(t, link)
	const id = "ward-017"

	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	// The room films small: its own picture is not what is measured, and
	// its encoder would take CPU from the hub's, whose frame rate bounds
	// what the room can decode.
	roomBrowser := newBrowserIn(t, link, withCamera("320x180"))
	room := openTab(t, roomBrowser, id, ts.terminalLink(t, id))
	saveScreenshotsOnFailure(t, host, room)

	video := func() (inboundStat, string) {
		stats, err := inbound(room)
		if err != nil {
			return inboundStat{}, err.Error()
		}
		v, _ := find(stats, "hub", "video")
		return v, fmt.Sprintf("%+v", v)
	}
	// Settled first: at the full layer, with the link's estimate carrying
	// it, so the measurement is of the loss and not of the join's ramp-up.
	waitUntil(t, 60*time.Second, id+" decoding the hub at 1280x720", func() (bool, string) {
		v, seen := video()
		return v.FramesDecoded > 30 && v.FrameWidth == 1280, seen
	})
	waitSettledAtFull(t, ts, id)

	link.SetLoss(t, 5)
	lossAt := time.Now()
	// What the room decodes, four times a second from the loss on: the
	// picture must keep its frame rate at the size the link carries, and
	// an unlimited link carries the hub's full layer.
	var share sizeShare
	sample := func() inboundStat {
		v, _ := video()
		l, _ := hubLayer(room)
		share.add(time.Since(lossAt), v, l)
		return v
	}
	st0 := ts.media.Stats()
	rtx0, twice0 := st0.Retransmitted, st0.RetransmittedTwice
	// Let the loss bite, then measure ten seconds of it.
	waitUntil(t, 15*time.Second, "a NACK answered under loss", func() (bool, string) {
		sample()
		st := ts.media.Stats()
		return st.Retransmitted > rtx0 && time.Since(lossAt) > 3*time.Second, fmt.Sprintf("%d retransmitted", st.Retransmitted-rtx0)
	})
	e0 := hubEncoded(t, host)
	v0 := sample()
	t0 := time.Now()
	waitUntil(t, 15*time.Second, "ten seconds under 5% loss", func() (bool, string) {
		sample()
		return time.Since(t0) >= 10*time.Second, ""
	})
	v1 := sample()
	_, seen := video()
	took := time.Since(t0).Seconds()
	fps := float64(v1.FramesDecoded-v0.FramesDecoded) / took
	sent := float64(hubEncoded(t, host)-e0) / took
	st := ts.media.Stats()
	// The share of the hub's frames the room decodes is logged, not held to
	// a bound: without the copies of retransmissions it was 86-95%, with
	// them 92-101%, and the low end is the room's Chromium dropping frames
	// it decoded late on a machine its host starves (20 in ten seconds in
	// one run), which a bound would count against the bridge.
	t.Logf("under 5%% loss: %.1f frames/s decoded at %dx%d, %.0f%% of the %.1f a second the hub encoded of its full layer; the room missed %d packets and sent %d NACKs; the server retransmitted %d, %d of them twice",
		fps, v1.FrameWidth, v1.FrameHeight, 100*fps/max(sent, 1), sent, v1.PacketsLost-v0.PacketsLost, v1.NackCount-v0.NackCount,
		st.Retransmitted-rtx0, st.RetransmittedTwice-twice0)
	t.Logf("the room's frames in those ten seconds: %d decoded, %d dropped (%d keyframes, %d PLIs sent); jitter buffer %.0f ms a frame; %d retransmitted packets arrived, %d discarded as late",
		v1.FramesDecoded-v0.FramesDecoded, v1.FramesDropped-v0.FramesDropped,
		v1.KeyFramesDecoded-v0.KeyFramesDecoded, v1.PLICount-v0.PLICount, jitterMs(v0, v1),
		v1.Retransmitted-v0.Retransmitted, v1.PacketsDiscarded-v0.PacketsDiscarded)
	t.Logf("the room's picture from the loss on: %v", &share)
	if fps <= 25 {
		t.Errorf("decoded %.1f frames/s under 5%% loss, want above 25; the hub encoded %.1f a second (%s)", fps, sent, seen)
	}
	// Measured: every sample at 1280x720 in 11 runs (bench/RESULTS.md). The
	// bound leaves a second or so of the ~13 s for a machine that starves
	// the room's decoder, and fails a server that serves a lower layer for
	// longer than that (checked with a pin to the middle layer).
	const fullShare = 0.9
	if got := share.fullShare(); got < fullShare {
		t.Errorf("under 5%% loss the room decoded 1280x720 in %.0f%% of the samples, want at least %.0f%%: %v", 100*got, 100*fullShare, &share)
	}
	if v1.NackCount <= v0.NackCount {
		t.Errorf("the room sent no NACKs under 5%% loss: the loss is not on its link (%s)", seen)
	}
	if st.Retransmitted <= rtx0 {
		t.Error("the server retransmitted nothing")
	}
	link.ClearLoss(t)
}

// hubEncoded returns how many frames the hub's page has encoded on its
// full simulcast layer: what a room could decode at most.
func hubEncoded(t *testing.T, host *tab) int {
	t.Helper()
	n, err := hubFullFrames(host)
	if err != nil {
		t.Fatalf("the hub's encoded frames: %v", err)
	}
	return n
}

// jitterMs is the mean time a frame waited in the jitter buffer between
// two samples, in milliseconds.
func jitterMs(v0, v1 inboundStat) float64 {
	n := v1.JitterBufferEmittedCount - v0.JitterBufferEmittedCount
	if n <= 0 {
		return 0
	}
	return (v1.JitterBufferDelay - v0.JitterBufferDelay) / float64(n) * 1000
}

// waitSettledAtFull waits until the server has sent the room the hub's full
// layer for settleFor on end, with the room's bandwidth estimate covering
// that layer's rate with the allocator's headroom. A join is not settled
// when the page first decodes 1280x720: a subscriber's estimate starts at
// 1 Mbit/s, so it drops to the middle layer when the full layer's real rate
// shows, and a probe brings it back a few seconds later. Loss applied in
// those seconds would be measured together with two keyframe waits.
func waitSettledAtFull(t *testing.T, ts *testServer, id string) {
	t.Helper()
	const settleFor = 3 * time.Second
	var (
		since     time.Time // when the condition last became true
		lastAt    time.Time
		lastBytes uint64
	)
	waitUntil(t, 45*time.Second, id+"'s estimate carrying the hub's full layer", func() (bool, string) {
		r, err := ts.media.Router(ts.demo.Conference.ID)
		if err != nil {
			return false, err.Error()
		}
		p := r.Peer(id)
		if p == nil {
			return false, "no peer " + id
		}
		var d *sfu.DownTrack
		for _, dt := range p.DownTracks() {
			if dt.Kind() == webrtc.RTPCodecTypeVideo && dt.Track().PublisherID() == "hub" {
				d = dt
			}
		}
		if d == nil {
			return false, "not subscribed to the hub's video"
		}
		_, bytes := d.Stats()
		now := time.Now()
		if lastAt.IsZero() || now.Sub(lastAt) < time.Second {
			if lastAt.IsZero() {
				lastAt, lastBytes = now, bytes
			}
			return false, "measuring"
		}
		rate := float64(bytes-lastBytes) * 8 / now.Sub(lastAt).Seconds()
		lastAt, lastBytes = now, bytes
		est := p.Estimate()
		ok := d.Layer() == sfu.LayerHigh && float64(est) >= 1.15*rate
		seen := fmt.Sprintf("layer %d, estimate %d kbit/s, full layer %.0f kbit/s", d.Layer(), est/1000, rate/1000)
		if !ok {
			since = time.Time{}
			return false, seen
		}
		if since.IsZero() {
			since = now
		}
		return now.Sub(since) >= settleFor, seen
	})
}

// sizeShare counts, over a measurement's samples, those in which the room
// decoded the hub at 1280x720, and the frames decoded between two such
// samples.
type sizeShare struct {
	samples, full      int
	frames, fullFrames int
	last               inboundStat
	others             []string // what the first samples below 1280x720 saw
}

func (s *sizeShare) add(at time.Duration, v inboundStat, l layerInfo) {
	if s.samples > 0 {
		n := v.FramesDecoded - s.last.FramesDecoded
		s.frames += n
		if v.FrameWidth == 1280 && s.last.FrameWidth == 1280 {
			s.fullFrames += n
		}
	}
	s.last = v
	s.samples++
	if v.FrameWidth == 1280 {
		s.full++
	} else if len(s.others) < 12 {
		s.others = append(s.others, fmt.Sprintf("%.2f s %dx%d (layer %q for %q)", at.Seconds(), v.FrameWidth, v.FrameHeight, l.Layer, l.Reason))
	}
}

func (s *sizeShare) fullShare() float64 {
	return float64(s.full) / float64(max(s.samples, 1))
}

func (s *sizeShare) String() string {
	return fmt.Sprintf("%d of %d samples at 1280x720 (%.0f%%), %d of %d frames between two such samples (%.0f%%); below it: %v",
		s.full, s.samples, 100*s.fullShare(),
		s.fullFrames, s.frames, 100*float64(s.fullFrames)/float64(max(s.frames, 1)), s.others)
}
