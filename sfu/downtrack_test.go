package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// recordingWriter is a webrtc.TrackLocalWriter that keeps what it is given.
type recordingWriter struct {
	headers  []rtp.Header
	sizes    []int
	payloads [][]byte
}

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.headers = append(w.headers, *h)
	w.sizes = append(w.sizes, len(payload))
	w.payloads = append(w.payloads, append([]byte(nil), payload...))
	return len(payload), nil
}

func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }

// discardWriter counts packets and keeps nothing: the benchmark's sink.
type discardWriter struct{ n int }

func (w *discardWriter) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	w.n++
	return len(payload), nil
}

func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

var vp8Codec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	PayloadType:        96,
}

// newBareTrack builds a track with no publisher connection and a fake clock.
func newBareTrack(now *int64) *Track {
	return newTrack("video-hub-1", "hub", webrtc.RTPCodecTypeVideo, vp8Codec, &counters{},
		func() int64 { return *now }, 500*time.Millisecond, nil)
}

// bindFake attaches d to w as if pion had bound it with this SSRC and PT.
func bindFake(d *DownTrack, w webrtc.TrackLocalWriter, ssrc uint32, pt uint8) {
	d.writer, d.ssrc, d.pt = w, ssrc, pt
	d.bound.Store(true)
}

var (
	vp8Key   = []byte{0x90, 0x80, 0x01, 0x00, 0x9d, 0x01, 0x2a} // S=1, X, I, picture ID 1; P=0
	vp8Delta = []byte{0x90, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00} // P=1
)

func pkt(seq uint16, ts uint32, payload []byte) *rtp.Packet {
	p := &rtp.Packet{
		Header:  rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, SSRC: 1234, PayloadType: 100},
		Payload: payload,
	}
	if err := p.Header.SetExtension(3, []byte("f")); err != nil {
		panic(err)
	}
	return p
}

func TestDownTrackRewrite(t *testing.T) {
	now := int64(0)
	tr := newBareTrack(&now)
	d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
	w := &recordingWriter{}
	bindFake(d, w, 777, 96)
	d.setTarget(LayerLow)

	steps := []struct {
		layer   int32
		p       *rtp.Packet
		advance time.Duration
		written bool
		why     string
	}{
		{LayerLow, pkt(100, 1000, vp8Delta), 0, false, "no keyframe yet: nothing to start from"},
		{LayerLow, pkt(101, 1000, vp8Key), 0, true, "keyframe starts the layer"},
		{LayerLow, pkt(102, 4000, vp8Delta), 33 * time.Millisecond, true, "same layer"},
		{LayerMid, pkt(5000, 90000, vp8Delta), 0, false, "other layer, not wanted"},
		{LayerLow, pkt(103, 4000, nil), 0, false, "padding only: dropped"},
		{LayerLow, pkt(104, 7000, vp8Delta), 33 * time.Millisecond, true, "after padding, no gap"},
	}
	for i, s := range steps {
		now += int64(s.advance)
		if got := d.forward(s.layer, s.p, now); got != s.written {
			t.Fatalf("step %d (%s): written=%v, want %v", i, s.why, got, s.written)
		}
	}
	// Switch to the mid layer: only at its keyframe.
	d.setTarget(LayerMid)
	now += int64(33 * time.Millisecond)
	if d.forward(LayerMid, pkt(5001, 93000, vp8Delta), now) {
		t.Fatal("switched on a delta frame")
	}
	if !d.forward(LayerLow, pkt(105, 10000, vp8Delta), now) {
		t.Fatal("old layer stopped before the new one's keyframe")
	}
	now += int64(10 * time.Millisecond)
	if !d.forward(LayerMid, pkt(5002, 96000, vp8Key), now) {
		t.Fatal("keyframe of the target layer not taken")
	}
	if d.forward(LayerLow, pkt(106, 13000, vp8Delta), now) {
		t.Fatal("old layer still forwarded after the switch")
	}
	if d.forward(LayerMid, pkt(5000, 90000, vp8Delta), now) {
		t.Fatal("a reordered packet from before the switch point was forwarded")
	}
	if !d.forward(LayerMid, pkt(5003, 99000, vp8Delta), now) {
		t.Fatal("new layer not forwarded")
	}

	wantSeq := []uint16{101, 102, 103, 104, 105, 106}
	if len(w.headers) != len(wantSeq) {
		t.Fatalf("wrote %d packets, want %d", len(w.headers), len(wantSeq))
	}
	for i, h := range w.headers {
		if h.SequenceNumber != wantSeq[i] {
			t.Errorf("packet %d: sequence %d, want %d", i, h.SequenceNumber, wantSeq[i])
		}
		if h.SSRC != 777 || h.PayloadType != 96 {
			t.Errorf("packet %d: SSRC %d PT %d, want 777 and 96", i, h.SSRC, h.PayloadType)
		}
		if h.Extension || len(h.Extensions) != 0 {
			t.Errorf("packet %d: the publisher's header extensions leaked", i)
		}
		if i > 0 && int32(h.Timestamp-w.headers[i-1].Timestamp) < 0 {
			t.Errorf("packet %d: timestamp went back", i)
		}
	}
	// The switch advanced the timestamp by the 10 ms that passed: 900 ticks.
	if got := w.headers[4].Timestamp - w.headers[3].Timestamp; got != 900 {
		t.Errorf("timestamp step across the switch = %d ticks, want 900", got)
	}
	if got := w.headers[5].Timestamp - w.headers[4].Timestamp; got != 3000 {
		t.Errorf("timestamp step inside the new layer = %d, want the publisher's 3000", got)
	}
	if d.Layer() != LayerMid {
		t.Errorf("layer %d, want %d", d.Layer(), LayerMid)
	}
}

