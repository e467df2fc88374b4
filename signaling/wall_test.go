package signaling

import (
	"testing"

	"citybridge/sfu"
)

// TestWallLayer: what the host's wall receives of a room that does not
// hold the floor: the layer that fits its tile when on screen, the lowest
// for the active speaker off screen, nothing otherwise; every room at the
// lowest layer while the console has not said what it shows.
func TestWallLayer(t *testing.T) {
	c := &conference{speaker: "speaking"}
	host := &member{wall: wallView{"small": tileLayer(300, 169), "large": tileLayer(700, 394), "huge": tileLayer(1600, 900)}}
	for _, tc := range []struct {
		room string
		want int
	}{
		{"small", sfu.LayerLow},
		{"large", sfu.LayerMid},
		{"huge", sfu.LayerHigh},
		{"speaking", sfu.LayerLow},
		{"elsewhere", sfu.LayerOff},
	} {
		if got := c.wallLayer(host, tc.room); got != tc.want {
			t.Errorf("%s: layer %d, want %d", tc.room, got, tc.want)
		}
	}
	if got := c.wallLayer(&member{}, "elsewhere"); got != sfu.LayerLow {
		t.Errorf("a console that has not said what it shows: layer %d, want the lowest", got)
	}
	for _, tc := range []struct{ w, h, want int }{
		{1, 1, sfu.LayerLow}, {400, 225, sfu.LayerLow}, {401, 200, sfu.LayerMid}, {300, 226, sfu.LayerMid},
		{800, 450, sfu.LayerMid}, {801, 450, sfu.LayerHigh}, {16384, 16384, sfu.LayerHigh},
	} {
		if got := tileLayer(tc.w, tc.h); got != tc.want {
			t.Errorf("tile %dx%d: layer %d, want %d", tc.w, tc.h, got, tc.want)
		}
	}
}
