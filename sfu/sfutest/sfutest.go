// Package sfutest builds synthetic participants out of pion peer
// connections and the media clips in testdata/: a publisher that sends a
// three-layer VP8 simulcast and Opus at real-time pace, a microphone whose
// audio level the test sets, and the plumbing to connect them to a server.
// Tests, benchmarks and the room simulator share it.
package sfutest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// Clips names the test clips: one per simulcast RID, and the Opus clip.
var Clips = map[string]string{
	"q":     "video-180p.ivf",
	"h":     "video-360p.ivf",
	"f":     "video-720p.ivf",
	"audio": "audio.ogg",
}

// temporalPattern is the VP8 temporal layer (TID) of each frame of the
// clips encoded with three temporal layers (testdata/gen.sh), by frame
// index within the clip: Chromium's simulcast pattern. The rooms' layers
// carry them, as a room's Chromium sends them; IVF does not say, so the
// player writes them into the payload descriptor.
var temporalPattern = map[string][]uint8{
	"video-180p.ivf": {0, 2, 1, 2},
	"video-360p.ivf": {0, 2, 1, 2},
}

// TestdataDir finds the repository's testdata/ folder from this source file,
// so tests in any package can reach the clips.
func TestdataDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata")
}

// ClientAPI returns a pion API for synthetic participants. When loopbackOnly
// is set, it gathers and accepts only loopback candidates, so a test never
// sends a packet off the machine.
func ClientAPI(loopbackOnly bool) (*webrtc.API, error) {
	return ClientAPIWith(loopbackOnly, nil)
}

// ClientAPIWith is ClientAPI with a last say on the setting engine (a
// room simulator's own UDP socket, ICE timeouts).
func ClientAPIWith(loopbackOnly bool, edit func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	// VP8 and Opus only, and no RTX: pion retransmits on an RTX stream
	// without the repaired-RID extension, which a simulcast receiver
	// cannot tell from a new layer. Plain NACK retransmission is enough.
	m := &webrtc.MediaEngine{}
	for _, c := range []struct {
		params webrtc.RTPCodecParameters
		kind   webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}},
		}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		}, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
	} {
		if err := m.RegisterCodec(c.params, c.kind); err != nil {
			return nil, err
		}
	}
	// Audio levels, as Chromium sends them (see Microphone).
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		loop := func(ip net.IP) bool { return ip.IsLoopback() }
		se.SetIPFilter(loop)
		se.SetRemoteIPFilter(loop)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	if edit != nil {
		edit(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Publisher sends a camera (VP8 simulcast from the clips) and a microphone
// (Opus) on one peer connection.
type Publisher struct {
	PC     *webrtc.PeerConnection
	video  map[string]*player // by RID
	audio  *player
	sender *webrtc.RTPSender
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pliMu sync.Mutex
	plis  map[string][]time.Time // keyframe requests received, by RID

	// OnKeyframeRequest, if set before Start, is called on each keyframe
	// request (PLI or FIR) received, with the layer's RID.
	OnKeyframeRequest func(rid string)

	// Stamp, if set before Start, may change each video packet's payload
	// before it is sent (the benchmark harness appends its send time).
	Stamp func(payload []byte) []byte
}

// KeyframeRequests returns when each keyframe request (PLI or FIR) for
// layer rid arrived.
func (p *Publisher) KeyframeRequests(rid string) []time.Time {
	p.pliMu.Lock()
	defer p.pliMu.Unlock()
	return append([]time.Time(nil), p.plis[rid]...)
}

// NewPublisher adds the tracks to pc. rids lists the simulcast layers to
// send (e.g. q, h, f for the hub; q, h for a room); audio adds the Opus clip.
func NewPublisher(pc *webrtc.PeerConnection, streamID string, rids []string, audio bool) (*Publisher, error) {
	p := &Publisher{PC: pc, video: map[string]*player{}, plis: map[string][]time.Time{}}
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	for i, rid := range rids {
		tr, err := webrtc.NewTrackLocalStaticRTP(vp8, "camera", streamID, webrtc.WithRTPStreamID(rid))
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if p.sender, err = pc.AddTrack(tr); err != nil {
				return nil, err
			}
		} else if err := p.sender.AddEncoding(tr); err != nil {
			return nil, err
		}
		p.video[rid] = &player{file: filepath.Join(TestdataDir(), Clips[rid]), rid: rid, rtpTrack: tr, ivf: true}
	}
	if audio {
		opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		tr, err := webrtc.NewTrackLocalStaticSample(opus, "microphone", streamID)
		if err != nil {
			return nil, err
		}
		if _, err := pc.AddTrack(tr); err != nil {
			return nil, err
		}
		p.audio = &player{file: filepath.Join(TestdataDir(), Clips["audio"]), sampleTrack: tr}
	}
	return p, nil
}

// Start plays the clips in a loop until Stop; call it once the connection
// is negotiated. A keyframe request for a layer restarts that layer's clip,
// whose first frame is a keyframe.
func (p *Publisher) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	// pion does not stamp the MID and RID header extensions that let the
	// receiver tell simulcast layers apart: the players do it.
	var midID, ridID uint8
	if p.sender == nil { // a microphone only: nothing to stamp
		if p.audio != nil {
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.audio.run(ctx) }()
		}
		return
	}
	for _, ext := range p.sender.GetParameters().HeaderExtensions {
		switch ext.URI {
		case sdp.SDESMidURI:
			midID = uint8(ext.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(ext.ID)
		}
	}
	mid := ""
	for _, tr := range p.PC.GetTransceivers() {
		if tr.Sender() == p.sender {
			mid = tr.Mid()
		}
	}
	for rid, pl := range p.video {
		pl.midID, pl.ridID, pl.mid = midID, ridID, mid
		pl.stamp = p.Stamp
		p.wg.Add(2)
		go func() { defer p.wg.Done(); pl.run(ctx) }()
		go func() { defer p.wg.Done(); p.watchRTCP(rid, pl) }()
	}
	if p.audio != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.audio.run(ctx) }()
	}
}