func TestSeqBefore(t *testing.T) {
	for _, c := range []struct {
		a, b uint16
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {5, 5, false}, {65535, 0, true}, {0, 65535, false}, {0, 32767, true}, {0, 32768, false},
	} {
		if got := seqBefore(c.a, c.b); got != c.want {
			t.Errorf("seqBefore(%d, %d) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// BenchmarkForwardPacket copies one packet to 116 down tracks, the fan-out
// of one city conference. The writers discard, so this measures the
// forwarding loop itself: layer check, rewrite, counters. 0 allocs/op.
func BenchmarkForwardPacket(b *testing.B) {
	const rooms = 116
	now := int64(0)
	tr := newBareTrack(&now)
	w := &discardWriter{}
	for i := range rooms {
		d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
		bindFake(d, w, uint32(1000+i), 96)
		d.setTarget(LayerHigh)
		tr.addDown(d)
	}
	tr.addLayer(LayerHigh, 1234)
	key := pkt(1, 0, append(append([]byte{}, vp8Key...), make([]byte, 1180)...))
	tr.forward(LayerHigh, key) // every down track starts on this keyframe
	p := pkt(2, 3000, append(append([]byte{}, vp8Delta...), make([]byte, 1180)...))
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Payload)) * rooms)
	b.ResetTimer()
	for b.Loop() {
		p.SequenceNumber++
		p.Timestamp += 3000
		now += int64(time.Millisecond)
		tr.forward(LayerHigh, p)
	}
	b.StopTimer()
	if w.n < b.N*rooms {
		b.Fatalf("%d packets written for %d iterations of %d rooms", w.n, b.N, rooms)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rooms), "ns/copy")
}

// TestForwardDoesNotAllocate keeps the forwarding loop allocation-free as a
// test, not only as a benchmark figure.
func TestForwardDoesNotAllocate(t *testing.T) {
	now := int64(0)
	tr := newBareTrack(&now)
	for i := range 8 {
		d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
		bindFake(d, &discardWriter{}, uint32(i+1), 96)
		d.setTarget(LayerHigh)
		tr.addDown(d)
	}
	tr.forward(LayerHigh, pkt(1, 0, vp8Key))
	p := pkt(2, 3000, vp8Delta)
	allocs := testing.AllocsPerRun(1000, func() {
		p.SequenceNumber++
		p.Timestamp += 3000
		now += int64(time.Millisecond)
		tr.forward(LayerHigh, p)
	})
	if allocs != 0 {
		t.Fatalf("forwarding one packet to 8 down tracks allocates %.1f times", allocs)
	}
}

