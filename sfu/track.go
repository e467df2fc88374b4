package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// MaxLayers is the most simulcast layers a track may have.
const MaxLayers = 3

// Layer indexes, lowest quality first. The RIDs are the ones the pages send:
// q (quarter, 320x180), h (half, 640x360), f (full, 1280x720).
const (
	LayerLow  = 0
	LayerMid  = 1
	LayerHigh = 2
	// LayerOff, as a down track's cap, forwards nothing: the subscriber
	// does not show the video (a wall tile scrolled out of sight).
	LayerOff = -1
)

// LayerForRID maps a simulcast RID to its layer index; a track without
// simulcast has one layer, 0. ok is false for RIDs the SFU does not know.
func LayerForRID(rid string) (layer int, ok bool) {
	switch rid {
	case "", "q":
		return LayerLow, true
	case "h":
		return LayerMid, true
	case "f":
		return LayerHigh, true
	}
	return 0, false
}

// RIDForLayer is the inverse of LayerForRID for simulcast tracks.
func RIDForLayer(l int) string {
	return [...]string{"q", "h", "f"}[l]
}

// layerIdle is how long a layer may go without packets before it no longer
// counts as sent (Chromium stops its upper layers when its upload shrinks).
const layerIdle = 1500 * time.Millisecond

// Track is one published track (a camera or a microphone) with its simulcast
// layers. One read loop per layer copies every packet to the down tracks.
type Track struct {
	id       string
	streamID string // publisher's peer ID
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecParameters
	family   int // codecVP8, codecH264, codecOther
	stats    *counters
	clock    func() int64
	pliEvery time.Duration

	writeRTCP func([]rtcp.Packet) error // to the publisher
	fan       *fanPool                  // the SFU's fan-out workers; nil: the read loop alone

	layers     [MaxLayers]layerState
	liveLayers atomic.Int32                 // layers whose read loop runs
	downs      atomic.Pointer[[]*DownTrack] // copy-on-write: the fan-out takes no lock
	levels     audioLevels                  // audio only: RFC 6464 levels, for the active speaker
	tap        atomic.Pointer[tapHolder]    // the recorder's copy of the packets, nil when not recorded

	mu     sync.Mutex // serialises writers of downs and of layer registration
	closed bool
}

type layerState struct {
	ssrc       atomic.Uint32
	reading    atomic.Bool // a read loop owns this layer
	present    atomic.Bool
	lastPacket atomic.Int64  // monotonic ns of the newest packet
	lastPLI    atomic.Int64  // monotonic ns of the last keyframe request sent
	bytes      atomic.Uint64 // received so far (RTP header and payload)
	rate       atomic.Int64  // measured bits per second; 0 when not being sent
	cache      atomic.Pointer[packetCache]
	sr         atomic.Pointer[senderReport] // the layer's newest RTCP sender report
	recv       recvStats                    // sequence and jitter accounting, for LinkStats
	fan        fanDone                      // where the read loop waits for its shards

	// Touched only by the layer's read loop.
	newestTS  uint32
	haveTS    bool
	lateDrops uint64

	// Touched only by the router's loop (updateRates).
	prevBytes   uint64
	prevAt      int64
	sendingRate int64 // the smoothed rate after the last reading with packets
	quietRate   int64 // sendingRate when the layer last went quiet
}

// senderReport is what an RTCP sender report says: this RTP timestamp was
// sampled at this NTP time. Simulcast layers are separate RTP streams with
// unrelated timestamp origins; their reports put them on one clock.
type senderReport struct {
	ntp uint64 // 32.32 fixed point seconds
	rtp uint32
}

// onSenderReport records layer l's newest sender report.
func (t *Track) onSenderReport(l int, ntp uint64, rtpTS uint32) {
	if l >= 0 && l < MaxLayers {
		t.layers[l].sr.Store(&senderReport{ntp: ntp, rtp: rtpTS})
	}
}

