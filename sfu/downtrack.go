package sfu

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// ErrCodecNotNegotiated is returned by Bind when the subscriber's peer
// connection did not accept the publisher's codec (we never transcode).
var ErrCodecNotNegotiated = errors.New("sfu: subscriber did not negotiate the publisher's codec")

// reorderWindow is how far past a switch point reordered packets of the
// frames before it are still recognised and dropped.
const reorderWindow = 512

// noLayer marks "no layer chosen yet" in a down track's layer fields.
const noLayer = -1

// DownTrack is one subscriber's copy of a published track. It is the SFU's
// own webrtc.TrackLocal: it rewrites SSRC, payload type, sequence number and
// timestamp so that the subscriber sees one continuous stream even when the
// layer it is served changes underneath (TrackLocalStaticRTP cannot do that).
//
// Packets reach it from the upstream layers' read loops, one goroutine per
// layer; the fast path rejects packets of layers it does not want with two
// atomic loads and takes the mutex only for packets it forwards.
type DownTrack struct {
	id       string
	streamID string
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecParameters // the publisher's codec
	family   int                       // codecVP8, codecH264, codecOther
	track    *Track                    // upstream
	sub      *Peer                     // subscriber; nil in benchmarks

	bound    atomic.Bool
	maxLayer atomic.Int32 // highest layer this subscriber may get; LayerOff: none
	// maxTemporal is the highest VP8 temporal layer forwarded
	// (AllTemporal: every frame); see temporal.go.
	maxTemporal atomic.Int32
	hidden      atomic.Bool  // the subscriber does not show it: nothing forwarded (LayerOff)
	target      atomic.Int32 // layer we want to forward (switch pending if != current)
	current     atomic.Int32 // layer being forwarded now
	askedAt     atomic.Int64 // when target last changed (monotonic ns): a switch's wait is logged from it

	packets atomic.Uint64
	bytes   atomic.Uint64
	rtxSent atomic.Uint64 // packets retransmitted on NACK
	// freshNACKs counts the packets of the picture being shown that the
	// subscriber asked for again, each once (see nackLoss).
	freshNACKs atomic.Uint64
	link       downLink // what the subscriber's receiver reports say
	paused     atomic.Bool

	// The allocator's view, touched only by the subscriber's allocation
	// (under Peer.allocMu).
	allocReason string
	allocLayer  int
	allocSent   uint64 // bytes counter at the last allocation
	rateBits    int    // measured bits per second sent to the subscriber
	belowSince  int64  // since when the estimate has not covered the lowest layer; 0 = it does
	pausedAt    int64  // when the allocator last paused this track
	movedAt     int64  // when the allocator last changed this track's layer
	takenFrom   int    // the layer a technician's pin or the publisher took away; noLayer = none
	takenAt     int64  // when

	mu          sync.Mutex
	writer      webrtc.TrackLocalWriter
	ssrc        uint32
	pt          uint8
	rtxSSRC     uint32 // 0 when the subscriber did not negotiate RTX
	rtxPT       uint8
	rtxSeq      uint16
	rtxBuf      []byte // a retransmission's payload: original sequence number, then the payload
	sent        *[sentHistory]sentEntry
	again       [8]uint16 // retransmissions to send once more after the next packet written
	nAgain      int
	vp8         vp8Munger // picture IDs continuous across layer switches
	vp8Buf      []byte    // a rewritten VP8 payload
	thin        temporalFilter
	started     bool   // at least one packet written
	seqOffset   uint16 // out = in - seqOffset
	tsOffset    uint32 // out = in - tsOffset
	lastSeq     uint16 // newest sequence number written (output space)
	lastTS      uint32 // timestamp of that packet (output space)
	lastAt      int64  // monotonic nanoseconds when it was written
	floorSeq    uint16 // input packets older than this are from before the switch
	floorActive bool   // floorSeq is still within reordering reach
	switchAt    int64  // when the layer being forwarded started (its keyframe was written)
	hdr         rtp.Header
}

// sentHistory is how many of the newest packets written to a subscriber are
// remembered for answering its NACKs (a power of two).
const sentHistory = 1024

// nackMaxAge is how old a packet may be and still be worth retransmitting:
// past it the subscriber's jitter buffer has given up on it.
const nackMaxAge = int64(1 * time.Second)

