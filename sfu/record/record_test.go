package record

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"citybridge/sfu"
	"citybridge/sfu/record/recordtest"
	"citybridge/sfu/sfutest"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// fakeTrack stands for a published track: the test calls its tap with
// packets made from the clips, as the SFU's read loop would.
type fakeTrack struct {
	kind      webrtc.RTPCodecType
	codec     webrtc.RTPCodecParameters
	mu        sync.Mutex
	tap       sfu.Tap
	keyframes atomic.Int32
	top       atomic.Int32                // what TopLayer says (0 unless a test sets it)
	asked     [sfu.MaxLayers]atomic.Int32 // keyframe requests per layer
}

func (f *fakeTrack) PublisherID() string              { return "hub" }
func (f *fakeTrack) Kind() webrtc.RTPCodecType        { return f.kind }
func (f *fakeTrack) Codec() webrtc.RTPCodecParameters { return f.codec }
func (f *fakeTrack) TopLayer() int                    { return int(f.top.Load()) }
func (f *fakeTrack) RequestKeyframe(l int)            { f.keyframes.Add(1); f.asked[l].Add(1) }
func (f *fakeTrack) SetTap(t sfu.Tap)                 { f.mu.Lock(); f.tap = t; f.mu.Unlock() }
func (f *fakeTrack) send(p *rtp.Packet)               { f.mu.Lock(); t := f.tap; f.mu.Unlock(); t.Packet(0, p) }
func codec(mime string, rate uint32) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: rate}}
}

// clock is the recorder's wall clock in the test: it moves with the
// media fed, so segments of seconds are cut without waiting for them.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func packetizer(p rtp.Payloader, pt uint8, rate uint32) rtp.Packetizer {
	return rtp.NewPacketizer(1200, pt, 0x1234+uint32(pt), p, rtp.NewRandomSequencer(), rate)
}

// TestRecorderSegments feeds a VP8 camera, an H.264 camera and Opus audio
// through the recorder with 3-second segments; every closed segment is in
// the manifest with its checksum, and ffprobe and ffmpeg read it: codec,
// picture size, and a duration that matches the media fed.
func TestRecorderSegments(t *testing.T) {
	recordtest.NeedTools(t, "ffprobe", "ffmpeg")
	goroutines := runtime.NumGoroutine()
	dir := t.TempDir()
	clk := newClock()
	rec, err := New("c1", Options{Dir: dir, SegmentLength: 3 * time.Second, QueuePackets: 1 << 16, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	vp8 := &fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}
	h264 := &fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeH264, 90000)}
	opus := &fakeTrack{kind: webrtc.RTPCodecTypeAudio, codec: codec(webrtc.MimeTypeOpus, 48000)}
	if err := rec.Start("chair", false); err != nil {
		t.Fatal(err)
	}
	rec.Set([]Source{{vp8, "hub-camera"}, {h264, "ward-001-camera"}, {opus, "hub-audio"}})

	const seconds = 10
	vp8Frames := readVP8(t, filepath.Join(sfutest.TestdataDir(), "video-360p.ivf"), seconds*30)
	h264Frames := makeH264(t, seconds)
	opusFrames := readOpus(t, filepath.Join(sfutest.TestdataDir(), "audio.ogg"), seconds*50)
	pv := packetizer(&codecs.VP8Payloader{}, 96, 90000)
	ph := packetizer(&codecs.H264Payloader{}, 102, 90000)
	po := packetizer(&codecs.OpusPayloader{}, 111, 48000)
	// Ten seconds, in 20 ms steps: audio every step, video every 1/30 s.
	sent := 0
	for step := 0; step < seconds*50; step++ {
		for _, p := range po.Packetize(opusFrames[step], 960) {
			opus.send(p)
		}
		for ; sent < (step+1)*30/50 && sent < len(vp8Frames); sent++ {
			for _, p := range pv.Packetize(vp8Frames[sent], 3000) {
				vp8.send(p)
			}
			for _, p := range ph.Packetize(h264Frames[sent], 3000) {
				h264.send(p)
			}
		}
		clk.advance(20 * time.Millisecond)
	}
	if err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := rec.Dropped(); n != 0 {
		t.Errorf("%d packets dropped", n)
	}
	// Stop waited for every writer: their goroutines end with it.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Stop, %d before the recording", runtime.NumGoroutine(), goroutines)
		}
	}
	m, err := ReadManifest(rec.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Runs) != 1 || m.Runs[0].By != "chair" || m.Runs[0].Stopped.IsZero() {
		t.Errorf("runs %+v, want one by chair, stopped", m.Runs)
	}
	perTrack := map[string][]Segment{}
	for _, s := range m.Segments {
		perTrack[s.Track] = append(perTrack[s.Track], s)
	}
	want := map[string]struct {
		codec string
		w, h  int
	}{
		"hub-camera": {"vp8", 640, 360}, "ward-001-camera": {"h264", 640, 360}, "hub-audio": {"opus", 0, 0},
	}
	for track, w := range want {
		segs := perTrack[track]
		if len(segs) < 2 {
			t.Errorf("%s: %d segments, want at least 2 in %d s of 3 s segments", track, len(segs), seconds)
		}
		var total float64
		for _, s := range segs {
			checkSegment(t, rec.Dir(), s, w.codec, w.w, w.h)
			total += float64(s.DurationMS) / 1000
		}
		// The first video segment starts on the first frame; the sum
		// of the segments' lengths is the media fed, less one frame per
		// segment (a duration ends at its last frame's start).
		if total < seconds-0.5 || total > seconds+0.1 {
			t.Errorf("%s: segments last %.2f s in all, fed %d s", track, total, seconds)
		}
	}
}

