package controlplane

import (
	"testing"
	"time"
)

// TestScoreTable: the link-quality formula on a table of links, from a
// perfect fibre to a lost bridge. The expected scores are worked out by
// hand from the formula written in quality.go.
func TestScoreTable(t *testing.T) {
	cases := []struct {
		name  string
		s     LinkSample
		score int
		state string
		cause string
	}{
		{"perfect LAN", LinkSample{RTTMs: 1, Layer: LayerHigh, LayerReason: "best"}, 100, QualityGood, ""},
		{"fibre across the city", LinkSample{RTTMs: 20, JitterDownMs: 2, Layer: LayerHigh}, 99, QualityGood, ""},
		// d = 5+2+10 = 17: Id 0.41; Ie = 95*1/11 = 8.64; R = 84.15 -> 90.3
		{"1% loss", LinkSample{RTTMs: 10, JitterDownMs: 1, LossDown: 0.01, Layer: LayerHigh}, 90, QualityGood, "loss"},
		// Ie = 95*3/13 = 21.92; d = 10.5: Id 0.25; R = 71.03 -> 76.2
		{"3% loss", LinkSample{RTTMs: 1, LossDown: 0.03}, 76, QualityFair, "loss"},
		// Ie = 31.67; R = 61.28 -> 65.8
		{"5% loss, down", LinkSample{RTTMs: 1, LossDown: 0.05}, 66, QualityFair, "loss"},
		{"5% loss, up only", LinkSample{RTTMs: 1, LossUp: 0.05}, 66, QualityFair, "loss"},
		// Ie = 95*8/18 = 42.22; R = 50.73 -> 54.4
		{"8% loss", LinkSample{RTTMs: 1, LossDown: 0.08}, 54, QualityPoor, "loss"},
		// d = 300+10 = 310: Id = 7.44 + 14.6 = 22.04; R = 71.16 -> 76.4
		{"satellite delay", LinkSample{RTTMs: 600}, 76, QualityFair, "rtt"},
		// d = 0.5+160+10 = 170.5: Id 4.09; R 89.1 -> 95.6
		{"bad jitter", LinkSample{RTTMs: 1, JitterDownMs: 80}, 96, QualityGood, "jitter"},
		{"low layer for bandwidth", LinkSample{RTTMs: 1, Layer: LayerLow, LayerReason: "bandwidth"}, 70, QualityFair, "bandwidth"},
		{"mid layer for bandwidth", LinkSample{RTTMs: 1, Layer: LayerMid, LayerReason: "bandwidth"}, 85, QualityGood, "bandwidth"},
		{"low layer pinned", LinkSample{RTTMs: 1, Layer: LayerLow, LayerReason: "pinned"}, 100, QualityGood, ""},
		{"paused", LinkSample{RTTMs: 1, Layer: LayerNone, LayerReason: "paused", Paused: 1, VideoTracks: 1}, 40, QualityPoor, "paused"},
		{"paused, tracks not known", LinkSample{RTTMs: 1, Layer: LayerNone, Paused: 1}, 40, QualityPoor, "paused"},
		{"3 of 116 wall tiles paused", LinkSample{RTTMs: 1, Layer: LayerLow, LayerReason: "limit", Paused: 3, VideoTracks: 116}, 70, QualityFair, "paused"},
		{"freezes", LinkSample{RTTMs: 1, Layer: LayerHigh, Freezes: 2}, 70, QualityFair, "freezes"},
		{"loss worse than the cap", LinkSample{RTTMs: 1, LossDown: 0.08, Layer: LayerLow, LayerReason: "bandwidth"}, 54, QualityPoor, "loss"},
		{"silent 2.9 s", LinkSample{RTTMs: 1, Silent: 2900 * time.Millisecond}, 100, QualityGood, ""},
		{"silent 3 s", LinkSample{RTTMs: 1, Silent: 3 * time.Second}, 0, QualityLost, "silent"},
		{"nonsense figures", LinkSample{RTTMs: -5, LossDown: 7, JitterUpMs: -1}, 7, QualityPoor, "loss"},
	}
	for _, c := range cases {
		score, state, cause := Score(c.s)
		if score != c.score || state != c.state || cause != c.cause {
			t.Errorf("%s: got score %d %s (%q), want %d %s (%q)", c.name, score, state, cause, c.score, c.state, c.cause)
		}
	}
}

func TestStateBoundaries(t *testing.T) {
	for score, want := range map[int]string{100: QualityGood, 80: QualityGood, 79: QualityFair, 60: QualityFair, 59: QualityPoor, 0: QualityPoor} {
		if got := StateOf(score); got != want {
			t.Errorf("StateOf(%d) = %s, want %s", score, got, want)
		}
	}
}
