package sfutest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ErrNoAudioLevel is returned by Microphone.Start when the connection did
// not negotiate the RFC 6464 audio level extension.
var ErrNoAudioLevel = errors.New("sfutest: audio level extension not negotiated")

// opusSilence is an Opus frame of 20 ms of silence (TOC 0xf8, CELT
// fullband): something a decoder accepts, where only the level matters.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// Microphone sends Opus-like audio: a packet every 20 ms carrying the RFC
// 6464 audio level extension at the level the test sets, as Chromium marks
// its own audio. The payload is a silent Opus frame; an SFU never decodes
// it, it reads the level.
type Microphone struct {
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	level  atomic.Uint32 // the extension's byte: V flag and -dBov
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMicrophone adds a microphone track to pc, silent until SetLevel.
func NewMicrophone(pc *webrtc.PeerConnection, streamID string) (*Microphone, error) {
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	tr, err := webrtc.NewTrackLocalStaticRTP(opus, "microphone", streamID)
	if err != nil {
		return nil, err
	}
	sender, err := pc.AddTrack(tr)
	if err != nil {
		return nil, err
	}
	m := &Microphone{track: tr, sender: sender}
	m.SetLevel(-127, false)
	return m, nil
}

// SetLevel sets the level of the packets sent from now on, in dBov from
// -127 (silence) to 0 (the loudest), and their voice activity flag.
func (m *Microphone) SetLevel(dBov int, voice bool) {
	b := uint32(min(max(-dBov, 0), 127))
	if voice {
		b |= 0x80
	}
	m.level.Store(b)
}

// Start sends packets until Stop; call it once the connection is
// negotiated.
func (m *Microphone) Start() error {
	var id uint8
	for _, ext := range m.sender.GetParameters().HeaderExtensions {
		if ext.URI == sdp.AudioLevelURI {
			id = uint8(ext.ID)
		}
	}
	if id == 0 {
		return ErrNoAudioLevel
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.run(ctx, id) }()
	go func() {
		defer m.wg.Done()
		for { // the interceptors see RTCP only when it is read
			if _, _, err := m.sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	return nil
}

func (m *Microphone) run(ctx context.Context, id uint8) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	p := rtp.Packet{Header: rtp.Header{Version: 2}, Payload: opusSilence}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.SequenceNumber++
		p.Timestamp += 960
		if err := p.Header.SetExtension(id, []byte{byte(m.level.Load())}); err != nil {
			return
		}
		_ = m.track.WriteRTP(&p) // fails only while closing
	}
}

// Stop ends the stream and waits for it (close the peer connection first
// so the RTCP reader returns).
func (m *Microphone) Stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
}
