package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// LinkStats is one participant's link, both directions, as the media plane
// sees it: the figures the link quality score is computed from. Zero values
// mean "not known".
type LinkStats struct {
	// LastReceived is when the last RTP or RTCP packet came from the
	// participant on either connection (zero: never).
	LastReceived time.Time
	// RTT is the round trip from the subscriber's receiver reports (their
	// LSR and DLSR against our sender reports), else the selected ICE
	// candidate pair's.
	RTT time.Duration
	// LossDown is the fraction lost towards the participant over the last
	// five calls (seconds), from the cumulative counts in its receiver
	// reports on its video down tracks (else audio), the worst track's;
	// the newest report's own fraction until a second report is in. 0..1.
	LossDown float64
	// JitterDown is the interarrival jitter the participant reports.
	JitterDown time.Duration
	// LossUp is the fraction of the participant's media lost on its way to
	// us since the previous call (RFC 3550 A.3, over every published layer).
	LossUp float64
	// JitterUp is the interarrival jitter of its published media as we
	// measure it (RFC 3550 A.8): the largest among its video layers, else
	// its audio.
	JitterUp time.Duration
	// EstimateBps is the subscribing connection's bandwidth estimate.
	EstimateBps int
	// SentBps and RecvBps are the media bitrates sent to and received from
	// the participant since the previous call (payload bytes sent; header
	// and payload bytes received, retransmissions not counted).
	SentBps, RecvBps int
	// Layer is the highest layer served among its video down tracks,
	// -1 if none.
	Layer int
	// LayerReason is the reason of the allocator's last layer decision for
	// it (ReasonBest, ReasonBandwidth...).
	LayerReason string
	// Paused counts its video down tracks paused for lack of bandwidth,
	// of VideoTracks.
	Paused      int
	VideoTracks int
	// NACKs counts the NACK packets and PLIs the PLI and FIR packets the
	// participant sent us (cumulative).
	NACKs, PLIs uint64
	// RetransmittedBytes counts the payload bytes sent again on its NACKs
	// (cumulative).
	RetransmittedBytes uint64
	// Path is how the publishing connection's media travels: "udp", "tcp",
	// "relay-udp", "relay-tcp", or "" before ICE selected a pair.
	Path string
}

// Limits on what the link figures trust.
const (
	// maxReportRTT: a round trip computed from a receiver report above it
	// is a clock or report error, not a link.
	maxReportRTT = 10 * time.Second
	// reportFresh is how long a receiver report's figures stand: longer
	// than a paused room's few seconds between audio reports.
	reportFresh = 5 * time.Second
	// maxDropout and maxMisorder are RFC 3550 A.1's: a sequence number
	// less than maxDropout ahead advances the count, one less than
	// maxMisorder behind is a late packet; anything else is a jump that
	// the next packet confirms as a restart of the sender's sequence.
	maxDropout  = 3000
	maxMisorder = 100
)

// ntpEpochOffset is the seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2_208_988_800

// ntpCompact is the middle 32 bits of t's 64-bit NTP timestamp: the units
// (1/65536 s) of a receiver report's LSR and DLSR.
func ntpCompact(t time.Time) uint32 {
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return uint32(secs<<16 | frac>>16)
}

// reportRTT is RFC 3550 6.4.1's round trip: the report's arrival (now, NTP
// compact) minus the sender report it echoes (lsr) minus the time the
// subscriber held it (dlsr). ok is false without an echoed report, or for a
// figure that is negative or over maxReportRTT. A round trip under the
// 1/65536 s resolution counts as one unit.
func reportRTT(now, lsr, dlsr uint32) (time.Duration, bool) {
	if lsr == 0 {
		return 0, false
	}
	d := int64(int32(now - lsr - dlsr))
	if d < 0 || d > int64(maxReportRTT/time.Second)<<16 {
		return 0, false
	}
	return time.Duration(max(d, 1) * int64(time.Second) >> 16), true
}

// rtpClock is monotonic time now (ns) in units of a clock of rate Hz,
// modulo 2^32, without overflowing for a server up for years.
func rtpClock(now int64, rate uint32) uint32 {
	sec, ns := now/int64(time.Second), now%int64(time.Second)
	return uint32(sec*int64(rate) + ns*int64(rate)/int64(time.Second))
}

