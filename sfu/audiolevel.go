package sfu

import (
	"math"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Audio levels are the RFC 6464 header extension publishers put on their
// audio packets (Chromium does by default): -dBov, 0 the loudest and 127
// silence, and a voice activity flag. The SFU never decodes audio; these
// levels are all it knows of who is talking.
const (
	// voicedLevel is the quietest a packet may be and still count as voice,
	// in -dBov (that is -50 dBov). Chromium, after its noise suppression,
	// sends speech at about -20 to -40 dBov and a quiet room below -60.
	voicedLevel = 50
	// levelWindow is how much recent audio a track's level is measured
	// over, in levelBuckets slices so that the measure keeps no per-packet
	// history and slides in 50 ms steps.
	levelWindow  = 500 * time.Millisecond
	levelBuckets = 10
	levelSlice   = int64(levelWindow / levelBuckets)
	// speakingShare is the percentage of a window's packets that must be
	// voiced for the track to be speaking: speech pauses between words, so
	// it cannot be all of them, while a click or a knock fills far less
	// than 200 ms of the 500.
	speakingShare = 40
	// SilentLevel is the level of a track that sends no audio levels.
	SilentLevel = -127
)

// levelMeter measures one audio track's loudness over the last levelWindow.
// It is a pure function of the packets and times it is given (monotonic
// nanoseconds), so tests drive it with explicit timestamps.
type levelMeter struct {
	slices   [levelBuckets]levelCount
	sawVoice bool // the publisher uses the voice activity flag
}

// levelCount counts the packets that arrived in one levelSlice of time.
type levelCount struct {
	slot      int64  // now / levelSlice of the packets counted
	packets   uint32 // packets carrying a level
	voiced    uint32 // of those, voice at voicedLevel or louder
	sum       uint32 // sum of all their levels, -dBov
	voicedSum uint32 // sum of the voiced packets' levels, -dBov
}

// observe counts one packet that arrived at now with RFC 6464 level (0..127,
// -dBov) and voice flag. Once a publisher has set the flag, packets without
// it are not voice, however loud (its own voice detector said so); a
// publisher that never sets it is judged on levels alone.
func (m *levelMeter) observe(now int64, level uint8, voice bool) {
	level = min(level, 127)
	m.sawVoice = m.sawVoice || voice
	slot := now / levelSlice
	if slot < 0 {
		return // not a time the clock gives
	}
	c := &m.slices[slot%levelBuckets]
	if c.slot != slot {
		*c = levelCount{slot: slot}
	}
	c.packets++
	c.sum += uint32(level)
	if level <= voicedLevel && (voice || !m.sawVoice) {
		c.voiced++
		c.voicedSum += uint32(level)
	}
}

// level returns the loudness at now, in dBov (SilentLevel..0), and whether
// the track is speaking: at least speakingShare percent of the packets of
// the last levelWindow were voiced. The loudness of a speaking track is the
// mean level of its voiced packets, lowered by 10·log10 of their share of
// the window, so that a continuous talker at -30 dBov (-30) outranks one
// heard in half the packets at the same level (-33). Without voiced packets
// it is the mean level of all packets; with no packets, SilentLevel.
func (m *levelMeter) level(now int64) (level int, speaking bool) {
	cur := now / levelSlice
	var all levelCount
	for i := range m.slices {
		c := &m.slices[i]
		if c.packets == 0 || c.slot > cur || cur-c.slot >= levelBuckets {
			continue
		}
		all.packets += c.packets
		all.voiced += c.voiced
		all.sum += c.sum
		all.voicedSum += c.voicedSum
	}
	switch {
	case all.packets == 0:
		return SilentLevel, false
	case all.voiced == 0:
		return -int(math.Round(float64(all.sum) / float64(all.packets))), false
	}
	share := float64(all.voiced) / float64(all.packets)
	l := -float64(all.voicedSum)/float64(all.voiced) + 10*math.Log10(share)
	return max(int(math.Round(l)), SilentLevel), all.voiced*100 >= all.packets*speakingShare
}

// audioLevels is a published audio track's level meter: the track's read
// loop writes it, the router's loop and AudioLevel read it.
type audioLevels struct {
	extID uint8 // negotiated ID of the extension; 0 when the publisher does not send it

	mu    sync.Mutex
	meter levelMeter
}

// audioLevelID returns the ID the publisher's connection negotiated for
// the audio level extension, 0 if it did not.
func audioLevelID(receiver *webrtc.RTPReceiver) uint8 {
	for _, ext := range receiver.GetParameters().HeaderExtensions {
		if ext.URI == AudioLevelURI && ext.ID > 0 && ext.ID < 256 {
			return uint8(ext.ID)
		}
	}
	return 0
}

// observeLevel reads the audio level of one received packet, if it carries
// one. It runs on the read loop, once per audio packet, and must not
// allocate.
func (t *Track) observeLevel(p *rtp.Packet, now int64) {
	if t.levels.extID == 0 {
		return
	}
	raw := p.GetExtension(t.levels.extID)
	var ext rtp.AudioLevelExtension
	if ext.Unmarshal(raw) != nil {
		return
	}
	t.levels.mu.Lock()
	t.levels.meter.observe(now, ext.Level, ext.Voice)
	t.levels.mu.Unlock()
}

// AudioLevel returns the track's loudness over the last half second in
// dBov, from SilentLevel (-127) to 0, and whether its publisher is
// speaking (see levelMeter.level). Video tracks, and audio tracks whose
// publisher sends no RFC 6464 levels, are silent.
func (t *Track) AudioLevel() (level int, speaking bool) {
	return t.audioLevelAt(t.clock())
}

func (t *Track) audioLevelAt(now int64) (int, bool) {
	if t.kind != webrtc.RTPCodecTypeAudio {
		return SilentLevel, false
	}
	t.levels.mu.Lock()
	defer t.levels.mu.Unlock()
	return t.levels.meter.level(now)
}
