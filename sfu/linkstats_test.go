package sfu

import (
	"math"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestLinkStatsRTT: the round trip from a receiver report's LSR and DLSR,
// and the reports that must not give one.
func TestLinkStatsRTT(t *testing.T) {
	const unit = 1 << 16 // NTP compact units per second
	for _, c := range []struct {
		name           string
		now, lsr, dlsr uint32
		want           time.Duration
		ok             bool
	}{
		{"50 ms", 1000*unit + unit/20 + unit/5, 1000 * unit, unit / 5, 50 * time.Millisecond, true},
		{"across the wrap", unit / 8, math.MaxUint32 - unit/8 + 1, 0, 250 * time.Millisecond, true},
		{"below resolution", 5000, 4000, 1000, time.Second / unit, true},
		{"no sender report echoed", 5000, 0, 0, 0, false},
		{"negative", 1000 * unit, 1000 * unit, unit, 0, false},
		{"over 10 s", 1000 * unit, 900 * unit, 0, 0, false},
	} {
		got, ok := reportRTT(c.now, c.lsr, c.dlsr)
		if ok != c.ok || (ok && (got-c.want).Abs() > time.Second/unit) {
			t.Errorf("%s: reportRTT = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
	}

	// NTP compact time: seconds since 1900 in the high half, the fraction
	// in the low half.
	at := time.Unix(1_800_000_000, int64(500*time.Millisecond))
	if got, want := ntpCompact(at), uint32((1_800_000_000+ntpEpochOffset)&0xffff)<<16|0x8000; got != want {
		t.Errorf("ntpCompact = %#x, want %#x", got, want)
	}

	// A report that echoes a sender report sent at sr, held 200 ms by the
	// subscriber and back 260 ms after sr: 60 ms.
	now := int64(0)
	d := newDownTrack(newBareTrack(&now), nil, "video-hub-1", LayerHigh)
	var l peerLink
	sr := time.Unix(1_800_000_000, 123_456_789)
	l.onReport(d, rtcp.ReceptionReport{SSRC: 1, LastSenderReport: ntpCompact(sr), Delay: unit / 5}, 7, sr.Add(260*time.Millisecond))
	if got := time.Duration(l.rtt.Load()); (got-60*time.Millisecond).Abs() > 2*time.Second/unit || l.rttAt.Load() != 7 {
		t.Errorf("RTT from the report = %v (at %d), want 60 ms at 7", got, l.rttAt.Load())
	}
	// A report without LSR leaves the round trip as it was.
	l.onReport(d, rtcp.ReceptionReport{SSRC: 1}, 9, sr.Add(time.Second))
	if l.rttAt.Load() != 7 {
		t.Error("a report without LSR replaced the round trip")
	}
}

// TestLinkStatsLossUp: RFC 3550 A.3 accounting of a published layer's
// sequence numbers: gaps, wrap-around, reordering, duplicates, a restart.
func TestLinkStatsLossUp(t *testing.T) {
	for _, c := range []struct {
		name               string
		seqs               []uint16
		expected, received uint64
	}{
		{"in order", []uint16{10, 11, 12, 13}, 4, 4},
		{"two lost", []uint16{10, 11, 14, 15}, 6, 4},
		{"wrap-around, one lost", []uint16{65534, 65535, 1, 2}, 5, 4},
		{"reordered", []uint16{10, 12, 11, 13}, 4, 4},
		{"reordered across the wrap", []uint16{65535, 1, 0, 2}, 4, 4},
		{"duplicate", []uint16{10, 11, 11, 12}, 3, 3},
		{"sender restarted", []uint16{10, 11, 40000, 40001, 40002}, 5, 5},
		{"one stray packet far off", []uint16{10, 11, 40000, 12, 13}, 4, 4},
	} {
		var r recvStats
		r.restart()
		for i, s := range c.seqs {
			r.observe(s, uint32(i)*3000, uint32(i)*3000)
		}
		if e, g := r.expected.Load(), r.received.Load(); e != c.expected || g != c.received {
			t.Errorf("%s: expected %d received %d, want %d and %d", c.name, e, g, c.expected, c.received)
		}
	}

	// LinkStats: loss over the interval since the previous call.
	now := int64(time.Second)
	tr := newBareTrack(&now)
	tr.addLayer(LayerLow, 1)
	tr.addLayer(LayerHigh, 2)
	var l peerLink
	seq := [MaxLayers]uint16{LayerLow: 65000, LayerHigh: 100}
	send := func(layer, n, lost int) {
		for i := range n {
			if i%(n/max(lost, 1)) != 0 || lost == 0 {
				tr.layers[layer].recv.observe(seq[layer], 0, 0)
			}
			seq[layer]++
		}
	}
	send(LayerLow, 100, 0)
	send(LayerHigh, 100, 0)
	if s := l.collect(now, nil, []*Track{tr}); s.LossUp != 0 {
		t.Errorf("LossUp without loss = %v", s.LossUp)
	}
	// 1000 packets a layer, 10 and 40 of them lost; the low layer wraps.
	now += int64(time.Second)
	send(LayerLow, 1000, 10)
	send(LayerHigh, 1000, 40)
	if s := l.collect(now, nil, []*Track{tr}); math.Abs(s.LossUp-0.025) > 1e-9 {
		t.Errorf("LossUp = %v, want 0.025 (50 of 2000)", s.LossUp)
	}
	now += int64(time.Second)
	send(LayerLow, 500, 0)
	if s := l.collect(now, nil, []*Track{tr}); s.LossUp != 0 {
		t.Errorf("LossUp after a clean second = %v: the previous interval's loss counted again", s.LossUp)
	}
}

// TestLinkStatsLossDown: the loss and jitter the subscriber reports, from
// its video down tracks while their reports are fresh, else its audio.
func TestLinkStatsLossDown(t *testing.T) {
	now := int64(time.Second)
	video := newDownTrack(newBareTrack(&now), nil, "video-hub-1", LayerHigh)
	audio := newDownTrack(newBareAudioTrack("audio-hub-1", "hub", &now), nil, "audio-hub-1", 0)
	other := newDownTrack(newBareTrack(&now), nil, "video-b-1", LayerHigh)
	downs := []*DownTrack{video, audio, other}
	var l peerLink
	wall := time.Now()
	l.onReport(video, rtcp.ReceptionReport{FractionLost: 64, Jitter: 900}, now, wall)     // 25%, 10 ms
	l.onReport(other, rtcp.ReceptionReport{FractionLost: 13, Jitter: 9000}, now, wall)    // 5%, 100 ms
	l.onReport(audio, rtcp.ReceptionReport{FractionLost: 128, Jitter: 48_000}, now, wall) // 50%, 1 s
	s := l.collect(now, downs, nil)
	if s.LossDown != 0.25 || s.JitterDown != 100*time.Millisecond {
		t.Errorf("LossDown %v JitterDown %v; want the video tracks' worst, 0.25 and 100 ms", s.LossDown, s.JitterDown)
	}
	if s.Layer != noLayer || s.Paused != 0 {
		t.Errorf("Layer %d Paused %d before anything was served; want -1 and 0", s.Layer, s.Paused)
	}
	// The video reports go stale (a paused room reports on its audio only).
	now += int64(reportFresh)
	l.onReport(audio, rtcp.ReceptionReport{FractionLost: 128, Jitter: 48_000}, now, wall)
	if s := l.collect(now, downs, nil); s.LossDown != 0.5 || s.JitterDown != time.Second {
		t.Errorf("with stale video reports: LossDown %v JitterDown %v; want the audio's 0.5 and 1 s", s.LossDown, s.JitterDown)
	}
}

// TestLinkStatsSentRate: the bitrate sent is over the interval, and a down
// track that appears between two calls counts from its start.
func TestLinkStatsSentRate(t *testing.T) {
	now := int64(time.Second)
	a := newDownTrack(newBareTrack(&now), nil, "video-a-1", LayerHigh)
	b := newDownTrack(newBareTrack(&now), nil, "video-b-1", LayerHigh)
	var l peerLink
	a.bytes.Store(1_000_000)
	if s := l.collect(now, []*DownTrack{a}, nil); s.SentBps != 0 {
		t.Errorf("first call SentBps = %d, want 0 (no interval yet)", s.SentBps)
	}
	now += int64(2 * time.Second)
	a.bytes.Add(100_000)
	b.bytes.Store(50_000)
	if s := l.collect(now, []*DownTrack{a, b}, nil); s.SentBps != 600_000 {
		t.Errorf("SentBps = %d, want 600000 (150 kB in 2 s)", s.SentBps)
	}
}

// TestLinkStatsObserveDoesNotAllocate: the upstream accounting runs once
// per received packet.
func TestLinkStatsObserveDoesNotAllocate(t *testing.T) {
	var r recvStats
	seq := uint16(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		r.observe(seq, uint32(seq)*2970, rtpClock(int64(seq)*int64(33*time.Millisecond), 90000))
	})
	if allocs != 0 {
		t.Fatalf("counting one packet allocates %.1f times", allocs)
	}
	if r.jitter.Load() > 1 {
		t.Errorf("jitter of a perfectly paced stream = %d clock units", r.jitter.Load())
	}
}

// TestLinkStatsPath names the candidate pair's way.
func TestLinkStatsPath(t *testing.T) {
	host, srflx, relay := webrtc.ICECandidateTypeHost, webrtc.ICECandidateTypeSrflx, webrtc.ICECandidateTypeRelay
	for _, c := range []struct {
		local, remote webrtc.ICECandidateType
		proto         webrtc.ICEProtocol
		want          string
	}{
		{host, srflx, webrtc.ICEProtocolUDP, "udp"},
		{host, host, webrtc.ICEProtocolTCP, "tcp"},
		{host, relay, webrtc.ICEProtocolUDP, "relay-udp"},
		{relay, host, webrtc.ICEProtocolTCP, "relay-tcp"},
	} {
		if got := pathName(c.local, c.remote, c.proto); got != c.want {
			t.Errorf("pathName(%v, %v, %v) = %q, want %q", c.local, c.remote, c.proto, got, c.want)
		}
	}
}

// TestLinkStatsLive: a room receiving a hub's camera over real pion
// connections has a link: media sent to it, a round trip from its receiver
// reports, a UDP path, recent packets; the hub's upload is measured; and
// RequestKeyframes reaches the room's own camera.
func TestLinkStatsLive(t *testing.T) {
	checkGoroutines(t)
	_, r := newTestRouter(t, "conf-linkstats", nil)
	hub := newClient(t, r, "hub")
	room := newClient(t, r, "room")
	room.sub.OnTrack(func(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
		// pion's receiver reports echo our sender reports only when the
		// receiver's RTCP is read (a browser always reads it).
		go func() {
			for {
				if _, _, err := rcv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		drain(tr, 0, nil)
	})
	r.OnTrack(func(p *Peer, tr *Track) {
		if p.ID() == "hub" {
			if _, err := room.peer.Subscribe(tr, LayerHigh); err != nil {
				t.Errorf("subscribe: %v", err)
			}
		}
	})
	var pubs []*sfutest.Publisher
	for _, x := range []struct {
		c    *client
		rids []string
	}{{hub, []string{"f", "h", "q"}}, {room, []string{"q"}}} {
		p, err := sfutest.NewPublisher(x.c.pub, x.c.peer.ID(), x.rids, x.c == hub)
		if err != nil {
			t.Fatal(err)
		}
		x.c.publish()
		p.Start()
		pubs = append(pubs, p)
	}
	t.Cleanup(func() {
		_ = hub.pub.Close()
		_ = room.pub.Close()
		for _, p := range pubs {
			p.Stop()
		}
	})

	var ls LinkStats
	waitFor(t, 20*time.Second, "the room's link stats", func() bool {
		ls = room.peer.LinkStats()
		return ls.SentBps > 0 && ls.RecvBps > 0 && ls.RTT > 0 && room.peer.link.rttAt.Load() != 0 &&
			ls.Path == "udp" && ls.Layer >= 0 && ls.EstimateBps > 0 && ls.LayerReason != ""
	})
	if age := time.Since(ls.LastReceived); age < 0 || age > 2*time.Second {
		t.Errorf("LastReceived %v ago, want within 2 s", age)
	}
	if ls.RTT > time.Second {
		t.Errorf("RTT %v on loopback", ls.RTT)
	}
	if ls.RecvBps <= 0 || ls.EstimateBps <= 0 || ls.LayerReason == "" {
		t.Errorf("room: RecvBps %d EstimateBps %d LayerReason %q; want a camera received, an estimate, a reason",
			ls.RecvBps, ls.EstimateBps, ls.LayerReason)
	}
	hub.peer.LinkStats()
	time.Sleep(time.Second) // the interval the hub's rates and loss are measured over
	hs := hub.peer.LinkStats()
	if hs.RecvBps <= 0 || hs.LossUp > 0.05 || hs.Path != "udp" {
		t.Errorf("hub: RecvBps %d LossUp %v Path %q; want its camera received without loss over UDP", hs.RecvBps, hs.LossUp, hs.Path)
	}

	// Nobody subscribes to the room's camera: only RequestKeyframes asks it
	// for a keyframe.
	// (Asked each poll: the throttle lets one through per interval.)
	before := len(pubs[1].KeyframeRequests("q"))
	waitFor(t, 5*time.Second, "the room's camera asked for a keyframe", func() bool {
		room.peer.RequestKeyframes()
		return len(pubs[1].KeyframeRequests("q")) > before
	})
}

// TestLinkStatsLossDownWindow: the loss towards the participant is the
// share of packets lost over the last five seconds of its receiver
// reports' cumulative counts, steady where each report's own fraction of
// a second swings; wrap-around of the sequence counts is handled.
func TestLinkStatsLossDownWindow(t *testing.T) {
	now := int64(time.Second)
	video := newDownTrack(newBareTrack(&now), nil, "video-hub-1", LayerHigh)
	var l peerLink
	wall := time.Now()
	highest, lost := uint32(0xffff_ff00), uint32(0)
	perSecond := []uint32{2, 9, 3, 8, 3, 7, 5, 2, 9, 5} // out of 100: 5% on average, 2-9% each second
	var got []float64
	for i, n := range perSecond {
		highest += 100
		lost += n
		l.onReport(video, rtcp.ReceptionReport{FractionLost: uint8(n * 256 / 100), TotalLost: lost, LastSequenceNumber: highest}, now, wall)
		s := l.collect(now, []*DownTrack{video}, nil)
		got = append(got, s.LossDown)
		if i == 0 && s.LossDown != float64(uint8(2*256/100))/256 {
			t.Errorf("first report: LossDown %v, want its own fraction", s.LossDown)
		}
		now += int64(time.Second)
	}
	// From the fifth second on, the window holds four intervals.
	for i := 4; i < len(perSecond); i++ {
		var sum uint32
		for _, n := range perSecond[i-3 : i+1] {
			sum += n
		}
		if want := float64(sum) / 400; got[i] != want {
			t.Errorf("second %d: LossDown %v, want %v (the last four intervals)", i, got[i], want)
		}
	}
	if got[9] < 0.04 || got[9] > 0.07 {
		t.Errorf("LossDown %v after ten seconds of 5%% loss", got[9])
	}
}