// sentEntry maps one sequence number written to a subscriber back to the
// upstream packet it carried.
type sentEntry struct {
	out      uint16
	in       uint16
	layer    int8
	valid    bool
	tsOffset uint32
	picOff   uint16 // VP8 picture ID offset in force when it was written
	tl0Off   uint8
	size     uint16 // payload bytes
	at       int64  // when it was written (monotonic ns)
	rtxAt    int64  // when it was last retransmitted
	rtxDone  bool   // retransmitted at least once
	nacked   bool   // asked for again at least once
}

func newDownTrack(t *Track, sub *Peer, id string, maxLayer int) *DownTrack {
	d := &DownTrack{
		id:       id,
		streamID: t.streamID,
		kind:     t.kind,
		codec:    t.codec,
		family:   t.family,
		track:    t,
		sub:      sub,
	}
	d.maxLayer.Store(int32(maxLayer))
	d.maxTemporal.Store(AllTemporal)
	d.thin.cap = AllTemporal
	d.target.Store(noLayer)
	d.current.Store(noLayer)
	d.allocLayer = noLayer
	d.takenFrom = noLayer
	if t.kind == webrtc.RTPCodecTypeVideo {
		d.sent = new([sentHistory]sentEntry)
	}
	if d.family == codecVP8 {
		d.vp8Buf = make([]byte, receiveMTU)
	}
	return d
}

func codecFamily(mime string) int {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return codecVP8
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return codecH264
	}
	return codecOther
}

// ID implements webrtc.TrackLocal.
func (d *DownTrack) ID() string { return d.id }

// RID implements webrtc.TrackLocal; a down track is never simulcast itself.
func (d *DownTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal: the publisher's peer ID, so that a
// page can tell whose media a track carries.
func (d *DownTrack) StreamID() string { return d.streamID }

// Kind implements webrtc.TrackLocal.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.kind }

// Track returns the upstream track this down track copies.
func (d *DownTrack) Track() *Track { return d.track }

// Bind implements webrtc.TrackLocal. It picks the negotiated payload type of
// the publisher's codec and remembers where to write.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, d.codec.MimeType) {
			continue
		}
		d.mu.Lock()
		d.writer = ctx.WriteStream()
		d.ssrc = uint32(ctx.SSRC())
		d.pt = uint8(c.PayloadType)
		d.rtxSSRC, d.rtxPT = 0, 0
		if rtx := uint32(ctx.SSRCRetransmission()); rtx != 0 {
			if pt, ok := rtxPayloadType(ctx.CodecParameters(), c.PayloadType); ok {
				d.rtxSSRC, d.rtxPT = rtx, uint8(pt)
			}
		}
		d.mu.Unlock()
		d.bound.Store(true)
		if l := d.target.Load(); l != noLayer {
			d.askKeyframe(int(l))
		}
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, ErrCodecNotNegotiated
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(false)
	d.mu.Lock()
	d.writer = nil
	d.mu.Unlock()
	return nil
}

// Layer returns the layer being forwarded now, or -1 before the first one.
func (d *DownTrack) Layer() int { return int(d.current.Load()) }

// MaxLayer returns the highest layer this subscriber may be served.
func (d *DownTrack) MaxLayer() int { return int(d.maxLayer.Load()) }

// SetMaxLayer caps the layer this subscriber is served; the change takes
// effect at the next keyframe of the newly chosen layer. LayerOff stops
// the video at once (the subscriber does not show it): nothing is
// forwarded and no keyframe is asked for on its behalf until a layer is
// allowed again, when it starts at the lowest layer's next keyframe.
func (d *DownTrack) SetMaxLayer(l int) {
	d.maxLayer.Store(int32(max(l, LayerOff)))
	if d.sub != nil {
		d.sub.allocate()
	}
}

// Paused reports whether the allocator paused this video down track because
// not even its lowest layer fits the subscriber's link.
func (d *DownTrack) Paused() bool {
	return d.paused.Load()
}

// Retransmitted returns how many packets were sent again on the
// subscriber's NACKs.
func (d *DownTrack) Retransmitted() uint64 { return d.rtxSent.Load() }

// pause stops forwarding video at once; setTarget resumes it at the next
// keyframe of the chosen layer, continuing the sequence and timestamps.
func (d *DownTrack) pause() {
	d.mu.Lock()
	d.target.Store(noLayer)
	d.current.Store(noLayer)
	d.mu.Unlock()
}