// checkSegment verifies one closed segment: its checksum and size, and
// what ffprobe says of it; ffmpeg decodes it without an error.
func checkSegment(t *testing.T, dir string, s Segment, codecName string, w, h int) {
	t.Helper()
	path := filepath.Join(dir, s.File)
	sum, size, err := FileSum(path)
	if err != nil || sum != s.SHA256 || size != s.Bytes {
		t.Errorf("%s: sha256 %s size %d (err %v), manifest says %s %d", s.File, sum, size, err, s.SHA256, s.Bytes)
	}
	probe, err := recordtest.ProbeFile(path)
	if err != nil || len(probe.Streams) != 1 {
		t.Errorf("%s: %+v (%v)", s.File, probe, err)
		return
	}
	st := probe.Streams[0]
	if st.CodecName != codecName || st.Width != w || st.Height != h || s.Width != w || s.Height != h {
		t.Errorf("%s: ffprobe %s %dx%d, manifest %dx%d; want %s %dx%d", s.File, st.CodecName, st.Width, st.Height, s.Width, s.Height, codecName, w, h)
	}
	manifest := time.Duration(s.DurationMS) * time.Millisecond
	if d := probe.Duration; d < manifest-50*time.Millisecond || d > manifest+100*time.Millisecond || d <= 0 {
		t.Errorf("%s: ffprobe duration %v, manifest %d ms", s.File, d, s.DurationMS)
	}
	if err := recordtest.DecodeSegment(path); err != nil {
		t.Error(err)
	}
}

func readVP8(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(out) < n {
		frame, _, err := r.ParseNextFrame()
		if err != nil {
			t.Fatalf("%s: %d frames, want %d: %v", path, len(out), n, err)
		}
		out = append(out, frame)
	}
	return out
}

func readOpus(t testing.TB, path string, n int) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(out) < n {
		page, _, err := r.ParseNextPage()
		if err != nil {
			t.Fatalf("%s: %d packets, want %d: %v", path, len(out), n, err)
		}
		if strings.HasPrefix(string(page), "OpusTags") {
			continue
		}
		out = append(out, page)
	}
	return out
}

