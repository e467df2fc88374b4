package sfu

import (
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestVideoCodecChoice: a deployment can restrict video to VP8 or to
// H.264 (the SFU never transcodes); anything else is refused.
func TestVideoCodecChoice(t *testing.T) {
	for _, c := range []struct {
		choice string
		want   []string
	}{
		{VideoCodecAny, []string{webrtc.MimeTypeVP8, webrtc.MimeTypeH264}},
		{VideoCodecVP8, []string{webrtc.MimeTypeVP8}},
		{"H264", []string{webrtc.MimeTypeH264}},
	} {
		specs, ok := videoCodecsFor(c.choice)
		if !ok {
			t.Fatalf("%q refused", c.choice)
		}
		seen := map[string]bool{}
		for _, s := range specs {
			seen[s.mime] = true
		}
		if len(seen) != len(c.want) {
			t.Errorf("%q registers %v, want %v", c.choice, seen, c.want)
		}
		for _, m := range c.want {
			if !seen[m] {
				t.Errorf("%q does not register %s", c.choice, m)
			}
		}
	}
	if _, ok := videoCodecsFor("av1"); ok {
		t.Error("av1 accepted")
	}
	m := &webrtc.MediaEngine{}
	h264, _ := videoCodecsFor(VideoCodecH264)
	if err := registerCodecs(m, h264); err != nil {
		t.Fatal(err)
	}
	if sdp := strings.ToLower(mustOfferVideo(t, m)); strings.Contains(sdp, "vp8") || !strings.Contains(sdp, "h264") {
		t.Errorf("an H.264-only engine offers:\n%s", sdp)
	}
}

// mustOfferVideo returns the SDP of an offer with one video transceiver
// from a peer connection built on m.
func mustOfferVideo(t *testing.T, m *webrtc.MediaEngine) string {
	t.Helper()
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}