// TestSwitchAlignsTimestampsFromSenderReports: two layers whose RTP clocks
// start far apart; their sender reports put them on one timeline, so the
// frame after a switch gets exactly the timestamp its capture time implies,
// not a guess from when it happened to arrive.
func TestSwitchAlignsTimestampsFromSenderReports(t *testing.T) {
	now := int64(0)
	tr := newBareTrack(&now)
	d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
	w := &recordingWriter{}
	bindFake(d, w, 777, 96)
	const ntp0 = uint64(3_900_000_000) << 32
	tr.onSenderReport(LayerLow, ntp0, 1_000)
	tr.onSenderReport(LayerHigh, ntp0, 4_000_000_000) // another origin, near the wrap

	d.setTarget(LayerLow)
	d.forward(LayerLow, pkt(100, 1_000+3000, vp8Key), now) // 33 ms after the report
	d.forward(LayerLow, pkt(101, 1_000+6000, vp8Delta), now)
	now += int64(400 * time.Millisecond) // arrives late: wall clock would say +36000 ticks
	d.setTarget(LayerHigh)
	d.forward(LayerHigh, pkt(5000, 4_000_000_000+9000, vp8Key), now) // captured 100 ms after the report

	if len(w.headers) != 3 {
		t.Fatalf("wrote %d packets, want 3", len(w.headers))
	}
	first, last := w.headers[0].Timestamp, w.headers[2].Timestamp
	if got := last - first; got != 6000 { // 100 ms - 33 ms = 67 ms = 6000 ticks
		t.Errorf("the switched-to frame is %d ticks after the first, want 6000 (from the sender reports)", got)
	}

	// A report that would put the new layer before what was written: the
	// timestamp still moves forward.
	tr.onSenderReport(LayerLow, ntp0+(1<<32), 1_000) // nonsense: low layer's clock jumps back
	d.setTarget(LayerLow)
	d.forward(LayerLow, pkt(102, 1_000, vp8Key), now)
	if n := len(w.headers); n != 4 || !seqAfter32(w.headers[3].Timestamp, w.headers[2].Timestamp) {
		t.Errorf("timestamps went backwards or the packet was lost: %+v", w.headers)
	}
}

// rtxFixture is a down track on a track's low layer, with an RTX stream
// (SSRC 778, PT 97) beside its media (777, 96), that has been written a
// keyframe and a delta frame, one packet each.
func rtxFixture(now *int64) (*Track, *DownTrack, *recordingWriter) {
	tr := newBareTrack(now)
	tr.addLayer(LayerLow, 1234)
	d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
	w := &recordingWriter{}
	bindFake(d, w, 777, 96)
	d.rtxSSRC, d.rtxPT = 778, 97
	tr.addDown(d)
	d.setTarget(LayerLow)
	tr.forward(LayerLow, pkt(100, 9000, vp8Key))
	tr.forward(LayerLow, pkt(101, 9000, vp8Delta))
	return tr, d, w
}

// TestRetransmitFromCache: a subscriber's NACK is answered from the
// layer's shared cache, on its RTX stream with the original sequence number
// first, at most once per rtxMinGap, and not at all once too old.
func TestRetransmitFromCache(t *testing.T) {
	now := int64(0)
	_, d, w := rtxFixture(&now)
	out := w.headers[1].SequenceNumber

	if !d.retransmit(out, now, false) {
		t.Fatal("NACK for a cached packet not answered")
	}
	rtx := w.headers[2]
	if rtx.SSRC != 778 || rtx.PayloadType != 97 || w.sizes[2] != len(vp8Delta)+2 {
		t.Errorf("retransmission %+v size %d: want SSRC 778, PT 97, payload %d", rtx, w.sizes[2], len(vp8Delta)+2)
	}
	if d.retransmit(out, now+int64(10*time.Millisecond), false) {
		t.Error("retransmitted again within rtxMinGap")
	}
	if !d.retransmit(out, now+int64(100*time.Millisecond), false) {
		t.Error("a later NACK for the same packet not answered")
	}
	if d.retransmit(out+5, now, false) {
		t.Error("answered a NACK for a packet never sent")
	}
	if d.retransmit(out, now+nackMaxAge+1, false) {
		t.Error("answered a NACK for a packet too old to help")
	}
	if got := d.Retransmitted(); got != 2 {
		t.Errorf("Retransmitted() = %d, want 2", got)
	}
}