// setTarget asks for layer l; the switch happens at its next keyframe.
// It reports whether the target changed.
func (d *DownTrack) setTarget(l int) bool {
	if d.target.Swap(int32(l)) == int32(l) {
		return false
	}
	d.askedAt.Store(d.track.clock())
	if d.kind == webrtc.RTPCodecTypeVideo && int32(l) != d.current.Load() && d.bound.Load() {
		d.askKeyframe(l)
	}
	return true
}

// askKeyframe asks the publisher for a keyframe on layer l, which this
// down track waits for, unless it has no picture (new, or paused) and a
// keyframe of that layer went by so recently that it will be started from
// the packet cache (startFromCache). It reports whether it asked.
func (d *DownTrack) askKeyframe(l int) bool {
	if c := d.track.cache(l); c != nil && d.current.Load() == noLayer && c.fresh(d.track.clock()) {
		return false
	}
	d.track.requestKeyframe(l)
	return true
}

// waitingKeyframe reports the layer this bound video down track waits to
// start or switch to at its next keyframe, if any.
func (d *DownTrack) waitingKeyframe() (int, bool) {
	if d.kind != webrtc.RTPCodecTypeVideo || !d.bound.Load() {
		return 0, false
	}
	tgt := d.target.Load()
	if tgt == noLayer || tgt == d.current.Load() || tgt < 0 || tgt >= MaxLayers {
		return 0, false
	}
	return int(tgt), true
}

// Stats returns the packets and bytes written to the subscriber so far.
func (d *DownTrack) Stats() (packets, bytes uint64) {
	return d.packets.Load(), d.bytes.Load()
}