// alignTimestamp maps timestamp ts of layer to's packet onto layer from's
// RTP timeline, through both layers' sender reports. ok is false until both
// layers have reported.
func (t *Track) alignTimestamp(from, to int32, ts uint32) (uint32, bool) {
	if from < 0 || to < 0 || from >= MaxLayers || to >= MaxLayers || t.codec.ClockRate == 0 {
		return 0, false
	}
	a, b := t.layers[from].sr.Load(), t.layers[to].sr.Load()
	if a == nil || b == nil {
		return 0, false
	}
	clock := float64(t.codec.ClockRate)
	// The packet's NTP time, from its own layer's report...
	at := float64(int64(b.ntp-a.ntp))/(1<<32) + float64(int32(ts-b.rtp))/clock
	// ...expressed on the other layer's timeline.
	return a.rtp + uint32(int64(at*clock)), true
}

// lateRetransmission is how far behind the newest packet a retransmission
// from the publisher may be and still help: older ones arrive after the
// subscribers' jitter buffers gave up on them, and are dropped.
const lateRetransmission = 500 * time.Millisecond

func newTrack(id, streamID string, kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters,
	stats *counters, clock func() int64, pliEvery time.Duration, writeRTCP func([]rtcp.Packet) error,
) *Track {
	t := &Track{
		id: id, streamID: streamID, kind: kind, codec: codec, family: codecFamily(codec.MimeType),
		stats: stats, clock: clock, pliEvery: pliEvery, writeRTCP: writeRTCP,
	}
	t.downs.Store(&[]*DownTrack{})
	return t
}

// ID is the track's identifier, unique within its router.
func (t *Track) ID() string { return t.id }

// PublisherID is the ID of the peer that publishes the track.
func (t *Track) PublisherID() string { return t.streamID }

// Kind is audio or video.
func (t *Track) Kind() webrtc.RTPCodecType { return t.kind }

// Codec is the publisher's negotiated codec.
func (t *Track) Codec() webrtc.RTPCodecParameters { return t.codec }

// Layers reports which layers have been received at all, lowest first.
func (t *Track) Layers() []int {
	var out []int
	for i := range t.layers {
		if t.layers[i].present.Load() {
			out = append(out, i)
		}
	}
	return out
}

// DownTracks returns the subscribers' copies of this track.
func (t *Track) DownTracks() []*DownTrack { return *t.downs.Load() }

func (t *Track) addLayer(l int, ssrc uint32) {
	if t.kind == webrtc.RTPCodecTypeVideo && t.layers[l].cache.Load() == nil {
		t.layers[l].cache.Store(newPacketCache(cacheSizes[l]))
	}
	t.layers[l].ssrc.Store(ssrc)
	t.layers[l].lastPacket.Store(t.clock())
	t.layers[l].present.Store(true)
}

func (t *Track) addDown(d *DownTrack) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	old := *t.downs.Load()
	next := make([]*DownTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	t.downs.Store(&next)
	return true
}

func (t *Track) removeDown(d *DownTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.downs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	t.downs.Store(&next)
}

// close detaches every down track and returns them so their subscribers can
// remove them from their peer connections.
func (t *Track) close() []*DownTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	old := *t.downs.Load()
	t.downs.Store(&[]*DownTrack{})
	return old
}

// forward copies one packet of layer l to every down track that wants it.
// This is the SFU's forwarding loop body: it runs once per received packet
// and must not allocate.
func (t *Track) forward(l int, p *rtp.Packet) {
	now := t.clock()
	ls := &t.layers[l]
	ls.lastPacket.Store(now)
	n := t.fan.fan(&ls.fan, *t.downs.Load(), int32(l), p, now)
	t.stats.forwardLatency.observe(t.clock() - now)
	if n > 0 {
		t.stats.packetsForwarded.Add(n)
		t.stats.bytesForwarded.Add(n * uint64(len(p.Payload)))
		if c := ls.cache.Load(); c != nil && len(p.Payload) > 0 {
			c.put(p.SequenceNumber, p.Timestamp, p.Marker, p.Payload, isKeyframe(t.family, p.Payload), now)
		}
	}
}

