package sfu

import (
	"testing"
	"time"
)

// TestLayerRateRestartsFromItsRate: a 2 Mbit/s layer goes quiet (the
// publisher's machine starved its encoder) and comes back with a keyframe
// of 150 kB. Its rate does not read as the 6.8 Mbit/s of that first quarter
// second, which kept rooms with megabits to spare off the layer for
// seconds, nor as what it had decayed to during the silence, which gave a
// 600 kbit room the 2 Mbit/s layer; it starts from the 2 Mbit/s it had.
// A layer that sends every other quarter second reads its average rate:
// a gap is not a restart.
func TestLayerRateRestartsFromItsRate(t *testing.T) {
	now := int64(0)
	tr := newBareTrack(&now)
	tr.addLayer(LayerHigh, 1234)
	ls := &tr.layers[LayerHigh]
	const tick = 250 * time.Millisecond
	step := func(bytes uint64) {
		now += int64(tick)
		if bytes > 0 {
			ls.bytes.Add(bytes)
			ls.lastPacket.Store(now)
		}
		tr.updateRates(now)
	}
	const perTick = 2_000_000 / 8 / 4 // 2 Mbit/s
	step(perTick)
	if r := tr.layerRates()[LayerHigh]; r <= 0 {
		t.Fatalf("rate %d after the first reading", r)
	}
	for range 40 {
		step(perTick)
	}
	steady := tr.layerRates()[LayerHigh]
	if steady < 1_900_000 || steady > 2_100_000 {
		t.Fatalf("steady rate %d, want about 2 Mbit/s", steady)
	}
	for range 8 { // 2 s quiet: longer than layerIdle
		step(0)
	}
	if r := tr.layerRates()[LayerHigh]; r != 0 {
		t.Fatalf("rate %d after 2 s without packets, want 0 (not sent)", r)
	}
	step(150_000 + perTick) // back, with a keyframe
	switch r := tr.layerRates()[LayerHigh]; {
	case r > 3_500_000:
		t.Errorf("rate %d right after the layer came back with a keyframe, want it to start from its 2 Mbit/s (at most 3.5 Mbit/s)", r)
	case r < 2_500_000: // 2 Mbit/s plus a quarter of the 4.8 Mbit/s more the reading says
		t.Errorf("rate %d right after the layer came back, want it to start from its 2 Mbit/s, not from what it decayed to while quiet (at least 2.5 Mbit/s)", r)
	}
	for range 12 {
		step(perTick)
	}
	if r := tr.layerRates()[LayerHigh]; r < 1_900_000 || r > 2_200_000 {
		t.Errorf("rate %d three seconds later, want about 2 Mbit/s", r)
	}

	// Every other quarter second (a starved encoder at a few frames a
	// second): the average, 1 Mbit/s, not the 2 of the readings with data.
	for k := range 40 {
		if k%2 == 0 {
			step(perTick)
		} else {
			step(0)
		}
	}
	if r := tr.layerRates()[LayerHigh]; r < 700_000 || r > 1_400_000 {
		t.Errorf("rate %d for a layer sending 2 Mbit/s half the time, want about 1 Mbit/s", r)
	}
}