// forward writes one packet of upstream layer l to the subscriber when it is
// the layer being served, or the keyframe that starts the target layer.
// now is a monotonic clock reading in nanoseconds. It reports whether the
// packet was written. It must not allocate: it runs once per packet per
// subscriber.
func (d *DownTrack) forward(l int32, p *rtp.Packet, now int64) bool {
	cur, tgt := d.current.Load(), d.target.Load()
	if l != cur && l != tgt {
		return false
	}
	if !d.bound.Load() {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil {
		return false
	}
	cur, tgt = d.current.Load(), d.target.Load()
	var desc vp8Desc
	isVP8 := false
	if d.family == codecVP8 {
		desc, isVP8 = parseVP8Desc(p.Payload)
	}
	if l == tgt && l != cur {
		switch {
		case d.kind != webrtc.RTPCodecTypeVideo || isKeyframe(d.family, p.Payload):
			d.switchTo(l, p.SequenceNumber, p.Timestamp, now)
			if isVP8 {
				d.vp8.switchTo(desc)
			}
		case cur != noLayer || !d.startFromCache(l, p.SequenceNumber, now):
			// With a picture showing, the old layer goes on until the new
			// one's next keyframe: a replay would put the new layer's
			// frames up to gopReplayAge late on the timeline.
			return false
		}
		cur = l
	}
	if l != cur {
		return false
	}
	if d.floorActive {
		if seqBefore(p.SequenceNumber, d.floorSeq) {
			return false // reordered packet from before the switch: not ours
		}
		if p.SequenceNumber-d.floorSeq > reorderWindow {
			d.floorActive = false
		}
	}
	if len(p.Payload) == 0 {
		// Padding-only packets (bandwidth probes) carry nothing for the
		// decoder: drop them and close the sequence gap they would leave.
		d.closeGap(p.SequenceNumber, nil, now)
		return false
	}
	if isVP8 && d.thin.leaveOut(&desc, p.Payload, uint8(d.maxTemporal.Load())) {
		d.closeGap(p.SequenceNumber, &desc, now)
		d.track.stats.thinned.Add(1)
		return false
	}
	return d.write(l, p.SequenceNumber, p.Timestamp, p.Marker, p.Payload, &desc, isVP8, now)
}

// write sends upstream packet seq of layer l to the subscriber with the
// down track's sequence number, timestamp and SSRC, and remembers it for
// NACKs. d.mu is held.
func (d *DownTrack) write(l int32, seq uint16, ts uint32, marker bool, payload []byte, desc *vp8Desc, isVP8 bool, now int64) bool {
	// A late packet (reordered, or retransmitted by the publisher) goes
	// where it would have gone before the gaps after it were closed up.
	seqLess, picLess := d.thin.late(seq, desc, now)
	outSeq := seq - d.seqOffset + seqLess
	picOff := (d.vp8.picOff - picLess) & vp8PicIDMask15
	// A new header: the publisher's header extensions carry IDs negotiated
	// with the publisher, not with this subscriber, and never pass through.
	h := &d.hdr
	h.Version, h.Padding, h.Extension, h.Marker = 2, false, false, marker
	h.PayloadType, h.SequenceNumber, h.Timestamp, h.SSRC = d.pt, outSeq, ts-d.tsOffset, d.ssrc
	// The extension list keeps its array: the transport-wide sequence number
	// goes into it without allocating (stampedStream).
	h.CSRC, h.ExtensionProfile, h.Extensions, h.PaddingSize = nil, 0, h.Extensions[:0], 0
	if isVP8 {
		d.vp8.picOff, picOff = picOff, d.vp8.picOff
		payload = d.vp8.rewrite(d.vp8Buf, payload, *desc)
		d.vp8.picOff, picOff = picOff, d.vp8.picOff
	}
	if _, err := d.writer.WriteRTP(&d.hdr, payload); err != nil {
		return false
	}
	d.thin.note(seq, desc)
	if !d.started || seqBefore(d.lastSeq, outSeq) {
		d.lastSeq = outSeq
		d.lastTS = d.hdr.Timestamp
		d.lastAt = now
	}
	if d.nAgain != 0 {
		d.sendAgain(now)
	}
	if d.sent != nil {
		e := &d.sent[outSeq&(sentHistory-1)]
		*e = sentEntry{out: outSeq, in: seq, layer: int8(l), valid: true, tsOffset: d.tsOffset,
			picOff: picOff, tl0Off: d.vp8.tl0Off, size: uint16(len(payload)), at: now}
	}
	d.started = true
	d.packets.Add(1)
	d.bytes.Add(uint64(len(payload)))
	return true
}

// startFromCache starts layer l on a down track with no picture (new, or
// paused), when its packet next has just come and is no keyframe, from the
// layer's packet cache: the newest keyframe and every
// packet since are written first, with the offsets of a switch at that
// keyframe, so the subscriber decodes at once instead of waiting for a
// keyframe request to be answered. It reports false, and asks for a
// keyframe, when the cache cannot serve (see packetCache.gop). d.mu is held.
func (d *DownTrack) startFromCache(l int32, next uint16, now int64) bool {
	c := d.track.cache(int(l))
	if c == nil {
		return false
	}
	first, ok := c.gop(next, now)
	if !ok {
		d.track.requestKeyframe(int(l))
		return false
	}
	if cap(d.rtxBuf) < receiveMTU+2 {
		d.rtxBuf = make([]byte, receiveMTU+2)
	}
	buf := d.rtxBuf[:cap(d.rtxBuf)]
	for seq := first; seq != next; seq++ {
		n, ts, marker, ok := c.get(seq, buf)
		if !ok {
			// Only the layer's read loop puts packets in its cache, after
			// the fan-out this runs in has ended, and gop saw them all:
			// not reached.
			return seq != first
		}
		var desc vp8Desc
		isVP8 := false
		if d.family == codecVP8 {
			desc, isVP8 = parseVP8Desc(buf[:n])
		}
		if seq == first {
			d.switchTo(l, seq, ts, now)
			if isVP8 {
				d.vp8.switchTo(desc)
			}
		} else if isVP8 && d.thin.leaveOut(&desc, buf[:n], uint8(d.maxTemporal.Load())) {
			d.closeGap(seq, &desc, now)
			continue
		}
		d.write(l, seq, ts, marker, buf[:n], &desc, isVP8, now)
	}
	d.track.stats.keyframesFromCache.Add(1)
	return true
}

// switchTo makes layer l current, starting at packet p (a keyframe for
// video). The offsets are chosen so that it follows the last packet written
// with the next sequence number and a timestamp advanced by the wall-clock
// time since then (at least one tick), so timestamps never go backwards.
func (d *DownTrack) switchTo(l int32, seq uint16, ts uint32, now int64) {
	if d.started {
		d.seqOffset = seq - (d.lastSeq + 1)
		// Where the new layer's frame falls on the old layer's timeline,
		// from both layers' sender reports; without them, the wall-clock
		// time since the last packet written.
		ticks := uint32(uint64(now-d.lastAt) * uint64(d.codec.ClockRate) / 1e9)
		want := d.lastTS + ticks
		if prev := d.current.Load(); prev != noLayer && prev != l {
			if aligned, ok := d.track.alignTimestamp(prev, l, ts); ok {
				want = aligned - d.tsOffset
			}
		}
		if !seqAfter32(want, d.lastTS) { // never backwards, never a repeat
			want = d.lastTS + 1
		}
		d.tsOffset = ts - want
	}
	d.floorSeq = seq
	d.floorActive = true
	d.switchAt = now
	d.thin.reset(uint8(d.maxTemporal.Load()))
	d.current.Store(l)
	if d.sub != nil && d.kind == webrtc.RTPCodecTypeVideo {
		d.sub.log.Debug("layer switched at keyframe", "track", d.id, "layer", l,
			"waited", time.Duration(now-d.askedAt.Load()).Round(time.Millisecond))
	}
}

// seqAfter32 reports whether timestamp a comes after b, modulo 2^32.
func seqAfter32(a, b uint32) bool {
	return a != b && a-b < 1<<31
}

// seqBefore reports whether sequence number a comes before b, modulo 2^16.
func seqBefore(a, b uint16) bool {
	return a != b && b-a < 0x8000
}

// rtxPayloadType finds the RTX payload type paired with pt ("apt=pt").
func rtxPayloadType(codecs []webrtc.RTPCodecParameters, pt webrtc.PayloadType) (webrtc.PayloadType, bool) {
	want := "apt=" + strconv.Itoa(int(pt))
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && strings.Contains(c.SDPFmtpLine, want) {
			return c.PayloadType, true
		}
	}
	return 0, false
}

