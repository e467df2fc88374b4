package record

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/sfu"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// packetBuf is one packet on its way from a track's read loop to its
// writer: copied once, into a pooled buffer.
type packetBuf struct {
	n     int
	layer int32     // the layer it came on: one queued before a layer change is not the new layer's
	at    time.Time // when it arrived: the manifest's times are the media's, not the disk's
	b     [1600]byte
}

// arrivals remembers when each recent frame's first packet arrived, by
// RTP timestamp: a frame held back in the sample builder (waiting for a
// lost packet) is written later, but at the time it arrived.
type arrivals struct {
	ts   [256]uint32
	at   [256]time.Time
	next int
	n    int
}

func (a *arrivals) add(ts uint32, at time.Time) {
	if a.n > 0 && int32(ts-a.ts[(a.next+len(a.ts)-1)%len(a.ts)]) <= 0 {
		return // a later packet of a frame already seen (or a retransmission)
	}
	a.ts[a.next], a.at[a.next] = ts, at
	a.next = (a.next + 1) % len(a.ts)
	a.n = min(a.n+1, len(a.ts))
}

// of says when the frame of timestamp ts first arrived (ok false: not
// remembered).
func (a *arrivals) of(ts uint32) (time.Time, bool) {
	for i := 1; i <= a.n; i++ {
		j := (a.next + len(a.ts) - i) % len(a.ts)
		if a.ts[j] == ts {
			return a.at[j], true
		}
	}
	return time.Time{}, false
}

func (a *arrivals) reset() { a.n = 0 }

// trackWriter records one track: the SFU's read loop hands it packets
// (Packet: a copy into a bounded queue, never a wait), and its own
// goroutine assembles frames and writes the segments.
type trackWriter struct {
	rec    *Recorder
	track  Track
	label  string
	family int
	clock  uint32
	video  bool
	pool   *sync.Pool

	layer atomic.Int32 // the layer recorded (video: the top one received)
	// media is when each layer's last packet with media came (unix ns,
	// the recorder's clock; padding does not count): the read loops
	// write it, check reads it.
	media   [sfu.MaxLayers]atomic.Int64
	queue   chan *packetBuf
	dropped atomic.Uint64
	stop    chan struct{}
	done    chan struct{}

	// The writer goroutine's own.
	sb        *samplebuilder.SampleBuilder
	pending   *media.Sample // H.264: the access unit being gathered
	arrived   time.Time     // when the newest packet arrived
	firstSeen arrivals      // when each recent frame's first packet arrived
	failedAt  time.Time     // when a segment last failed to open
	seg       *segmentFile
	segInfo   Segment
	segExt    int64  // the segment's first timestamp, unwrapped
	segTS     uint32 // the segment's first RTP timestamp
	ext       int64  // the newest timestamp, unwrapped
	lastTS    uint32
	haveTS    bool
	lastMS    int64
	askedAt   time.Time // the last keyframe request
	lastFrame time.Time
	layerAt   time.Time // when the recorded layer last changed (or the writer started)
	fellBack  bool      // the recorded layer is one taken because a better one stalled
}

