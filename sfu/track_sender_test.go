package sfu

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestSenderTime: an RTP timestamp maps to the publisher's clock through
// the layer's newest sender report, before and after the report's own
// timestamp and across the RTP clock's wrap; nothing before a report.
func TestSenderTime(t *testing.T) {
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000}}
	tr := newTrack("a", "hub", webrtc.RTPCodecTypeAudio, codec, nil, nil, time.Second, nil)
	if _, ok := tr.SenderTime(0, 1); ok {
		t.Fatal("a sender time before any sender report")
	}
	at := time.Date(2026, 12, 6, 9, 0, 0, 250_000_000, time.UTC)
	ntp := uint64(at.Unix()+ntpEpochOffset)<<32 | uint64(at.Nanosecond())<<32/1e9
	tr.onSenderReport(0, ntp, 4_294_000_000) // 967 296 ticks before the wrap
	cases := []struct {
		ts   uint32
		want time.Duration
	}{
		{4_294_000_000, 0},
		{4_294_048_000, time.Second},
		{4_293_976_000, -500 * time.Millisecond},
		{48_000, 21_152 * time.Millisecond}, // past the wrap: 967 296 + 48 000 ticks on
	}
	for _, c := range cases {
		got, ok := tr.SenderTime(0, c.ts)
		if !ok || got.Sub(at).Round(time.Millisecond) != c.want {
			t.Errorf("timestamp %d: %v (%v), want %v after the report", c.ts, got.Sub(at), ok, c.want)
		}
	}
}
