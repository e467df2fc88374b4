package sfu

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const ms = int64(time.Millisecond)

// audioRun is audio sent at one level, a packet every 20 ms from from
// (inclusive) to to (exclusive), in milliseconds.
type audioRun struct {
	from, to int64
	level    uint8 // -dBov
	voice    bool
}

// feed gives m the packets of runs that arrived by at (ms), in time order.
func feed(m *levelMeter, at int64, runs ...audioRun) {
	for _, r := range runs {
		for t := r.from; t < r.to && t <= at; t += 20 {
			m.observe(t*ms, r.level, r.voice)
		}
	}
}

func TestLevelMeter(t *testing.T) {
	// Speech that is voiced 60 ms in every 100 (-30 dBov), room noise in
	// between (-70 dBov).
	var pauses []audioRun
	for t := int64(0); t < 1000; t += 100 {
		pauses = append(pauses, audioRun{t, t + 60, 30, true}, audioRun{t + 60, t + 100, 70, true})
	}
	cases := []struct {
		name     string
		runs     []audioRun
		at       int64 // ms
		level    int
		speaking bool
	}{
		{"no packets", nil, 990, SilentLevel, false},
		{"continuous speech", []audioRun{{0, 1000, 30, true}}, 990, -30, true},
		{"speech with pauses: 60% voiced, 10·log10(0.6) below", pauses, 990, -32, true},
		{"steady room noise", []audioRun{{0, 1000, 60, true}}, 990, -60, false},
		{"a knock among silence: loud, not speaking", []audioRun{{0, 600, 127, false}, {600, 700, 10, true}, {700, 1000, 127, false}}, 990, -17, false},
		{"the last 40% of the window voiced", []audioRun{{0, 1000, 30, true}, {1000, 2000, 127, false}}, 1290, -34, true},
		{"the last 20% voiced", []audioRun{{0, 1000, 30, true}, {1000, 2000, 127, false}}, 1390, -37, false},
		{"packets stopped (DTX, track gone)", []audioRun{{0, 1000, 30, true}}, 1600, SilentLevel, false},
		{"voice flag cleared: not voice however loud", []audioRun{{0, 500, 30, true}, {500, 1500, 30, false}}, 1490, -30, false},
		{"a publisher that never sets the flag", []audioRun{{0, 1000, 30, false}}, 990, -30, true},
		{"digital silence", []audioRun{{0, 1000, 127, false}}, 990, SilentLevel, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m levelMeter
			feed(&m, c.at, c.runs...)
			level, speaking := m.level(c.at * ms)
			if level != c.level || speaking != c.speaking {
				t.Errorf("level(%d ms) = %d, %v; want %d, %v", c.at, level, speaking, c.level, c.speaking)
			}
		})
	}
}

// talk is one publisher speaking at level dBov over [from, to) ms.
type talk struct {
	who      string
	from, to int64
	level    int
}

type change struct {
	at  int64 // ms
	who string
}