// TestRetransmitTwice: on a link that is not congested, a NACK is answered
// at once and the same packet goes out once more, on the RTX stream with
// its own sequence number, right after the next packet the subscriber gets;
// asked for once, it is sent once.
func TestRetransmitTwice(t *testing.T) {
	now := int64(0)
	tr, d, w := rtxFixture(&now)
	lost := w.headers[1].SequenceNumber

	if !d.retransmit(lost, now, true) {
		t.Fatal("NACK for a cached packet not answered")
	}
	if len(w.headers) != 3 {
		t.Fatalf("%d packets written after the NACK, want 3 (the copy waits for the next packet)", len(w.headers))
	}
	tr.forward(LayerLow, pkt(102, 12000, vp8Delta))
	if len(w.headers) != 5 {
		t.Fatalf("%d packets written, want 5: two media, the retransmission, the next media packet, the copy", len(w.headers))
	}
	first, next, again := w.headers[2], w.headers[3], w.headers[4]
	if next.SSRC != 777 || next.SequenceNumber != lost+1 {
		t.Errorf("the packet after the retransmission is %+v, want the next media packet", next)
	}
	if again.SSRC != 778 || again.PayloadType != 97 || again.SequenceNumber != first.SequenceNumber+1 {
		t.Errorf("the copy %+v: want SSRC 778, PT 97, the RTX sequence number after %d", again, first.SequenceNumber)
	}
	if osn := binary.BigEndian.Uint16(w.payloads[4]); osn != lost || !bytes.Equal(w.payloads[4], w.payloads[2]) {
		t.Errorf("the copy carries original sequence number %d (want %d) or differs from the first retransmission", osn, lost)
	}
	if got := tr.stats.retransmittedTwice.Load(); got != 1 {
		t.Errorf("retransmittedTwice = %d, want 1", got)
	}

	// Asked without twice (a congested link): one copy only.
	now += int64(100 * time.Millisecond)
	if !d.retransmit(lost, now, false) {
		t.Fatal("a later NACK not answered")
	}
	tr.forward(LayerLow, pkt(103, 15000, vp8Delta))
	if len(w.headers) != 7 {
		t.Errorf("%d packets written, want 7: no copy without twice", len(w.headers))
	}
}

// TestStaleNACKsDeclined: once a down track has moved to another layer's
// keyframe, or dropped its layer to wait for one, or paused, NACKs for
// packets written before are not answered: the subscriber's decoder starts
// over at the keyframe and would never use them. Until the switch the old
// layer's packets are still answered, and the new layer's are after it.
func TestStaleNACKsDeclined(t *testing.T) {
	now := int64(0)
	tr, d, w := rtxFixture(&now)
	tr.addLayer(LayerMid, 1235)
	d.setTarget(LayerMid) // q goes on until h's keyframe
	now += int64(10 * time.Millisecond)
	tr.forward(LayerLow, pkt(102, 12000, vp8Delta))
	before := w.headers[1].SequenceNumber
	if !d.retransmit(before, now, false) {
		t.Fatal("NACK for the layer still being forwarded not answered")
	}
	lastLow := w.headers[len(w.headers)-2].SequenceNumber // before the retransmission
	now += int64(10 * time.Millisecond)
	tr.forward(LayerMid, pkt(500, 90000, vp8Key))
	key := w.headers[len(w.headers)-1].SequenceNumber
	if d.Layer() != LayerMid {
		t.Fatalf("layer %d after h's keyframe, want %d", d.Layer(), LayerMid)
	}
	now += int64(10 * time.Millisecond)
	if d.retransmit(lastLow, now, false) {
		t.Error("a packet of the layer switched away from was retransmitted")
	}
	if got := tr.stats.staleNACKs.Load(); got != 1 {
		t.Errorf("staleNACKs = %d, want 1", got)
	}
	if !d.retransmit(key, now, false) {
		t.Error("NACK for the new layer's keyframe not answered")
	}
	// Dropped to wait for another layer (a move down on congestion), or
	// paused: nothing written so far is worth sending again.
	d.pause()
	now += int64(100 * time.Millisecond)
	if d.retransmit(key, now, false) {
		t.Error("retransmitted while waiting for a keyframe")
	}
	if got := tr.stats.staleNACKs.Load(); got != 2 {
		t.Errorf("staleNACKs = %d, want 2", got)
	}
}