// cache returns layer l's packet cache, nil for audio or an unknown layer.
func (t *Track) cache(l int) *packetCache {
	if l < 0 || l >= MaxLayers {
		return nil
	}
	return t.layers[l].cache.Load()
}

// late reports whether a retransmitted packet with timestamp ts arrived too
// late to help, measured against the newest timestamp of its layer.
func (t *Track) late(ls *layerState, ts uint32) bool {
	if !ls.haveTS {
		return false
	}
	behind := ls.newestTS - ts
	return behind < 1<<31 && uint64(behind) > uint64(t.codec.ClockRate)*uint64(lateRetransmission)/uint64(time.Second)
}

// readLoop reads layer l from the publisher until the track ends, and
// returns why it ended.
func (t *Track) readLoop(l int, remote *webrtc.TrackRemote) error {
	buf := make([]byte, receiveMTU)
	var p rtp.Packet
	ls := &t.layers[l]
	ls.recv.restart()
	for {
		n, attrs, err := remote.Read(buf)
		if err != nil {
			return err
		}
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.stats.malformed.Add(1)
			continue
		}
		t.stats.packetsReceived.Add(1)
		if attrs != nil && attrs.Get(webrtc.AttributeRtxSsrc) != nil {
			// A retransmission, or the publisher's own bandwidth probe:
			// not part of the layer's bitrate.
			t.stats.retransmissionsReceived.Add(1)
			if t.late(ls, p.Timestamp) {
				t.stats.lateRetransmissions.Add(1)
				continue
			}
		} else {
			if len(p.Payload) > 0 {
				ls.bytes.Add(uint64(n))
			}
			ls.recv.observe(p.SequenceNumber, p.Timestamp, rtpClock(t.clock(), t.codec.ClockRate))
			if !ls.haveTS || int32(p.Timestamp-ls.newestTS) > 0 {
				ls.newestTS, ls.haveTS = p.Timestamp, true
			}
			if t.levels.extID != 0 { // audio whose publisher sends levels
				t.observeLevel(&p, t.clock())
			}
		}
		t.forward(l, &p)
		if h := t.tap.Load(); h != nil {
			h.tap.Packet(l, &p)
		}
	}
}

// Tap receives a copy of a track's packets as they arrive (the recorder).
// Packet runs on the track's read loop: it must not block, and p (with
// its payload) is valid only during the call.
type Tap interface {
	Packet(layer int, p *rtp.Packet)
}

type tapHolder struct{ tap Tap }

// SetTap gives the track's packets to tap as well, replacing any tap it
// had; nil stops. When not set it costs the read loop one atomic load.
func (t *Track) SetTap(tap Tap) {
	if tap == nil {
		t.tap.Store(nil)
		return
	}
	t.tap.Store(&tapHolder{tap: tap})
}

// RequestKeyframe asks the publisher for a keyframe on layer l (throttled
// like the subscribers' requests).
func (t *Track) RequestKeyframe(l int) { t.requestKeyframe(l) }

// TopLayer is the best layer received within the last moments (the
// layers a publisher stops under load do not count), or -1.
func (t *Track) TopLayer() int {
	active := t.activeLayers()
	for l := MaxLayers - 1; l >= 0; l-- {
		if active&(1<<l) != 0 {
			return l
		}
	}
	return -1
}