func (p *Publisher) watchRTCP(rid string, pl *player) {
	for {
		pkts, _, err := p.sender.ReadSimulcastRTCP(rid)
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.pliMu.Lock()
				p.plis[rid] = append(p.plis[rid], time.Now())
				p.pliMu.Unlock()
				if p.OnKeyframeRequest != nil {
					p.OnKeyframeRequest(rid)
				}
				pl.restart()
			}
		}
	}
}

// Hold stops sending simulcast layer rid (a starved browser drops its top
// layer), or with on false resumes it, from the clip's first keyframe.
func (p *Publisher) Hold(rid string, on bool) {
	pl := p.video[rid]
	if pl == nil {
		return
	}
	pl.mu.Lock()
	pl.held = on
	pl.again = pl.again || !on
	pl.mu.Unlock()
}

// Stop ends playback and waits for the players (close the peer connection
// first so the RTCP readers return).
func (p *Publisher) Stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
}

type player struct {
	file        string
	ivf         bool
	sampleTrack *webrtc.TrackLocalStaticSample // audio
	rtpTrack    *webrtc.TrackLocalStaticRTP    // simulcast video layer
	rid, mid    string
	stamp       func([]byte) []byte
	midID       uint8
	ridID       uint8
	pz          rtp.Packetizer
	tl0         uint8 // the TL0PICIDX of the newest base layer frame sent

	mu    sync.Mutex
	again bool
	held  bool // sends nothing (Hold)
}

func (pl *player) isHeld() bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.held
}

func (pl *player) restart() {
	pl.mu.Lock()
	pl.again = true
	pl.mu.Unlock()
}

func (pl *player) takeRestart() bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	r := pl.again
	pl.again = false
	return r
}

// run writes one frame per tick, reopening the clip at its end or when a
// keyframe was asked for.
func (pl *player) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := pl.playOnce(ctx); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errRestart) {
			return
		}
	}
}

var errRestart = errors.New("restart")

