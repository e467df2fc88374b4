package sfu

import "time"

// NTPToTime converts a 32.32 fixed-point NTP timestamp to a time
// (ntpEpochOffset: linkstats.go).
func NTPToTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - ntpEpochOffset
	frac := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(secs, frac)
}

// SenderTime says when, by the publisher's own clock, the media of RTP
// timestamp ts on layer l was sampled: the layer's newest RTCP sender
// report maps the RTP clock to the publisher's NTP clock. The publisher's
// tracks share that clock, so their sender times put its audio and video
// in sync (what a receiver's lip sync relies on). ok is false until the
// layer has sent a report.
func (t *Track) SenderTime(l int, ts uint32) (time.Time, bool) {
	if l < 0 || l >= MaxLayers || t.codec.ClockRate == 0 {
		return time.Time{}, false
	}
	sr := t.layers[l].sr.Load()
	if sr == nil {
		return time.Time{}, false
	}
	d := time.Duration(int64(int32(ts-sr.rtp)) * int64(time.Second) / int64(t.codec.ClockRate))
	return NTPToTime(sr.ntp).Add(d), true
}