// retransmit answers a subscriber's NACK for sequence number seq from the
// upstream layer's packet cache: on the RTX stream when the subscriber
// negotiated one, else as the original packet again. Packets the
// subscriber has waited too long for, or that were retransmitted within the
// last rtxMinGap, are not sent; nor are packets of a picture the
// subscriber has left (see stale), nor packets its retransmission budget
// cannot pay for (Peer.spendOnRetransmission). With twice, the packet goes
// out a second time after the next packet written (see sendAgain), budget
// permitting. It reports whether the packet was sent.
func (d *DownTrack) retransmit(seq uint16, now int64, twice bool) bool {
	if d.sent == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.sentEntry(seq, now)
	if e == nil || e.rtxDone && now-e.rtxAt < rtxMinGap {
		return false
	}
	if d.stale(e) {
		d.track.stats.staleNACKs.Add(1)
		return false
	}
	if !e.nacked {
		e.nacked = true
		d.freshNACKs.Add(1)
	}
	bits := 8 * (rtxOverhead + int(e.size))
	if d.sub != nil && !d.sub.spendOnRetransmission(bits, now) {
		d.track.stats.unaffordableNACKs.Add(1)
		return false
	}
	if !d.resend(e) {
		return false
	}
	e.rtxAt, e.rtxDone = now, true
	d.rtxSent.Add(1)
	if twice && d.nAgain < len(d.again) && (d.sub == nil || d.sub.spendOnRetransmission(bits, now)) {
		d.again[d.nAgain] = seq
		d.nAgain++
	}
	return true
}

// stale reports whether a packet written to the subscriber belongs to a
// picture it has left: written before the layer being forwarded started
// (its keyframe), or while video is paused or waiting for a keyframe.
// The decoder starts over at the keyframe and will never use it, so
// sending it again only adds to the link's load. That matters most
// right after a move down on congestion, when the queue that overflowed
// holds the old layer and the subscriber asks again for every packet it
// lost (measured: 860 retransmissions of the 720p layer in 1.5 s into a
// 600 kbit link, which held the smaller layer's keyframe up for seconds).
// d.mu is held.
func (d *DownTrack) stale(e *sentEntry) bool {
	cur := d.current.Load()
	return cur == noLayer || int32(e.layer) != cur || e.at < d.switchAt
}