func newTrackWriter(r *Recorder, src Source) *trackWriter {
	codec := src.Track.Codec()
	w := &trackWriter{
		rec: r, track: src.Track, label: src.Label, family: familyOf(codec.MimeType),
		clock: codec.ClockRate, video: src.Track.Kind() == webrtc.RTPCodecTypeVideo,
		pool: &r.pool, queue: make(chan *packetBuf, r.opt.QueuePackets),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if w.clock == 0 {
		w.clock = 90000
	}
	w.layer.Store(int32(max(src.Track.TopLayer(), 0)))
	w.layerAt = r.opt.Now()
	w.resetBuilder()
	return w
}

// maxHold bounds how long the sample builder waits for a lost packet.
const maxHold = time.Second

func (w *trackWriter) resetBuilder() {
	var d rtp.Depacketizer
	late := uint16(512)
	switch w.family {
	case familyVP8:
		d = &codecs.VP8Packet{}
	case familyH264:
		d = &h264Depacketizer{inner: &codecs.H264Packet{}}
	default:
		d, late = &codecs.OpusPacket{}, 64
	}
	// A lost packet holds the frames behind it at most maxHold (its
	// retransmission comes within a round trip, or too late to matter).
	w.sb = samplebuilder.New(late, d, w.clock, samplebuilder.WithMaxTimeDelay(maxHold))
	w.haveTS = false
	w.firstSeen.reset()
}

// Packet is the tap on the track's read loop: one copy and a send that
// never waits. A full queue (the disk slower than the media) drops the
// packet and counts it.
func (w *trackWriter) Packet(layer int, p *rtp.Packet) {
	var now time.Time
	if w.video && layer >= 0 && layer < sfu.MaxLayers && len(p.Payload) > 0 {
		now = w.rec.opt.Now()
		w.media[layer].Store(now.UnixNano())
	}
	if int32(layer) != w.layer.Load() {
		return
	}
	pb := w.pool.Get().(*packetBuf)
	n, err := p.MarshalTo(pb.b[:])
	if err != nil {
		w.pool.Put(pb)
		w.dropped.Add(1)
		return
	}
	if now.IsZero() {
		now = w.rec.opt.Now()
	}
	pb.n, pb.layer, pb.at = n, int32(layer), now
	select {
	case w.queue <- pb:
	default:
		w.pool.Put(pb)
		w.dropped.Add(1)
	}
}

// run is the writer goroutine: until stopped, packets into frames into
// segments; then the open segment is closed.
func (w *trackWriter) run() {
	defer close(w.done)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	w.askKeyframe()
	for {
		select {
		case pb := <-w.queue:
			w.packet(pb)
		case <-tick.C:
			w.check()
		case <-w.stop:
			for len(w.queue) > 0 {
				w.packet(<-w.queue)
			}
			w.flush()
			w.closeSegment()
			return
		}
	}
}

func (w *trackWriter) packet(pb *packetBuf) {
	if pb.layer != w.layer.Load() { // queued before the layer changed
		w.pool.Put(pb)
		return
	}
	p := &rtp.Packet{}
	err := p.Unmarshal(append([]byte(nil), pb.b[:pb.n]...))
	w.arrived = pb.at
	w.pool.Put(pb)
	if err != nil || len(p.Payload) == 0 {
		return // (padding: a bandwidth probe carries no media)
	}
	w.firstSeen.add(p.Timestamp, w.arrived)
	w.sb.Push(p)
	for s := w.sb.Pop(); s != nil; s = w.sb.Pop() {
		w.sample(s)
	}
}

// checkEvery is how often check runs.
const checkEvery = 250 * time.Millisecond

// stallAfter is how long the recorded layer may bring no media while a
// lower one does before the recording falls back to the lower one. The
// track's TopLayer notices a stopped layer later (sfu's layerIdle), and
// not at all while the publisher sends it padding or a frame now and
// then: a starved Chromium pauses its top layer for seconds.
const stallAfter = 750 * time.Millisecond

// check runs every checkEvery: the recorded layer follows the top layer
// received, falls back to the best layer still flowing when it stalls,
// a segment waiting for its keyframe asks again, and a track gone quiet
// closes its segment (so a closed track's last minutes get their
// checksum).
func (w *trackWriter) check() {
	now := w.rec.opt.Now()
	if w.video {
		cur := int(w.layer.Load())
		if l := w.fallback(now); l >= 0 {
			w.rec.log.Info("recorded layer stalled: falling back", "track", w.label,
				"from", sfu.RIDForLayer(cur), "layer", sfu.RIDForLayer(l))
			w.changeLayer(l, now)
			w.fellBack = true
			return
		}
		top := w.track.TopLayer()
		if top > cur && w.fellBack && !w.flowing(top, now) {
			top = -1 // the layer that stalled is still said to be top: not back yet
		}
		if top >= 0 && top != cur && w.switchNow(top) {
			w.rec.log.Info("recorded layer changes", "track", w.label, "layer", sfu.RIDForLayer(top))
			w.changeLayer(top, now)
			w.fellBack = false
			return
		}
		if w.seg == nil || w.due() {
			w.askKeyframe()
		}
	}
	if w.seg != nil && now.Sub(w.lastFrame) > w.rec.opt.IdleClose {
		w.closeSegment()
	}
}

// changeLayer closes the segment of the layer recorded and records
// layer l from its next keyframe.
func (w *trackWriter) changeLayer(l int, now time.Time) {
	w.flush()
	w.closeSegment()
	w.layer.Store(int32(l))
	w.layerAt = now
	w.resetBuilder()
	w.askedAt = time.Time{} // the old layer's last request does not delay the new one's
	w.askKeyframe()
}

// flowing says whether layer l brought media within stallAfter.
func (w *trackWriter) flowing(l int, now time.Time) bool {
	at := w.media[l].Load()
	return at != 0 && now.Sub(time.Unix(0, at)) < stallAfter
}

// fallback is the layer to record now because the recorded one stalled:
// no media for stallAfter (counted from its last packet, or from when it
// was chosen) while a lower one flows; the best such. -1: none.
func (w *trackWriter) fallback(now time.Time) int {
	cur := int(w.layer.Load())
	if cur <= 0 || cur >= sfu.MaxLayers {
		return -1
	}
	last := w.layerAt
	if at := w.media[cur].Load(); at != 0 && time.Unix(0, at).After(last) {
		last = time.Unix(0, at)
	}
	if now.Sub(last) < stallAfter {
		return -1
	}
	for l := cur - 1; l >= 0; l-- {
		if w.flowing(l, now) {
			return l
		}
	}
	return -1
}

// layerSettle is how young a segment may be and still change layer
// at once: a publisher's layers arrive one after the other in its first
// seconds, and the recording should not hold its lowest for a segment.
const layerSettle = 10 * time.Second

// switchNow says whether to change to layer top now: when the recorded
// layer stopped (top is below it), while nothing is recorded yet or the
// segment is young, or when the segment is due anyway. Otherwise a
// better layer waits for the next cut, so the picture does not stop while
// its keyframe is awaited.
//
// After a fallback (fellBack) the layer that stalled, flowing again,
// waits for the cut, so a layer that stops and starts does not cut a
// segment and wait for a keyframe each time: a segment counts as young
// only within two checks of its start (the cut itself is made by frame,
// on the keyframe asked for when due, between two checks).
func (w *trackWriter) switchNow(top int) bool {
	young := layerSettle
	if w.fellBack {
		young = 2 * checkEvery
	}
	return int32(top) < w.layer.Load() || w.seg == nil || w.due() ||
		w.mediaMS() < young.Milliseconds()
}

// due says whether the open segment has reached its length, in media
// time (the RTP clock: what the file will say its length is).
func (w *trackWriter) due() bool {
	return w.seg != nil && w.mediaMS() >= w.rec.opt.SegmentLength.Milliseconds()
}

// mediaMS is the newest frame's time from the open segment's start.
func (w *trackWriter) mediaMS() int64 {
	return (w.ext - w.segExt) * 1000 / int64(w.clock)
}

func (w *trackWriter) askKeyframe() {
	if !w.video {
		return
	}
	now := w.rec.opt.Now()
	if now.Sub(w.askedAt) < 500*time.Millisecond {
		return
	}
	w.askedAt = now
	w.track.RequestKeyframe(int(w.layer.Load()))
}

// sample takes one assembled sample. H.264 may come as several samples
// of one timestamp (the parameter sets apart from the picture): they are
// one access unit, written as one frame once the next timestamp shows
// the unit is complete.
func (w *trackWriter) sample(s *media.Sample) {
	if w.family != familyH264 {
		w.frame(s)
		return
	}
	if w.pending != nil && s.PacketTimestamp == w.pending.PacketTimestamp &&
		!(hasPicture(w.pending.Data) && hasPicture(s.Data)) {
		w.pending.Data = append(w.pending.Data, s.Data...)
		return
	}
	// Two pictures at one time (an encoder answering a keyframe request
	// with its last picture again) are two frames: one block holding both
	// does not decode (ffmpeg: non monotonically increasing dts).

	prev := w.pending
	w.pending = &media.Sample{Data: append([]byte(nil), s.Data...), PacketTimestamp: s.PacketTimestamp}
	if prev != nil {
		w.frame(prev)
	}
}

// flush writes the H.264 access unit held back by sample.
func (w *trackWriter) flush() {
	if w.pending != nil {
		w.frame(w.pending)
		w.pending = nil
	}
}

// frame writes one frame, opening and cutting segments: a video segment
// starts on a keyframe, asked for when it is due.
func (w *trackWriter) frame(s *media.Sample) {
	if w.haveTS {
		// An older frame (a retransmission that came alone, after its
		// frame was written), or a second one at one time: the file's
		// frames are in order and their times increase.
		d := int32(s.PacketTimestamp - w.lastTS)
		if d < 0 || (d == 0 && !w.video && w.seg != nil && w.segInfo.Frames > 0) {
			return // (a video picture at the same time is written 1 ms on)
		}
	}
	if len(s.Data) == 0 {
		return
	}
	if w.haveTS {
		w.ext += int64(int32(s.PacketTimestamp - w.lastTS))
	}
	w.lastTS, w.haveTS = s.PacketTimestamp, true
	key := isKeyframe(w.family, s.Data)
	now, ok := w.firstSeen.of(s.PacketTimestamp) // when it came, not when the builder let it go
	if !ok {
		now = w.arrived
	}
	if w.seg != nil && w.due() {
		if key || !w.video {
			w.closeSegment()
		} else {
			w.askKeyframe()
		}
	}
	if w.seg == nil {
		if !key {
			w.askKeyframe()
			return
		}
		if now.Sub(w.failedAt) < time.Second {
			return // the last try failed a moment ago (a full disk): not once per frame
		}
		if err := w.openSegment(s.Data, now); err != nil {
			w.failedAt = now
			w.rec.log.Warn("recording segment not opened", "track", w.label, "err", err)
			w.rec.failed(err)
			return
		}
		w.segTS = s.PacketTimestamp
	}
	ms := w.mediaMS()
	if ms <= w.lastMS && w.segInfo.Frames > 0 {
		ms = w.lastMS + 1 // strictly increasing, as players expect
	}
	w.lastMS = ms
	data := s.Data
	if w.family == familyH264 {
		data = avcc(data)
	}
	if err := w.seg.write(key, ms, data); err != nil {
		w.rec.log.Warn("recording write failed", "track", w.label, "err", err)
		w.rec.failed(err)
		w.closeSegment()
		return
	}
	w.segInfo.Frames++
	w.lastFrame = now
}

func (w *trackWriter) openSegment(first []byte, now time.Time) error {
	ext := ".webm"
	if w.family == familyH264 {
		ext = ".mkv"
	}
	// The time names a segment for people; the number keeps two cut
	// within one millisecond apart.
	name := fmt.Sprintf("%s-%s-%d%s", w.label, now.UTC().Format("20060102T150405.000Z"), w.rec.seq.Add(1), ext)
	seg, err := openSegment(filepath.Join(w.rec.dir, name), w.family, first)
	if err != nil {
		return err
	}
	w.seg, w.segExt, w.lastMS, w.lastFrame = seg, w.ext, 0, now
	w.segInfo = Segment{
		File: name, Track: w.label, Kind: w.track.Kind().String(), Codec: w.track.Codec().MimeType,
		Publisher: w.track.PublisherID(), Start: now.UTC(),
	}
	if w.video {
		w.segInfo.Layer = sfu.RIDForLayer(int(w.layer.Load()))
		switch w.family {
		case familyVP8:
			w.segInfo.Width, w.segInfo.Height, _ = vp8Size(first)
		case familyH264:
			if sps, _ := parameterSets(first); sps != nil {
				w.segInfo.Width, w.segInfo.Height = spsSize(sps)
			}
		}
	}
	w.rec.log.Info("recording segment opened", "track", w.label, "file", name)
	return nil
}

// closeSegment finishes the open segment and enters it, with its
// checksum, in the manifest.
func (w *trackWriter) closeSegment() {
	if w.seg == nil {
		return
	}
	seg, info := w.seg, w.segInfo
	w.seg = nil
	if err := seg.close(); err != nil {
		w.rec.log.Warn("recording segment close", "track", w.label, "err", err)
		w.rec.failed(err)
	}
	info.DurationMS = w.lastMS
	info.End = w.lastFrame.UTC() // the wall clock: Start to End measures what DurationMS says
	if sc, ok := w.track.(SenderClock); ok {
		// The newest sender report, mapped back to the first frame.
		if at, ok := sc.SenderTime(int(w.layer.Load()), w.segTS); ok {
			info.SenderStart = at.UTC()
		}
	}
	path := filepath.Join(w.rec.dir, info.File)
	if info.Frames < 2 {
		// A lone frame (a segment cut as soon as it opened: the
		// recording stopped, the layer changed) has no length to play.
		if err := os.Remove(path); err != nil {
			w.rec.log.Warn("recording segment of one frame not removed", "track", w.label, "err", err)
		}
		return
	}
	sum, size, err := FileSum(path)
	if err != nil {
		w.rec.log.Warn("recording segment checksum", "track", w.label, "err", err)
		return
	}
	info.SHA256, info.Bytes = sum, size
	w.rec.addSegment(info)
}

// FileSum is a file's SHA-256 (hex) and size, as a manifest gives them.
func FileSum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// close stops the writer and waits for its last segment to be closed.
func (w *trackWriter) close() {
	close(w.stop)
	<-w.done
}

// h264Depacketizer is pion's H.264 depacketizer with a fresh fragment
// buffer at each fragmented NAL unit's start: pion's keeps the fragments
// of a unit whose end never came (a retransmitted start arriving alone)
// and prepends them to the next unit, which then does not decode.
type h264Depacketizer struct {
	inner *codecs.H264Packet
}

func (d *h264Depacketizer) Unmarshal(payload []byte) ([]byte, error) {
	if len(payload) > 1 && payload[0]&0x1f == 28 && payload[1]&0x80 != 0 { // FU-A, start bit
		d.inner = &codecs.H264Packet{}
	}
	return d.inner.Unmarshal(payload)
}

func (d *h264Depacketizer) IsPartitionHead(payload []byte) bool {
	return d.inner.IsPartitionHead(payload)
}
func (d *h264Depacketizer) IsPartitionTail(marker bool, payload []byte) bool {
	return d.inner.IsPartitionTail(marker, payload)
}