// recvStats counts one upstream layer's packets as RFC 3550 A.1, A.3 and
// A.8 do: expected from the extended highest sequence number, received,
// and the interarrival jitter.
type recvStats struct {
	// Touched only by the layer's read loop.
	started     bool
	maxSeq      uint16
	badSeq      uint32 // after a jump, the sequence number that confirms it
	haveTransit bool
	transit     uint32
	jitter16    uint32 // jitter in clock units, times 16 (A.8)

	// Read by LinkStats.
	expected atomic.Uint64
	received atomic.Uint64
	jitter   atomic.Uint32 // clock units
}

// noBadSeq is a badSeq no packet matches.
const noBadSeq = 1<<16 + 1

// restart forgets the sequence of a previous stream (a read loop starts).
// The counters go on.
func (r *recvStats) restart() {
	r.started, r.haveTransit, r.jitter16 = false, false, 0
}

// observe counts a packet with sequence number seq and timestamp ts that
// arrived at arrival (clock units). It does not allocate.
func (r *recvStats) observe(seq uint16, ts, arrival uint32) {
	switch delta := seq - r.maxSeq; {
	case !r.started:
		r.started, r.maxSeq, r.badSeq = true, seq, noBadSeq
		r.expected.Add(1)
	case delta == 0:
		return // a duplicate
	case delta < maxDropout:
		r.maxSeq = seq
		r.expected.Add(uint64(delta)) // a gap counts as expected
	case delta >= 1<<16-maxMisorder:
		// Late (reordered): it was expected when the gap was skipped.
	case uint32(seq) == r.badSeq:
		// A second packet in sequence after a jump: the sender restarted
		// its sequence. The jump is not loss.
		r.maxSeq, r.badSeq = seq, noBadSeq
		r.expected.Add(2)
		r.received.Add(1)
	default:
		// A jump, or a very late packet: not counted unless the next
		// packet follows it.
		r.badSeq = uint32(seq + 1)
		return
	}
	r.received.Add(1)

	transit := arrival - ts
	if r.haveTransit {
		d := int32(transit - r.transit)
		if d < 0 {
			d = -d
		}
		r.jitter16 += uint32(d) - (r.jitter16+8)>>4
		r.jitter.Store(r.jitter16 >> 4)
	}
	r.transit, r.haveTransit = transit, true
}

// downLink is what a subscriber's receiver reports say of one down track.
type downLink struct {
	lost atomic.Uint32 // newest fraction lost, in 1/256
	// The newest report's cumulative count of packets lost and extended
	// highest sequence number received, for the loss over lossWindow.
	totalLost atomic.Uint32
	highest   atomic.Uint32
	jitter    atomic.Uint32 // newest interarrival jitter, clock units
	at        atomic.Int64  // when that report came (monotonic ns), 0 never
	rtxBytes  atomic.Uint64 // payload bytes retransmitted on NACKs
}

// peerLink is a peer's link accounting.
type peerLink struct {
	nacks     atomic.Uint64
	plis      atomic.Uint64
	rtt       atomic.Int64 // newest round trip from a receiver report, ns
	rttAt     atomic.Int64 // when it was measured (monotonic ns), 0 never
	pubRTCPAt atomic.Int64 // when the publisher's last RTCP came

	mu   sync.Mutex // serialises LinkStats; guards what follows
	at   int64      // when the previous call ran, 0 never
	sent map[*DownTrack]uint64
	recv map[*Track][MaxLayers]recvMark
	// reports holds each down track's report counters at the last
	// lossWindow calls, oldest first.
	reports map[*DownTrack][]reportMark
}

// reportMark is a down track's receiver-report counters at one call.
type reportMark struct{ lost, highest uint32 }

// lossWindow is how many calls (seconds) the loss towards the participant
// is measured over: one report's fraction covers about a second, a
// hundred or so packets, too few to tell 3% from 6%.
const lossWindow = 5

// windowLoss is the fraction lost between the oldest and newest marks, and
// whether the reports moved on at all.
func windowLoss(marks []reportMark) (float64, bool) {
	if len(marks) < 2 {
		return 0, false
	}
	first, last := marks[0], marks[len(marks)-1]
	expected := int64(last.highest - first.highest)
	if expected <= 0 || expected > 1<<24 {
		return 0, false
	}
	// TotalLost is 24-bit signed on the wire (duplicates make it go down).
	lost := int64(int32(last.lost<<8)>>8) - int64(int32(first.lost<<8)>>8)
	return min(max(float64(lost)/float64(expected), 0), 1), true
}