// TestSpeakerDetector drives the detector with a refresh every 250 ms, as
// the router does, and checks every change of active speaker.
func TestSpeakerDetector(t *testing.T) {
	cases := []struct {
		name  string
		talks []talk
		gone  map[string]int64 // publisher -> when it leaves or is muted (ms)
		end   int64
		want  []change
	}{
		{
			name:  "the first speaker at once",
			talks: []talk{{"a", 500, 5000, -30}},
			end:   3000,
			want:  []change{{500, "a"}},
		},
		{
			name:  "a louder newcomer takes over after 1 s",
			talks: []talk{{"a", 0, 5000, -30}, {"b", 1000, 5000, -20}},
			end:   5000,
			want:  []change{{0, "a"}, {2000, "b"}},
		},
		{
			name:  "a louder interjection under 1 s does not",
			talks: []talk{{"a", 0, 5000, -30}, {"b", 1000, 1750, -20}, {"b", 2000, 2750, -20}},
			end:   5000,
			want:  []change{{0, "a"}},
		},
		{
			name:  "a quieter speaker never takes over from one still speaking",
			talks: []talk{{"a", 0, 5000, -30}, {"b", 0, 5000, -35}},
			end:   5000,
			want:  []change{{0, "a"}},
		},
		{
			name:  "a pause under 1.5 s keeps the floor",
			talks: []talk{{"a", 0, 2000, -30}, {"a", 3250, 5000, -30}},
			end:   5000,
			want:  []change{{0, "a"}},
		},
		{
			name:  "silent for 1.5 s: nobody",
			talks: []talk{{"a", 0, 2000, -30}},
			end:   5000,
			want:  []change{{0, "a"}, {3500, ""}},
		},
		{
			name:  "silent for 1.5 s: the one now speaking, at once",
			talks: []talk{{"a", 0, 2000, -30}, {"b", 3250, 5000, -40}},
			end:   5000,
			want:  []change{{0, "a"}, {3500, "b"}},
		},
		{
			name:  "a quieter speaker takes over 1 s after the loud one stops",
			talks: []talk{{"a", 0, 2000, -20}, {"b", 0, 5000, -40}},
			end:   5000,
			want:  []change{{0, "a"}, {3000, "b"}},
		},
		{
			name:  "equal levels: the speaker keeps the floor",
			talks: []talk{{"b", 0, 5000, -30}, {"a", 250, 5000, -30}},
			end:   5000,
			want:  []change{{0, "b"}},
		},
		{
			name:  "muted or gone: the floor goes at once",
			talks: []talk{{"a", 0, 5000, -20}, {"b", 0, 5000, -40}},
			gone:  map[string]int64{"a": 1000},
			end:   3000,
			want:  []change{{0, "a"}, {1000, "b"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d speakerDetector
			var got []change
			for now := int64(0); now <= c.end; now += 250 {
				levels := levelsAt(now, c.talks, c.gone)
				if now%500 == 0 { // the order of the levels must not matter
					slices.Reverse(levels)
				}
				if who, changed := d.update(now*ms, levels); changed {
					got = append(got, change{now, who})
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("changes %v, want %v", got, c.want)
			}
		})
	}
}

// levelsAt returns what the router would see at now (ms): every publisher
// present, speaking at its level during its talks, silent otherwise.
func levelsAt(now int64, talks []talk, gone map[string]int64) []speakerLevel {
	var out []speakerLevel
	for _, tk := range talks {
		if at, ok := gone[tk.who]; ok && now >= at {
			continue
		}
		i := slices.IndexFunc(out, func(l speakerLevel) bool { return l.publisher == tk.who })
		if i < 0 {
			out = append(out, speakerLevel{publisher: tk.who, level: SilentLevel})
			i = len(out) - 1
		}
		if now >= tk.from && now < tk.to {
			out[i] = speakerLevel{publisher: tk.who, level: tk.level, speaking: true}
		}
	}
	return out
}

func newBareAudioTrack(id, publisher string, now *int64) *Track {
	tr := newTrack(id, publisher, webrtc.RTPCodecTypeAudio, opusCodec(), &counters{},
		func() int64 { return *now }, 500*time.Millisecond, nil)
	tr.levels.extID = 1
	return tr
}

func audioPkt(seq uint16, level uint8, voice bool) *rtp.Packet {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 99, PayloadType: 111},
		Payload: []byte{0xf8, 0xff, 0xfe}}
	b, err := rtp.AudioLevelExtension{Level: level, Voice: voice}.Marshal()
	if err != nil {
		panic(err)
	}
	if err := p.Header.SetExtension(1, b); err != nil {
		panic(err)
	}
	return p
}