// makeH264 encodes seconds of a test picture at 30 frames a second, a
// keyframe each second, and returns its access units in Annex-B.
func makeH264(t *testing.T, seconds int) [][]byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cam.h264")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-t", strconv.Itoa(seconds), "-c:v", "libx264", "-profile:v", "baseline", "-g", "30",
		"-pix_fmt", "yuv420p", "-bsf:v", "h264_mp4toannexb", "-f", "h264", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	var au []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		au = append(au, 0, 0, 0, 1)
		au = append(au, nal.Data...)
		if nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr {
			out = append(out, au)
			au = nil
		}
	}
	if len(out) != seconds*30 {
		t.Fatalf("%d H.264 frames, want %d", len(out), seconds*30)
	}
	return out
}

// BenchmarkRecordVP8 is the recorder's cost per packet of the hub's top
// layer (the 720p clip, about 280 packets a second): the tap's copy on
// the read loop, and the writer goroutine's frame assembly and writes to
// disk (into the page cache; each segment's close syncs it), all
// counted by the benchmark's time since Stop waits for the writer.
func BenchmarkRecordVP8(b *testing.B) {
	frames := readVP8Bench(b, filepath.Join(sfutest.TestdataDir(), "video-720p.ivf"))
	pv := packetizer(&codecs.VP8Payloader{}, 96, 90000)
	var packets []*rtp.Packet
	for _, f := range frames {
		packets = append(packets, pv.Packetize(f, 3000)...)
	}
	clk := newClock()
	rec, err := New("c1", Options{Dir: b.TempDir(), SegmentLength: time.Minute, QueuePackets: 1 << 16, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	track := &fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}
	if err := rec.Start("bench", false); err != nil {
		b.Fatal(err)
	}
	rec.Set([]Source{{track, "hub-camera"}})
	rec.mu.Lock()
	w := rec.writers[track]
	rec.mu.Unlock()
	cpu0 := cpuTime()
	b.ResetTimer()
	base := packets[len(packets)-1].Timestamp - packets[0].Timestamp + 3000
	for i := 0; i < b.N; i++ {
		p := *packets[i%len(packets)]
		loop := uint32(i / len(packets))
		p.Timestamp += loop * base
		p.SequenceNumber += uint16(loop * uint32(len(packets)))
		track.send(&p)
		if len(w.queue) > 1<<15 { // let the writer keep up: the benchmark measures work, not drops
			for len(w.queue) > 1<<10 {
				runtime.Gosched()
			}
		}
	}
	if err := rec.Stop(); err != nil {
		b.Fatal(err)
	}
	// The process's CPU time (both goroutines, and the GC) per packet.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/packet")
	if n := rec.Dropped(); n != 0 {
		b.Fatalf("%d dropped", n)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func readVP8Bench(b *testing.B, path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for {
		frame, _, err := r.ParseNextFrame()
		if err != nil {
			return out
		}
		out = append(out, frame)
	}
}

// BenchmarkTap is what recording adds to a track's read loop per packet:
// the copy into a pooled buffer and the send into the writer's queue
// (emptied by the benchmark whenever full, the buffers returned to the
// pool as the writer does: nothing is dropped).
func BenchmarkTap(b *testing.B) {
	rec, err := New("c1", Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	w := newTrackWriter(rec, Source{&fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}, "hub-camera"})
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 3000, SSRC: 1}, Payload: make([]byte, 1100)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.SequenceNumber++
		w.Packet(0, p)
		if len(w.queue) == cap(w.queue) {
			for len(w.queue) > 0 {
				w.pool.Put(<-w.queue)
			}
		}
	}
	if n := w.dropped.Load(); n != 0 {
		b.Fatalf("%d dropped", n)
	}
}

// countHandler counts the log records with one message.
type countHandler struct {
	msg string
	n   *atomic.Int32
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// TestRecorderUnwritable: when segments cannot be written (the
// directory gone), the recorder says so once a second, not once a frame,
// enters nothing in the manifest, and stops cleanly.
func TestRecorderUnwritable(t *testing.T) {
	var warnings atomic.Int32
	clk := newClock()
	rec, err := New("c1", Options{Dir: t.TempDir(), Now: clk.now, QueuePackets: 1 << 12, IdleClose: time.Hour,
		Logger: slog.New(countHandler{msg: "recording segment not opened", n: &warnings})})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Start("chair", false); err != nil {
		t.Fatal(err)
	}
	// The directory becomes a file: every segment's creation fails.
	if err := os.RemoveAll(rec.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rec.Dir(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opus := &fakeTrack{kind: webrtc.RTPCodecTypeAudio, codec: codec(webrtc.MimeTypeOpus, 48000)}
	rec.Set([]Source{{opus, "hub-audio"}})
	po := packetizer(&codecs.OpusPayloader{}, 111, 48000)
	for i := 0; i < 150; i++ { // 3 s of audio
		for _, p := range po.Packetize([]byte{0xf8, 0xff, 0xfe}, 960) {
			opus.send(p)
		}
		clk.advance(20 * time.Millisecond)
	}
	if err := rec.Stop(); err == nil {
		t.Errorf("stop wrote its manifest into a directory that is a file")
	}
	if n := warnings.Load(); n < 1 || n > 4 {
		t.Errorf("%d warnings for 3 s of unwritable audio, want one a second", n)
	}
	if m := rec.Manifest(); len(m.Segments) != 0 {
		t.Errorf("segments entered: %+v", m.Segments)
	}
}

// TestH264FragmentStartsAfresh: the start of a fragmented NAL unit whose
// end never came (a retransmission arriving alone) is not prepended to
// the next unit.
func TestH264FragmentStartsAfresh(t *testing.T) {
	d := &h264Depacketizer{inner: &codecs.H264Packet{}}
	fu := func(start, end bool, typ byte, data string) []byte {
		h := typ
		if start {
			h |= 0x80
		}
		if end {
			h |= 0x40
		}
		return append([]byte{0x60 | 28, h}, data...)
	}
	if out, err := d.Unmarshal(fu(true, false, 5, "stale")); err != nil || len(out) != 0 {
		t.Fatalf("a unit's start: %q %v", out, err)
	}
	if _, err := d.Unmarshal(fu(true, false, 1, "new ")); err != nil {
		t.Fatal(err)
	}
	out, err := d.Unmarshal(fu(false, true, 1, "unit"))
	want := append([]byte{0, 0, 0, 1, 0x60 | 1}, "new unit"...)
	if err != nil || !bytes.Equal(out, want) {
		t.Errorf("the next unit: %q %v, want %q", out, err, want)
	}
}

// TestH264TwoPicturesAtOneTime: an encoder that answers a keyframe
// request by sending its last picture again, as a keyframe with the same
// timestamp: both pictures are written, as two frames, and the segment
// decodes without an error.
func TestH264TwoPicturesAtOneTime(t *testing.T) {
	recordtest.NeedTools(t, "ffmpeg")
	frames := makeH264(t, 2)
	clk := newClock()
	rec, err := New("c1", Options{Dir: t.TempDir(), QueuePackets: 1 << 14, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h264 := &fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeH264, 90000)}
	if err := rec.Start("chair", false); err != nil {
		t.Fatal(err)
	}
	rec.Set([]Source{{h264, "hub-camera"}})
	ph := packetizer(&codecs.H264Payloader{}, 102, 90000)
	for i, f := range frames {
		samples := uint32(3000)
		if i == 29 { // frame 30, a keyframe, goes at frame 29's time
			samples = 0
		}
		for _, p := range ph.Packetize(f, samples) {
			h264.send(p)
		}
		clk.advance(33 * time.Millisecond)
	}
	if err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	m := rec.Manifest()
	if len(m.Segments) != 1 || m.Segments[0].Frames < len(frames)-1 {
		t.Fatalf("segments %+v, want one of %d frames (the last one held back)", m.Segments, len(frames)-1)
	}
	path := filepath.Join(rec.Dir(), m.Segments[0].File)
	if err := recordtest.DecodeSegment(path); err != nil {
		pk, _ := exec.Command("ffprobe", "-v", "error", "-show_entries", "packet=pts,dts,flags", "-of", "csv", path).CombinedOutput()
		t.Errorf("%v\n%s", err, pk)
	}
}