// recvMark is an upstream layer's counters at the previous call.
type recvMark struct {
	bytes, expected, received uint64
}

// onReport takes one receiver report block about down track d, received at
// now (monotonic ns) and wall.
func (l *peerLink) onReport(d *DownTrack, r rtcp.ReceptionReport, now int64, wall time.Time) {
	d.link.lost.Store(uint32(r.FractionLost))
	d.link.totalLost.Store(r.TotalLost)
	d.link.highest.Store(r.LastSequenceNumber)
	d.link.jitter.Store(r.Jitter)
	d.link.at.Store(now)
	if rtt, ok := reportRTT(ntpCompact(wall), r.LastSenderReport, r.Delay); ok {
		l.rtt.Store(int64(rtt))
		l.rttAt.Store(now)
	}
}

// collect fills in the figures that come from the peer's down tracks and
// published tracks, measuring rates and upstream loss since its previous
// call. now is monotonic ns.
func (l *peerLink) collect(now int64, downs []*DownTrack, tracks []*Track) LinkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LinkStats{Layer: noLayer}
	elapsed := time.Duration(now - l.at)
	first := l.at == 0
	l.at = now

	// Towards the participant.
	sent := make(map[*DownTrack]uint64, len(downs))
	reports := make(map[*DownTrack][]reportMark, len(downs))
	var sentBytes uint64
	var video, audio struct {
		lost   float64
		jitter time.Duration
		n      int
	}
	for _, d := range downs {
		b := d.bytes.Load()
		sent[d] = b
		sentBytes += b - l.sent[d] // a down track new since the last call counts from 0
		s.RetransmittedBytes += d.link.rtxBytes.Load()
		agg := &audio
		if d.kind == webrtc.RTPCodecTypeVideo {
			agg = &video
			s.Layer = max(s.Layer, d.Layer())
			s.VideoTracks++
			if d.Paused() {
				s.Paused++
			}
		}
		if at := d.link.at.Load(); at != 0 && now-at < int64(reportFresh) {
			agg.n++
			marks := append(l.reports[d], reportMark{lost: d.link.totalLost.Load(), highest: d.link.highest.Load()})
			if len(marks) > lossWindow {
				marks = marks[len(marks)-lossWindow:]
			}
			reports[d] = marks
			lost, ok := windowLoss(marks)
			if !ok {
				lost = float64(d.link.lost.Load()) / 256 // the newest report's, until there are two
			}
			agg.lost = max(agg.lost, lost)
			if rate := d.codec.ClockRate; rate > 0 {
				agg.jitter = max(agg.jitter, time.Duration(uint64(d.link.jitter.Load())*uint64(time.Second)/uint64(rate)))
			}
		}
	}
	l.sent, l.reports = sent, reports
	if video.n == 0 {
		video = audio
	}
	s.LossDown, s.JitterDown = video.lost, video.jitter

	// From the participant.
	recv := make(map[*Track][MaxLayers]recvMark, len(tracks))
	var recvBytes, expected, received uint64
	var jitterVideo, jitterAudio time.Duration
	for _, t := range tracks {
		prev := l.recv[t]
		var marks [MaxLayers]recvMark
		active := t.activeLayers()
		for i := range t.layers {
			ls := &t.layers[i]
			m := recvMark{bytes: ls.bytes.Load(), expected: ls.recv.expected.Load(), received: ls.recv.received.Load()}
			marks[i] = m
			recvBytes += m.bytes - prev[i].bytes
			expected += m.expected - prev[i].expected
			received += m.received - prev[i].received
			if active&(1<<i) == 0 || t.codec.ClockRate == 0 {
				continue
			}
			j := time.Duration(uint64(ls.recv.jitter.Load()) * uint64(time.Second) / uint64(t.codec.ClockRate))
			if t.kind == webrtc.RTPCodecTypeVideo {
				jitterVideo = max(jitterVideo, j)
			} else {
				jitterAudio = max(jitterAudio, j)
			}
		}
		recv[t] = marks
	}
	l.recv = recv
	if expected > received { // duplicates can make received the larger (A.3)
		s.LossUp = float64(expected-received) / float64(expected)
	}
	s.JitterUp = jitterVideo
	if s.JitterUp == 0 {
		s.JitterUp = jitterAudio
	}

	if !first && elapsed > 0 {
		s.SentBps = int(float64(sentBytes) * 8 / elapsed.Seconds())
		s.RecvBps = int(float64(recvBytes) * 8 / elapsed.Seconds())
	}
	return s
}