func (pl *player) playOnce(ctx context.Context) error {
	f, err := os.Open(pl.file)
	if err != nil {
		return err
	}
	defer f.Close()
	next, frameTime, err := pl.reader(f)
	if err != nil {
		return err
	}
	write := pl.writer(frameTime)
	tick := time.NewTicker(frameTime)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if pl.isHeld() {
			continue
		}
		if pl.takeRestart() {
			return errRestart
		}
		data, err := next()
		if err != nil {
			return err
		}
		if err := write(data); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return err
		}
	}
}

// writer returns the function that sends one frame: as a sample for audio,
// as VP8 RTP packets carrying MID and RID for a simulcast layer.
func (pl *player) writer(frameTime time.Duration) func([]byte) error {
	if pl.rtpTrack == nil {
		return func(b []byte) error {
			return pl.sampleTrack.WriteSample(media.Sample{Data: b, Duration: frameTime})
		}
	}
	// One packetizer for the player's life: a restarted clip must continue
	// the sequence numbers, or the receiver's SRTP replay check drops it.
	if pl.pz == nil {
		pl.pz = rtp.NewPacketizer(1200, 0, 0, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	}
	pz := pl.pz
	ticks := uint32(frameTime.Seconds() * 90000)
	tids := temporalPattern[filepath.Base(pl.file)]
	frame := 0 // index in the clip, which starts over at its first keyframe
	return func(b []byte) error {
		var tid uint8
		if tids != nil {
			tid = tids[frame%len(tids)]
			if tid == 0 && frame > 0 {
				pl.tl0++
			}
		}
		sync := frame%4 == 1 || frame%4 == 2 // these frames refer to the base layer only
		frame++
		for _, pkt := range pz.Packetize(b, ticks) {
			if tids != nil {
				pkt.Payload = withTID(pkt.Payload, pl.tl0, tid, sync)
			}
			if pl.midID != 0 {
				if err := pkt.Header.SetExtension(pl.midID, []byte(pl.mid)); err != nil {
					return err
				}
			}
			if pl.ridID != 0 {
				if err := pkt.Header.SetExtension(pl.ridID, []byte(pl.rid)); err != nil {
					return err
				}
			}
			if pl.stamp != nil {
				pkt.Payload = pl.stamp(pkt.Payload)
			}
			if err := pl.rtpTrack.WriteRTP(pkt); err != nil {
				return err
			}
		}
		return nil
	}
}

func (pl *player) reader(f io.Reader) (next func() ([]byte, error), frameTime time.Duration, err error) {
	if pl.ivf {
		r, h, err := ivfreader.NewWith(f)
		if err != nil {
			return nil, 0, err
		}
		frameTime = time.Duration(float64(time.Second) * float64(h.TimebaseNumerator) / float64(h.TimebaseDenominator))
		return func() ([]byte, error) {
			b, _, err := r.ParseNextFrame()
			return b, err
		}, frameTime, nil
	}
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return nil, 0, err
	}
	return func() ([]byte, error) {
		for {
			b, _, err := r.ParseNextPage()
			if err != nil || !bytes.HasPrefix(b, []byte("Opus")) { // skip OpusHead and OpusTags
				return b, err
			}
		}
	}, 20 * time.Millisecond, nil
}

// withTID returns a VP8 payload of pion's payloader (a 4-byte descriptor:
// X, I with a 15-bit picture ID) with a TL0PICIDX and a TID byte added, as
// Chromium's simulcast sends them (RFC 7741 section 4.2). Other payloads
// are returned as they are.
func withTID(payload []byte, tl0, tid uint8, sync bool) []byte {
	if len(payload) < 4 || payload[0]&0x80 == 0 || payload[1] != 0x80 || payload[2]&0x80 == 0 {
		return payload
	}
	t := tid << 6
	if sync {
		t |= 0x20
	}
	out := make([]byte, 0, len(payload)+2)
	out = append(out, payload[0], 0xe0, payload[2], payload[3], tl0, t)
	return append(out, payload[4:]...)
}
