package record

import (
	"path/filepath"
	"testing"
	"time"

	"citybridge/sfu"
	"citybridge/sfu/sfutest"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// TestRecordingFallsBackFromStalledLayer: a camera sends three layers;
// the top one (f) stops after 3 s while the track still calls it its top
// layer until 5 s (sfu's TopLayer notices a stopped layer after 1.5 s,
// and later when a starved Chromium's paused layer still brings a packet
// now and then). The recording does not keep f's segment open with nothing
// in it: the next frames recorded are h's, starting within 1.1 s of f's
// last frame. f flows again from 6 s: the recording comes back up to it
// at h's segment's cut (4 s segments), not before. The writer is driven
// as its goroutine drives it: packets as they come, check every
// checkEvery, on the recorder's (test) clock.
func TestRecordingFallsBackFromStalledLayer(t *testing.T) {
	clk := newClock()
	start := clk.now()
	rec, err := New("c1", Options{Dir: t.TempDir(), SegmentLength: 4 * time.Second, QueuePackets: 1 << 12, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Start("chair", false); err != nil {
		t.Fatal(err)
	}
	track := &fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}
	track.top.Store(2)
	w := newTrackWriter(rec, Source{track, "hub-camera"})
	frames := readVP8(t, filepath.Join(sfutest.TestdataDir(), "video-360p.ivf"), 30)
	if !isKeyframe(familyVP8, frames[0]) || isKeyframe(familyVP8, frames[1]) {
		t.Fatal("the clip's first frame should be its only keyframe among the first two")
	}
	var pz [sfu.MaxLayers]rtp.Packetizer
	answered := [sfu.MaxLayers]int32{}
	for l := range pz {
		pz[l] = rtp.NewPacketizer(1200, 96, 0x1000+uint32(l), &codecs.VP8Payloader{}, rtp.NewRandomSequencer(), 90000)
	}
	const fps = 30
	stop, topMoves, resume, end := 3*time.Second, 5*time.Second, 6*time.Second, 11*time.Second
	nextCheck := checkEvery
	for i := 0; ; i++ {
		at := time.Duration(i) * time.Second / fps
		if at >= end {
			break
		}
		for at >= nextCheck {
			w.check()
			nextCheck += checkEvery
		}
		if at >= topMoves && at < resume {
			track.top.Store(1)
		} else if at >= resume {
			track.top.Store(2)
		}
		for l := range pz {
			if l == 2 && at >= stop && at < resume {
				continue // f paused
			}
			// A layer answers a keyframe request with its next frame.
			f := frames[1+i%(len(frames)-1)]
			if n := track.asked[l].Load(); i == 0 || n != answered[l] {
				answered[l], f = n, frames[0]
			}
			for _, p := range pz[l].Packetize(f, 90000/fps) {
				w.Packet(l, p)
			}
		}
		for len(w.queue) > 0 {
			w.packet(<-w.queue)
		}
		clk.advance(time.Second / fps)
	}
	w.flush()
	w.closeSegment()

	m, err := ReadManifest(rec.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range m.Segments {
		got = append(got, s.Layer+" "+s.Start.Sub(start).String()+"-"+s.End.Sub(start).String())
	}
	if len(m.Segments) < 3 || m.Segments[0].Layer != "f" || m.Segments[1].Layer != "h" {
		t.Fatalf("segments %v: want f, then h after f stopped, then f again", got)
	}
	fSeg, hSeg := m.Segments[0], m.Segments[1]
	if hole := hSeg.Start.Sub(fSeg.End); hole > 1100*time.Millisecond || fSeg.End.Sub(start) > stop {
		t.Errorf("f's last frame at %v, h's first at %v: a hole of %v, want at most 1.1 s (segments %v)",
			fSeg.End.Sub(start), hSeg.Start.Sub(start), hole, got)
	}
	// Back up to f at h's cut (h's segment 4 s long), not when f resumed.
	if d := hSeg.End.Sub(hSeg.Start); d < 3800*time.Millisecond {
		t.Errorf("h's segment lasted %v: the recording went back up to f before the cut (segments %v)", d, got)
	}
	if last := m.Segments[len(m.Segments)-1]; last.Layer != "f" || last.Start.Before(hSeg.End) {
		t.Errorf("the last segment: %+v; want f again after h's cut (segments %v)", last, got)
	}
}
