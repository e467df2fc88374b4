package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestSubscriberFeedbackAnswered: a subscriber's RTCP reaches the SFU over
// a real connection and is acted on: a NACK is answered with a
// retransmission and a PLI is counted. (This client has no RTX, so its
// SRTP replay check drops the copy of a packet it already has: the
// server's counters are what tell.)
func TestSubscriberFeedbackAnswered(t *testing.T) {
	checkGoroutines(t)
	s, r := newTestRouter(t, "conf-1", nil)

	sub := newClient(t, r, "room-1")
	var (
		mu        sync.Mutex
		mediaSSRC uint32
		seqs      []uint16
	)
	sub.sub.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if remote.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		for {
			p, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			mediaSSRC = p.SSRC
			seqs = append(seqs, p.SequenceNumber)
			mu.Unlock()
		}
	})
	subscribeVideo(t, r, sub, LayerLow)
	publishSynthetic(t, newClient(t, r, "hub"), "q")

	waitFor(t, 10*time.Second, "30 video packets at the subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seqs) >= 30
	})
	mu.Lock()
	ssrc, nacked := mediaSSRC, seqs[len(seqs)-5]
	mu.Unlock()
	before := s.stats.retransmitted.Load()

	if err := sub.sub.WriteRTCP([]rtcp.Packet{
		&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{nacked})},
		&rtcp.PictureLossIndication{MediaSSRC: ssrc},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the NACK answered and the PLI counted", func() bool {
		st := sub.peer.LinkStats()
		return s.stats.retransmitted.Load() > before && st.NACKs > 0 && st.PLIs > 0
	})
}