// TestRetransmissionBudget: a subscriber's retransmissions may burst to
// half a second of its estimate, then go on at the estimate's rate; a NACK
// the budget cannot pay for is declined and counted, and a copy for a
// second sending is only queued when the budget pays for it too.
func TestRetransmissionBudget(t *testing.T) {
	p := &Peer{start: DefaultStartBitrate}
	p.as.rtxRate.Store(800_000)
	now := int64(time.Second)
	spent := 0
	for p.spendOnRetransmission(10_000, now) {
		spent++
		if spent > 1000 {
			t.Fatal("the budget never ran out")
		}
	}
	if spent != 40 { // 800 kbit/s for 500 ms
		t.Errorf("a burst of %d retransmissions of 10 kbit, want 40", spent)
	}
	now += int64(100 * time.Millisecond)
	spent = 0
	for p.spendOnRetransmission(10_000, now) {
		spent++
	}
	if spent != 8 { // 100 ms at 800 kbit/s
		t.Errorf("%d retransmissions 100 ms later, want 8", spent)
	}

	// Through a down track: declined over budget.
	tr, d, w := rtxFixture(&now)
	d.sub = &Peer{start: DefaultStartBitrate}
	d.sub.as.rtxRate.Store(int64(8 * (rtxOverhead + len(vp8Delta)) * 3)) // half a second holds 1.5 retransmissions
	first := w.headers[1].SequenceNumber
	if !d.retransmit(first, now, true) {
		t.Fatal("first NACK declined with the budget full")
	}
	if d.nAgain != 0 {
		t.Error("a copy was queued that the budget cannot pay for")
	}
	if d.retransmit(w.headers[0].SequenceNumber, now, false) {
		t.Error("second NACK answered beyond the budget")
	}
	if got := tr.stats.unaffordableNACKs.Load(); got != 1 {
		t.Errorf("unaffordableNACKs = %d, want 1", got)
	}
}

// TestKeyframeRequestRepeated: a subscriber waiting for the keyframe that
// starts its layer asks again, at the throttled pace, until it comes; the
// first request may have been throttled away or lost upstream. Once the
// keyframe arrived nothing more is asked.
func TestKeyframeRequestRepeated(t *testing.T) {
	now := int64(1)
	var plis []uint32
	tr := newTrack("video-hub-1", "hub", webrtc.RTPCodecTypeVideo, vp8Codec, &counters{},
		func() int64 { return now }, 500*time.Millisecond, func(ps []rtcp.Packet) error {
			for _, p := range ps {
				if pli, ok := p.(*rtcp.PictureLossIndication); ok {
					plis = append(plis, pli.MediaSSRC)
				}
			}
			return nil
		})
	tr.addLayer(LayerLow, 4001)
	d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
	if !tr.addDown(d) {
		t.Fatal("addDown refused")
	}
	bindFake(d, &recordingWriter{}, 777, 96)
	d.setTarget(LayerLow)
	if len(plis) != 1 || plis[0] != 4001 {
		t.Fatalf("setTarget sent %v, want one PLI for SSRC 4001", plis)
	}
	now += int64(250 * time.Millisecond)
	tr.rerequestKeyframes()
	if len(plis) != 1 {
		t.Fatalf("asked again within the throttle: %v", plis)
	}
	now += int64(300 * time.Millisecond)
	tr.rerequestKeyframes()
	if len(plis) != 2 {
		t.Fatalf("still waiting after 550 ms and not asked again: %d requests", len(plis))
	}
	if !d.forward(LayerLow, pkt(10, 1000, vp8Key), now) {
		t.Fatal("keyframe not forwarded")
	}
	now += int64(time.Second)
	tr.rerequestKeyframes()
	if len(plis) != 2 {
		t.Fatalf("asked for a keyframe after the layer started: %d requests", len(plis))
	}
}