// LinkStats returns the participant's link figures. Rates and upstream loss
// are over the time since the previous call: call it at a steady pace
// (the monitor does, once a second). It costs a few atomic loads per track
// and takes no lock the forwarding path takes.
func (p *Peer) LinkStats() LinkStats {
	now := p.router.sfu.clock()
	wall := time.Now()
	tracks := p.Tracks()
	s := p.link.collect(now, p.DownTracks(), tracks)

	last := max(p.as.rtcpAt.Load(), p.link.pubRTCPAt.Load())
	for _, t := range tracks {
		for i := range t.layers {
			if t.layers[i].present.Load() {
				last = max(last, t.layers[i].lastPacket.Load())
			}
		}
	}
	if last != 0 {
		s.LastReceived = wall.Add(-time.Duration(now - last))
	}

	if at := p.link.rttAt.Load(); at != 0 && now-at < int64(reportFresh) {
		s.RTT = time.Duration(p.link.rtt.Load())
	} else if st, ok := iceTransport(p.sub).selectedPairStats(); ok {
		s.RTT = time.Duration(st.CurrentRoundTripTime * float64(time.Second))
	} else if st, ok := iceTransport(p.pubPC()).selectedPairStats(); ok {
		s.RTT = time.Duration(st.CurrentRoundTripTime * float64(time.Second))
	}
	s.Path = iceTransport(p.pubPC()).path()
	if s.Path == "" {
		s.Path = iceTransport(p.sub).path()
	}

	s.EstimateBps = p.Estimate()
	p.allocMu.Lock()
	s.LayerReason = p.as.reason
	p.allocMu.Unlock()
	s.NACKs, s.PLIs = p.link.nacks.Load(), p.link.plis.Load()
	return s
}

// iceTransport returns pc's ICE transport once it is connected, nil
// before. (pion's ICETransport reads its gatherer without a lock while the
// first negotiation starts the transport and writes it; once ICE has
// connected, that start is long over.)
func iceTransport(pc *webrtc.PeerConnection) iceView {
	if pc == nil || pc.SCTP() == nil || pc.SCTP().Transport() == nil {
		return iceView{}
	}
	switch pc.ICEConnectionState() {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
	default:
		return iceView{}
	}
	return iceView{pc.SCTP().Transport().ICETransport()}
}

// iceView reads a connection's selected candidate pair.
type iceView struct{ t *webrtc.ICETransport }

func (v iceView) selectedPairStats() (webrtc.ICECandidatePairStats, bool) {
	if v.t == nil {
		return webrtc.ICECandidatePairStats{}, false
	}
	st, ok := v.t.GetSelectedCandidatePairStats()
	return st, ok && st.CurrentRoundTripTime > 0
}

// path names the selected pair's way: "relay-" and its protocol when
// either end is a TURN relay, else its protocol; "" without a pair.
func (v iceView) path() string {
	if v.t == nil {
		return ""
	}
	pair, err := v.t.GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local == nil || pair.Remote == nil {
		return ""
	}
	return pathName(pair.Local.Typ, pair.Remote.Typ, pair.Local.Protocol)
}

func pathName(local, remote webrtc.ICECandidateType, proto webrtc.ICEProtocol) string {
	name := "udp"
	if proto == webrtc.ICEProtocolTCP {
		name = "tcp"
	}
	if local == webrtc.ICECandidateTypeRelay || remote == webrtc.ICECandidateTypeRelay {
		return "relay-" + name
	}
	return name
}

// RequestKeyframes asks, through the usual throttle, for a keyframe of
// every video layer this peer is served and of every video layer it
// publishes (a technician's "request keyframe" on a frozen picture).
func (p *Peer) RequestKeyframes() {
	for _, d := range p.DownTracks() {
		if d.kind != webrtc.RTPCodecTypeVideo {
			continue
		}
		l := d.Layer()
		if l == noLayer {
			l = int(d.target.Load()) // still waiting to start: its keyframe
		}
		d.track.requestKeyframe(l)
	}
	for _, t := range p.Tracks() {
		for _, l := range t.Layers() {
			t.requestKeyframe(l)
		}
	}
}
