package controlplane

import (
	"math"
	"time"
)

// Link quality, defined once (docs/QUALITY.md says the same in words).
//
// Every second the monitor takes a LinkSample per joined bridge and turns it
// into a score from 0 to 100 and a state:
//
//	good  score >= 80
//	fair  score >= 60
//	poor  score <  60
//	lost  nothing received from the bridge for LostAfter (3 s), whatever
//	      the score
//
// The score is an E-model (ITU-T G.107) transmission rating R, computed from
// the worse direction of the link, scaled so that a perfect link is 100:
//
//	d    = RTT/2 + 2·jitter + 10 ms                  one-way delay with a jitter buffer
//	Id   = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)   delay impairment (G.107's simplified form)
//	Ie   = 95·p / (p + Bpl), Bpl = 10                loss impairment, p = loss in %
//	R    = 93.2 − Id − Ie
//	score = clamp(100·R/93.2, 0, 100)
//
// Bpl = 10 is the packet-loss robustness of a video call with
// retransmissions and concealment: 1% loss costs 9 points, 5% costs 34 (a
// fair link), 10% costs 51 (poor). H is the step function.
//
// The score is then capped by what the room actually sees:
//
//	all its video paused for bandwidth     at most 40 (poor)
//	some of its video paused (the hub's    at most 70 (fair)
//	wall of 116 small pictures)
//	low layer because of bandwidth         at most 70 (fair)
//	middle layer because of bandwidth      at most 85
//	a freeze reported in the last sample   at most 70 (fair)
//
// A layer chosen by a technician's pin, or the only layer the publisher
// sends, does not cap the score: the link is not to blame.

// Quality states.
const (
	QualityGood = "good"
	QualityFair = "fair"
	QualityPoor = "poor"
	QualityLost = "lost"
)

// LostAfter is how long a joined bridge may send nothing before it is lost.
const LostAfter = 3 * time.Second

// lossRobustness is Bpl in the formula above.
const lossRobustness = 10.0

// Layers as the monitor names them (the SFU's layer indexes).
const (
	LayerNone = -1 // no video being served
	LayerLow  = 0
	LayerMid  = 1
	LayerHigh = 2
)

// LinkSample is one second of one bridge's link, both directions, as the
// media plane and the terminal report it. Zero values mean "not known".
type LinkSample struct {
	At time.Time `json:"at"`
	// Silent is how long nothing has been received from the bridge (RTP or
	// RTCP on either connection).
	Silent time.Duration `json:"silent_ns"`

	RTTMs        float64 `json:"rtt_ms"`         // round trip, from RTCP (or ICE)
	LossDown     float64 `json:"loss_down"`      // fraction lost towards the room (its receiver reports), 0..1
	LossUp       float64 `json:"loss_up"`        // fraction lost from the room (our sequence accounting), 0..1
	JitterDownMs float64 `json:"jitter_down_ms"` // interarrival jitter at the room
	JitterUpMs   float64 `json:"jitter_up_ms"`   // interarrival jitter at the server
	EstimateBps  int     `json:"estimate_bps"`   // outgoing bandwidth estimate (GCC)
	SentBps      int     `json:"sent_bps"`       // bitrate sent to the room
	RecvBps      int     `json:"recv_bps"`       // bitrate received from the room

	Layer       int    `json:"layer"`        // highest video layer served (LayerNone: none)
	LayerReason string `json:"layer_reason"` // the allocator's reason: best, bandwidth, paused, pinned, limit
	Paused      int    `json:"paused"`       // video tracks paused for lack of bandwidth
	VideoTracks int    `json:"video_tracks"` // video tracks it receives (0: not known)

	NACKs          uint64 `json:"nacks"`           // NACKs received from the room (cumulative)
	PLIs           uint64 `json:"plis"`            // PLIs and FIRs received from the room (cumulative)
	RetransmittedB uint64 `json:"retransmitted_b"` // bytes sent again on its NACKs (cumulative)

	Path string `json:"path"` // udp, tcp, relay-udp, relay-tcp, relay-tls

	// From the terminal's own getStats, sent over signaling.
	DecodedFPS float64 `json:"decoded_fps"`
	Freezes    int     `json:"freezes"` // freezes since the terminal's previous report
	Width      int     `json:"width"`
	Height     int     `json:"height"`
	Camera     *bool   `json:"camera,omitempty"`     // the terminal has a usable camera (nil: not said)
	Microphone *bool   `json:"microphone,omitempty"` // and a microphone
}

// Score returns the sample's score and state, and the main cause of a
// score below 100 ("" for a perfect link): "loss", "rtt", "jitter",
// "bandwidth", "paused", "freezes" or "silent".
func Score(s LinkSample) (score int, state, cause string) {
	if s.Silent >= LostAfter {
		return 0, QualityLost, "silent"
	}
	loss := 100 * math.Max(s.LossDown, s.LossUp)
	loss = math.Min(math.Max(loss, 0), 100)
	rtt := math.Max(s.RTTMs, 0)
	jitter := math.Max(math.Max(s.JitterDownMs, s.JitterUpMs), 0)
	d := rtt/2 + 2*jitter + 10
	ie := 95 * loss / (loss + lossRobustness)
	r := 93.2 - delayImpairment(d) - ie
	f := math.Min(math.Max(100*r/93.2, 0), 100)

	// The main cause is whichever impairment cost most: loss, or the part
	// of the delay impairment that the RTT or the jitter adds.
	byRTT := delayImpairment(d) - delayImpairment(d-rtt/2)
	byJitter := delayImpairment(d) - delayImpairment(d-2*jitter)
	switch {
	case ie >= byRTT && ie >= byJitter && ie >= 1:
		cause = "loss"
	case byRTT >= byJitter && byRTT >= 1:
		cause = "rtt"
	case byJitter >= 1:
		cause = "jitter"
	}
	capTo := func(limit float64, why string) {
		if f > limit {
			f, cause = limit, why
		}
	}
	if s.LayerReason == "bandwidth" {
		switch s.Layer {
		case LayerLow:
			capTo(70, "bandwidth")
		case LayerMid:
			capTo(85, "bandwidth")
		}
	}
	if s.Freezes > 0 {
		capTo(70, "freezes")
	}
	switch {
	case s.Paused > 0 && s.Paused < s.VideoTracks:
		capTo(70, "paused")
	case s.Paused > 0 || s.LayerReason == "paused":
		capTo(40, "paused")
	}
	score = int(math.Round(f))
	return score, StateOf(score), cause
}

// delayImpairment is G.107's Id for a one-way delay of d ms.
func delayImpairment(d float64) float64 {
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	return id
}

// StateOf maps a score to good, fair or poor.
func StateOf(score int) string {
	switch {
	case score >= 80:
		return QualityGood
	case score >= 60:
		return QualityFair
	}
	return QualityPoor
}
