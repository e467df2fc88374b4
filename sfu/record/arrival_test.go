package record

import (
	"path/filepath"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// TestRecordedTimesAreArrivals: a packet lost before the first keyframe
// holds the frames behind it in the sample builder. The segment's wall
// clock is still when its frames arrived (seen in CI: a camera's layer
// change left 4.7 s of media stamped over 1.7 s of the clock), and the
// hold ends within a second of media, not 512 packets later.
func TestRecordedTimesAreArrivals(t *testing.T) {
	clk := newClock()
	rec, err := New("c1", Options{Dir: t.TempDir(), SegmentLength: time.Minute, QueuePackets: 1 << 16, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cam := &fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}
	if err := rec.Start("chair", false); err != nil {
		t.Fatal(err)
	}
	rec.Set([]Source{{cam, "hub-camera"}})
	const n = 150 // five seconds
	frames := readVP8(t, filepath.Join(sfutest.TestdataDir(), "video-360p.ivf"), n)
	// An interframe before the keyframe, in small packets, its last one lost.
	small := rtp.NewPacketizer(200, 96, 0x5678, &codecs.VP8Payloader{}, rtp.NewFixedSequencer(1000), 90000)
	lost := small.Packetize(frames[1], 3000)
	if len(lost) < 2 {
		t.Fatalf("the interframe is %d packets, want several", len(lost))
	}
	for _, p := range lost[:len(lost)-1] {
		cam.send(p)
	}
	clk.advance(33 * time.Millisecond)
	start := clk.now()
	for i := 0; i < n; i++ {
		for _, p := range small.Packetize(frames[i], 3000) {
			cam.send(p)
		}
		clk.advance(33 * time.Millisecond)
	}
	// The last frame stays in the builder: no packet after it says it is whole.
	end := clk.now().Add(-2 * 33 * time.Millisecond)
	if err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	m := rec.Manifest()
	if len(m.Segments) != 1 {
		t.Fatalf("%d segments, want one: %+v", len(m.Segments), m.Segments)
	}
	s := m.Segments[0]
	if d := s.Start.Sub(start); d < 0 || d > 10*time.Millisecond {
		t.Errorf("segment starts %v after its keyframe arrived, want 0", d)
	}
	if d := s.End.Sub(end); d < 0 || d > 10*time.Millisecond {
		t.Errorf("segment ends %v after its last frame arrived, want 0", d)
	}
	// The frames held behind the loss were written, not dropped with it.
	if s.Frames < n-2 {
		t.Errorf("%d frames written of %d after the keyframe", s.Frames, n)
	}
	if wall, media := s.End.Sub(s.Start), time.Duration(s.DurationMS)*time.Millisecond; wall-media > 50*time.Millisecond || media-wall > 50*time.Millisecond {
		t.Errorf("media %v against %v of the wall clock", media, wall)
	}
}

// TestLayerChangeDropsQueuedPackets: packets of the old layer still queued
// when the recorded layer changes never reach the new layer's builder
// (their sequence numbers would hold it as if packets were lost).
func TestLayerChangeDropsQueuedPackets(t *testing.T) {
	clk := newClock()
	rec, err := New("c1", Options{Dir: t.TempDir(), QueuePackets: 64, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w := newTrackWriter(rec, Source{&fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}, "hub-camera"})
	frames := readVP8(t, filepath.Join(sfutest.TestdataDir(), "video-360p.ivf"), 2)
	pv := packetizer(&codecs.VP8Payloader{}, 96, 90000)
	for _, f := range frames {
		for _, p := range pv.Packetize(f, 3000) {
			w.Packet(0, p)
		}
	}
	queued := len(w.queue)
	if queued == 0 {
		t.Fatal("nothing queued")
	}
	w.layer.Store(1) // what check does on a layer change
	w.resetBuilder()
	for len(w.queue) > 0 {
		w.packet(<-w.queue)
	}
	if w.firstSeen.n != 0 {
		t.Errorf("%d frames of the old layer reached the new layer's builder (%d packets were queued)", w.firstSeen.n, queued)
	}
	// The new layer's own packets do reach it.
	for _, p := range pv.Packetize(frames[0], 3000) {
		w.Packet(1, p)
	}
	for len(w.queue) > 0 {
		w.packet(<-w.queue)
	}
	if w.firstSeen.n != 1 {
		t.Errorf("the new layer's frame: %d frames seen, want 1", w.firstSeen.n)
	}
}