// TestPublisherLevels: one entry per audible publisher, from its loudest
// audio track; video and inaudible publishers left out.
func TestPublisherLevels(t *testing.T) {
	now := int64(0)
	a1 := newBareAudioTrack("audio-a-1", "a", &now)
	a2 := newBareAudioTrack("audio-a-2", "a", &now)
	b := newBareAudioTrack("audio-b-1", "b", &now)
	muted := newBareAudioTrack("audio-m-1", "m", &now)
	video := newBareTrack(&now)
	for i := range 30 {
		now = int64(i) * 20 * ms
		a1.observeLevel(audioPkt(uint16(i), 70, true), now)
		a2.observeLevel(audioPkt(uint16(i), 25, true), now)
		b.observeLevel(audioPkt(uint16(i), 40, true), now)
		muted.observeLevel(audioPkt(uint16(i), 5, true), now)
	}
	if level, speaking := a2.AudioLevel(); level != -25 || !speaking {
		t.Errorf("AudioLevel() = %d, %v; want -25, true", level, speaking)
	}
	if level, speaking := video.AudioLevel(); level != SilentLevel || speaking {
		t.Errorf("a video track's AudioLevel() = %d, %v; want silent", level, speaking)
	}
	got := publisherLevels(nil, now, []*Track{video, a1, muted, b, a2}, func(id string) bool { return id != "m" })
	want := []speakerLevel{{"a", -25, true}, {"b", -40, true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("publisherLevels = %v, want %v", got, want)
	}
}

// TestObserveLevelDoesNotAllocate: reading the level is on the audio read
// path, once per packet.
func TestObserveLevelDoesNotAllocate(t *testing.T) {
	now := int64(0)
	tr := newBareAudioTrack("audio-a-1", "a", &now)
	p := audioPkt(1, 30, true)
	allocs := testing.AllocsPerRun(1000, func() {
		now += 20 * ms
		tr.observeLevel(p, now)
	})
	if allocs != 0 {
		t.Fatalf("reading one packet's audio level allocates %.1f times", allocs)
	}
	if _, speaking := tr.AudioLevel(); !speaking {
		t.Error("a track at -30 dBov is not speaking")
	}
}

// TestActiveSpeaker: three pion publishers send audio levels through the
// SFU. The loudest speaking one becomes the active speaker; a quieter one
// does not take over while it speaks, but does after it goes quiet; then
// nobody; a louder one that is not audible is never chosen until the
// filter goes.
func TestActiveSpeaker(t *testing.T) {
	checkGoroutines(t)
	_, r := newTestRouter(t, "conf-speaker", nil)

	var mu sync.Mutex
	var changes []string
	r.OnActiveSpeaker(func(id string) {
		mu.Lock()
		changes = append(changes, id)
		mu.Unlock()
	})
	r.SetAudible(func(id string) bool { return id != "room-c" })

	mics := map[string]*sfutest.Microphone{}
	for _, id := range []string{"room-a", "room-b", "room-c"} {
		c := newClient(t, r, id)
		m, err := sfutest.NewMicrophone(c.pub, id)
		if err != nil {
			t.Fatal(err)
		}
		c.publish()
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Stop)
		t.Cleanup(func() { _ = c.pub.Close() }) // runs first: unblocks the RTCP reader
		mics[id] = m
	}
	mics["room-c"].SetLevel(-10, true) // the loudest, but muted
	mics["room-a"].SetLevel(-20, true)
	waitFor(t, 15*time.Second, "room-a active", func() bool { return r.ActiveSpeaker() == "room-a" })

	mics["room-b"].SetLevel(-35, true)
	time.Sleep(2 * speakerTakeover)
	if got := r.ActiveSpeaker(); got != "room-a" {
		t.Fatalf("active speaker %q while room-a still speaks louder", got)
	}

	quiet := time.Now()
	mics["room-a"].SetLevel(-127, false)
	waitFor(t, 10*time.Second, "room-b active", func() bool { return r.ActiveSpeaker() == "room-b" })
	if d := time.Since(quiet); d < speakerTakeover {
		t.Errorf("room-b took over %v after room-a went quiet, before the %v hysteresis", d, speakerTakeover)
	} else {
		t.Logf("room-b took over %v after room-a went quiet", d.Round(time.Millisecond))
	}

	quiet = time.Now()
	mics["room-b"].SetLevel(-127, false)
	waitFor(t, 10*time.Second, "nobody active", func() bool { return r.ActiveSpeaker() == "" })
	if d := time.Since(quiet); d < speakerSilence {
		t.Errorf("nobody active %v after room-b went quiet, before the %v hysteresis", d, speakerSilence)
	} else {
		t.Logf("nobody active %v after room-b went quiet", d.Round(time.Millisecond))
	}

	var muted *Track
	for _, tr := range r.Tracks() {
		if tr.PublisherID() == "room-c" {
			muted = tr
		}
	}
	if muted == nil {
		t.Fatal("room-c's audio track not in the router")
	}
	if level, speaking := muted.AudioLevel(); !speaking || level < -12 || level > -8 {
		t.Errorf("room-c's AudioLevel() = %d, %v; want about -10, speaking", level, speaking)
	}
	r.SetAudible(nil)
	waitFor(t, 10*time.Second, "room-c active once audible", func() bool { return r.ActiveSpeaker() == "room-c" })

	mu.Lock()
	defer mu.Unlock()
	if want := []string{"room-a", "room-b", "", "room-c"}; !slices.Equal(changes, want) {
		t.Errorf("OnActiveSpeaker calls %q, want %q", changes, want)
	}
}

// BenchmarkObserveLevel is the audio read path's extra work per packet:
// finding the extension, parsing it, counting it under the meter's lock.
func BenchmarkObserveLevel(b *testing.B) {
	now := int64(0)
	tr := newBareAudioTrack("audio-a-1", "a", &now)
	p := audioPkt(1, 30, true)
	b.ReportAllocs()
	for b.Loop() {
		now += 20 * ms
		tr.observeLevel(p, now)
	}
}
