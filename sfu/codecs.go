package sfu

import (
	"strconv"
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// receiveMTU is the largest RTP packet the read loops accept.
const receiveMTU = 1500

// Payload types we offer. Browsers answer with ours on the subscriber side;
// on the publisher side the browser's own numbers win and the down tracks
// rewrite them.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: webrtc.TypeRTCPFBTransportCC},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
}

type codecSpec struct {
	mime string
	fmtp string
	pt   webrtc.PayloadType
	rtx  webrtc.PayloadType
}

var videoCodecs = []codecSpec{
	{webrtc.MimeTypeVP8, "", 96, 97},
	{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 102, 103},
	{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 104, 105},
	{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 106, 107},
	{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", 108, 109},
}

// AudioLevelURI is the RFC 6464 client-to-mixer audio level extension.
// Publishers' audio carries it (Chromium offers it by default) and feeds
// the active speaker; it is not offered to subscribers, since down tracks
// strip publishers' header extensions.
const AudioLevelURI = sdp.AudioLevelURI

func opusCodec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}
}

func (c codecSpec) params() (video, rtx webrtc.RTPCodecParameters) {
	video = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: c.mime, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: videoFeedback,
		},
		PayloadType: c.pt,
	}
	rtx = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=" + strconv.Itoa(int(c.pt)),
		},
		PayloadType: c.rtx,
	}
	return video, rtx
}

// Video codec choices for Config.VideoCodec.
const (
	VideoCodecAny  = ""     // VP8 and H.264; publishers choose (browsers prefer VP8)
	VideoCodecVP8  = "vp8"  // VP8 only
	VideoCodecH264 = "h264" // H.264 only: for terminals that decode nothing else
)

// videoCodecsFor returns the video codecs registered for a choice; ok is
// false for a choice the SFU does not know.
func videoCodecsFor(choice string) (out []codecSpec, ok bool) {
	var mime string
	switch strings.ToLower(choice) {
	case VideoCodecAny:
		return videoCodecs, true
	case VideoCodecVP8:
		mime = webrtc.MimeTypeVP8
	case VideoCodecH264:
		mime = webrtc.MimeTypeH264
	default:
		return nil, false
	}
	for _, c := range videoCodecs {
		if strings.EqualFold(c.mime, mime) {
			out = append(out, c)
		}
	}
	return out, true
}

func registerCodecs(m *webrtc.MediaEngine, video []codecSpec) error {
	if err := m.RegisterCodec(opusCodec(), webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	for _, c := range video {
		v, rtx := c.params()
		if err := m.RegisterCodec(v, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		if err := m.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}

// apiKit is what a pion API is built from. The SFU builds one API per peer
// connection from a kit, so that pion's own log lines carry the peer's
// conference and bridge.
type apiKit struct {
	media        *webrtc.MediaEngine
	interceptors *interceptor.Registry
}

func (k apiKit) api(se webrtc.SettingEngine, ir *interceptor.Registry) *webrtc.API {
	if ir == nil {
		ir = k.interceptors
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(k.media), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se))
}

// newPublishKit is for peer connections that receive media from a
// publisher: simulcast header extensions, audio levels (for the active
// speaker), NACKs upstream for lost packets, receiver reports, and
// transport-wide congestion feedback so the browser's own bandwidth
// estimate can ramp up to all its layers.
func newPublishKit(video []codecSpec) (apiKit, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, video); err != nil {
		return apiKit{}, err
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, sdp.SDESRepairRTPStreamIDURI} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			return apiKit{}, err
		}
	}
	for _, uri := range []string{sdp.SDESMidURI, AudioLevelURI} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeAudio); err != nil {
			return apiKit{}, err
		}
	}
	ir := &interceptor.Registry{}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return apiKit{}, err
	}
	ir.Add(gen)
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return apiKit{}, err
	}
	ir.Add(rr)
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return apiKit{}, err
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return apiKit{}, err
	}
	tw, err := twcc.NewSenderInterceptor()
	if err != nil {
		return apiKit{}, err
	}
	ir.Add(tw)
	return apiKit{media: m, interceptors: ir}, nil
}

// newSubscribeKit is for peer connections that send media to a subscriber.
// Its interceptors are built per connection (subscribeInterceptors), since
// each connection has its own bandwidth estimator.
func newSubscribeKit(video []codecSpec) (apiKit, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m, video); err != nil {
		return apiKit{}, err
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return apiKit{}, err
		}
	}
	return apiKit{media: m}, nil
}

// subscribeInterceptors builds the interceptors of one subscribing
// connection: sender reports, the congestion controller (GCC, starting at
// start bits per second; onBWE receives it while the connection is built)
// and, outermost, transport-wide sequence numbers on every packet
// (stampFactory), which the controller reads back from the browser's
// feedback. Retransmissions are the down tracks' own (answered from the
// upstream packet cache), so there is no per-subscriber send buffer.
func subscribeInterceptors(start int, onBWE func(cc.BandwidthEstimator)) (*interceptor.Registry, error) {
	ir := &interceptor.Registry{}
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(sr)
	ctrl, err := newCongestionController(start, onBWE)
	if err != nil {
		return nil, err
	}
	ir.Add(ctrl)
	ir.Add(stampFactory{})
	return ir, nil
}

// subscriberCodecs returns the codecs, with our payload types, that a
// subscriber's m-line carries for a publisher's codec: that codec alone (and
// its RTX), since the SFU forwards and never transcodes.
func subscriberCodecs(pub webrtc.RTPCodecParameters) []webrtc.RTPCodecParameters {
	if strings.EqualFold(pub.MimeType, webrtc.MimeTypeOpus) {
		return []webrtc.RTPCodecParameters{opusCodec()}
	}
	var best *codecSpec
	for i := range videoCodecs {
		c := &videoCodecs[i]
		if !strings.EqualFold(c.mime, pub.MimeType) {
			continue
		}
		if best == nil {
			best = c
		}
		if !strings.EqualFold(c.mime, webrtc.MimeTypeH264) {
			break
		}
		pf, cf := fmtpMap(pub.SDPFmtpLine), fmtpMap(c.fmtp)
		if pf["packetization-mode"] == cf["packetization-mode"] && strings.EqualFold(pf["profile-level-id"], cf["profile-level-id"]) {
			best = c
			break
		}
	}
	if best == nil {
		return nil
	}
	v, rtx := best.params()
	return []webrtc.RTPCodecParameters{v, rtx}
}

func fmtpMap(line string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		m[strings.ToLower(k)] = v
	}
	if m["packetization-mode"] == "" {
		m["packetization-mode"] = "0"
	}
	return m
}