// requestKeyframe asks the publisher for a keyframe on layer l, at most once
// per pliEvery: many subscribers starting or switching at once cost one
// keyframe, not one each.
func (t *Track) requestKeyframe(l int) {
	if t.kind != webrtc.RTPCodecTypeVideo || l < 0 || l >= MaxLayers || t.writeRTCP == nil {
		return
	}
	ls := &t.layers[l]
	ssrc := ls.ssrc.Load()
	if ssrc == 0 {
		return // not received yet: its first packets start with a keyframe anyway
	}
	now := t.clock()
	last := ls.lastPLI.Load()
	if last != 0 && now-last < int64(t.pliEvery) {
		return
	}
	if !ls.lastPLI.CompareAndSwap(last, now) {
		return // another subscriber just asked
	}
	t.stats.keyframeRequests.Add(1)
	_ = t.writeRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// rerequestKeyframes asks again for the keyframe that down tracks are
// still waiting for: a subscriber that joined or switched layer sees
// nothing new until that keyframe arrives, and the first request may have
// been throttled away, lost on the publisher's link, or answered before
// the layer was received. The router's loop calls it every LayerRefresh;
// requestKeyframe's throttle keeps it to one request per layer per
// pliEvery however many subscribers wait.
func (t *Track) rerequestKeyframes() {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	var asked uint8
	for _, d := range t.DownTracks() {
		l, ok := d.waitingKeyframe()
		if !ok || asked&(1<<l) != 0 {
			continue
		}
		if d.askKeyframe(l) {
			asked |= 1 << l
		}
	}
}

// activeLayers returns a bit set of the layers that received packets within
// layerIdle.
func (t *Track) activeLayers() uint8 {
	now := t.clock()
	var set uint8
	for i := range t.layers {
		ls := &t.layers[i]
		if ls.present.Load() && now-ls.lastPacket.Load() < int64(layerIdle) {
			set |= 1 << i
		}
	}
	return set
}

// updateRates measures each layer's bitrate since the last call (the
// router's loop calls it every LayerRefresh). A layer that has gone quiet
// counts as not sent.
func (t *Track) updateRates(now int64) {
	active := t.activeLayers()
	for i := range t.layers {
		ls := &t.layers[i]
		b := ls.bytes.Load()
		if ls.prevAt != 0 && now > ls.prevAt {
			inst := int64(float64(b-ls.prevBytes) * 8 * 1e9 / float64(now-ls.prevAt))
			old := ls.rate.Load()
			var r int64 // 0: not sent
			switch {
			case active&(1<<i) == 0:
				ls.quietRate = ls.sendingRate
			case old == 0:
				// The layer (re)starts, and its first reading holds the
				// keyframe it starts with: at 1280x720 several times the
				// layer's rate. Taken as the rate, it held rooms with
				// megabits to spare at the layer below for seconds. So the
				// smoothing starts from the rate the layer had before it
				// went quiet (not what that decayed to over the 1.5 s of
				// silence before it counted as quiet, a fifth of it, which
				// gave rooms a layer their links could not carry), or its
				// nominal rate.
				start := ls.quietRate
				if start == 0 {
					start = int64(t.nominalRate(i))
				}
				r = max(start+(inst-start)/4, 1)
			default: // smooth over about two seconds: keyframes make single readings jumpy
				r = max(old+(inst-old)/4, 1)
			}
			ls.rate.Store(r)
			if r > 0 && inst > 0 {
				ls.sendingRate = r
			}
		}
		ls.prevBytes, ls.prevAt = b, now
	}
}

// layerRates returns each layer's bitrate for the allocator: measured, or
// nominal for a layer that has just started; 0 for layers not being sent.
func (t *Track) layerRates() [MaxLayers]int {
	var out [MaxLayers]int
	active := t.activeLayers()
	for i := range t.layers {
		if active&(1<<i) == 0 {
			continue
		}
		if r := t.layers[i].rate.Load(); r > 0 {
			out[i] = int(r)
		} else {
			out[i] = t.nominalRate(i)
		}
	}
	return out
}

// nominalRate is the bitrate assumed for layer l before it is measured.
func (t *Track) nominalRate(l int) int {
	if t.kind == webrtc.RTPCodecTypeAudio {
		return nominalAudioRate
	}
	return nominalRates[l]
}