// sendAgain sends the retransmissions retransmit queued a second time.
// Chromium asks again for a retransmission it lost only after its estimate
// of the round trip, and a terminal that only receives on a connection has
// none: it assumes 100 ms. At 5% random loss one retransmission in twenty is
// lost, and the frame waiting for it arrives too late to be shown (measured
// in TestLossRecovery: 5-14% of the hub's frames not decoded, 0-2% with the
// second copy).
// The copy goes out with the next packet written rather than at once, so a
// short burst of loss is less likely to take both. d.mu is held.
func (d *DownTrack) sendAgain(now int64) {
	for _, seq := range d.again[:d.nAgain] {
		if e := d.sentEntry(seq, now); e != nil && !d.stale(e) && d.resend(e) {
			d.track.stats.retransmittedTwice.Add(1)
		}
	}
	d.nAgain = 0
}

// sentEntry returns what the send history remembers of sequence number
// seq as written to the subscriber, or nil when it no longer does or the
// packet is older than nackMaxAge. d.mu is held.
func (d *DownTrack) sentEntry(seq uint16, now int64) *sentEntry {
	e := &d.sent[seq&(sentHistory-1)]
	if !e.valid || e.out != seq || now-e.at > nackMaxAge {
		return nil
	}
	return e
}

// resend writes the packet e records, as sent to the subscriber, again
// from the upstream layer's packet cache. d.mu is held.
func (d *DownTrack) resend(e *sentEntry) bool {
	if d.writer == nil {
		return false
	}
	seq := e.out
	c := d.track.cache(int(e.layer))
	if c == nil {
		return false
	}
	if cap(d.rtxBuf) < receiveMTU+2 {
		d.rtxBuf = make([]byte, receiveMTU+2)
	}
	buf := d.rtxBuf[:cap(d.rtxBuf)]
	n, ts, marker, ok := c.get(e.in, buf[2:])
	if !ok {
		return false
	}
	hdr := rtp.Header{Version: 2, Marker: marker, PayloadType: d.pt, SequenceNumber: seq, Timestamp: ts - e.tsOffset, SSRC: d.ssrc}
	if d.family == codecVP8 {
		if desc, ok := parseVP8Desc(buf[2 : 2+n]); ok {
			// The offsets of the layer it was sent in, not today's.
			m := vp8Munger{picOff: e.picOff, tl0Off: e.tl0Off}
			m.rewrite(buf[2:2+n], buf[2:2+n], desc)
		}
	}
	payload := buf[2 : 2+n]
	if d.rtxSSRC != 0 {
		binary.BigEndian.PutUint16(buf, seq)
		hdr.SSRC, hdr.PayloadType, hdr.SequenceNumber = d.rtxSSRC, d.rtxPT, d.rtxSeq
		d.rtxSeq++
		payload = buf[:2+n]
	}
	if _, err := d.writer.WriteRTP(&hdr, payload); err != nil {
		return false
	}
	d.link.rtxBytes.Add(uint64(n))
	return true
}

// rtxOverhead is what a retransmission costs on the wire beyond its
// payload: RTP header, RTX's original sequence number, the SRTP tag, UDP
// and IPv4.
const rtxOverhead = 12 + 2 + 16 + 8 + 20

// rtxMinGap keeps one lost packet from being retransmitted again before the
// previous retransmission could have arrived.
const rtxMinGap = int64(50 * time.Millisecond)

// paddingSize is the padding carried by one probe packet (the most an RTP
// padding length byte allows, rounded down like libwebrtc's).
const paddingSize = 224

// writePadding sends n padding-only packets on the RTX stream: they carry no
// media, so they disturb nothing the decoder sees, but the subscriber's
// transport-wide feedback covers them, which is how a probe measures the
// link. It returns the bytes sent, 0 if the subscriber has no RTX stream.
func (d *DownTrack) writePadding(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rtxSSRC == 0 || d.writer == nil || !d.started {
		return 0
	}
	sent := 0
	for i := 0; i < n; i++ {
		hdr := rtp.Header{Version: 2, Padding: true, PaddingSize: paddingSize, PayloadType: d.rtxPT,
			SequenceNumber: d.rtxSeq, Timestamp: d.lastTS, SSRC: d.rtxSSRC}
		if _, err := d.writer.WriteRTP(&hdr, nil); err != nil {
			break
		}
		d.rtxSeq++
		sent += 12 + paddingSize
	}
	return sent
}

// ssrc32 is the SSRC the subscriber receives this track on.
func (d *DownTrack) ssrc32() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ssrc
}