// TestStartFromCachedKeyframe: a subscriber that starts a layer shortly
// after one of its keyframes went by gets that keyframe and the packets
// since from the packet cache, with no keyframe request; after the
// keyframe has aged, or when a packet since it is missing, it is asked for
// as before.
func TestStartFromCachedKeyframe(t *testing.T) {
	now := int64(1)
	var plis int
	stats := &counters{}
	tr := newTrack("video-hub-1", "hub", webrtc.RTPCodecTypeVideo, vp8Codec, stats,
		func() int64 { return now }, 500*time.Millisecond, func(ps []rtcp.Packet) error {
			plis += len(ps)
			return nil
		})
	tr.addLayer(LayerLow, 4001)
	subscribe := func(ssrc uint32) *recordingWriter {
		d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
		if !tr.addDown(d) {
			t.Fatal("addDown refused")
		}
		w := &recordingWriter{}
		bindFake(d, w, ssrc, 96)
		d.setTarget(LayerLow)
		return w
	}
	first := subscribe(701)
	if plis != 1 {
		t.Fatalf("first subscriber: %d keyframe requests, want 1", plis)
	}
	tr.forward(LayerLow, pkt(10, 1000, vp8Key))
	tr.forward(LayerLow, pkt(11, 4000, vp8Delta))
	tr.forward(LayerLow, pkt(12, 7000, vp8Delta))

	now += int64(300 * time.Millisecond)
	second := subscribe(702)
	if plis != 1 {
		t.Fatalf("a subscriber 300 ms after a keyframe asked for another (%d requests)", plis)
	}
	tr.forward(LayerLow, pkt(13, 10000, vp8Delta))
	if len(second.headers) != 4 {
		t.Fatalf("second subscriber got %d packets, want the keyframe, the two since and the new one", len(second.headers))
	}
	for i, h := range second.headers {
		if h.SSRC != 702 || h.SequenceNumber != second.headers[0].SequenceNumber+uint16(i) {
			t.Errorf("packet %d: %+v, want SSRC 702 and consecutive sequence numbers", i, h)
		}
	}
	if second.headers[0].Timestamp != 1000 || second.headers[3].Timestamp != 10000 {
		t.Errorf("timestamps %d..%d, want the keyframe's 1000 to 10000", second.headers[0].Timestamp, second.headers[3].Timestamp)
	}
	if second.sizes[0] != first.sizes[0] {
		t.Errorf("the replay starts with %d bytes, the keyframe had %d", second.sizes[0], first.sizes[0])
	}
	if got := stats.keyframesFromCache.Load(); got != 1 {
		t.Errorf("keyframesFromCache = %d, want 1", got)
	}

	// Aged: a request, and nothing until a keyframe comes.
	now += int64(2 * time.Second)
	third := subscribe(703)
	if plis != 2 {
		t.Fatalf("a subscriber 2 s after the keyframe: %d requests, want 2", plis)
	}
	tr.forward(LayerLow, pkt(14, 13000, vp8Delta))
	if len(third.headers) != 0 {
		t.Fatalf("served %d packets from a keyframe %v old", len(third.headers), 2300*time.Millisecond)
	}

	// A fresh keyframe, then a packet lost upstream: the cache cannot serve.
	now += int64(300 * time.Millisecond)
	tr.forward(LayerLow, pkt(20, 20000, vp8Key))
	tr.forward(LayerLow, pkt(22, 23000, vp8Delta))
	if len(third.headers) != 2 {
		t.Fatalf("third subscriber got %d packets after the keyframe, want 2", len(third.headers))
	}
	now += int64(300 * time.Millisecond)
	fourth := subscribe(704)
	if plis != 2 {
		t.Fatalf("a subscriber 300 ms after a keyframe asked for another (%d requests)", plis)
	}
	tr.forward(LayerLow, pkt(23, 26000, vp8Delta))
	if len(fourth.headers) != 0 {
		t.Fatalf("served %d packets from a cache with a hole", len(fourth.headers))
	}
	if plis != 3 {
		t.Errorf("%d keyframe requests, want 3: the fourth subscriber's, when the cache could not serve it", plis)
	}

	// A retransmission or a reordered packet does not start a replay: the
	// packets cached after it would never be sent.
	now += int64(time.Second)
	tr.forward(LayerLow, pkt(30, 30000, vp8Key))
	tr.forward(LayerLow, pkt(31, 33000, vp8Delta))
	tr.forward(LayerLow, pkt(32, 36000, vp8Delta))
	fifth := subscribe(705)
	tr.forward(LayerLow, pkt(31, 33000, vp8Delta))
	if len(fifth.headers) != 0 {
		t.Fatalf("a late packet started a replay of %d packets", len(fifth.headers))
	}
	tr.forward(LayerLow, pkt(33, 39000, vp8Delta))
	if len(fifth.headers) != 4 {
		t.Fatalf("fifth subscriber got %d packets, want 30-33", len(fifth.headers))
	}
}
