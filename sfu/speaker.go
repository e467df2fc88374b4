package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// Hysteresis of the active speaker, so that it follows the conversation
// and not every breath, laugh or interjection.
const (
	// speakerTakeover is how long another publisher must be the loudest
	// speaking one before it takes over from an active speaker who is still
	// speaking (or has just paused).
	speakerTakeover = 1 * time.Second
	// speakerSilence is how long the active speaker may stay silent (a
	// pause between sentences) before the loudest speaking publisher, or
	// nobody, takes over at once.
	speakerSilence = 1500 * time.Millisecond
)

// speakerLevel is one audible publisher's loudness, as its loudest audio
// track reports it (see levelMeter.level).
type speakerLevel struct {
	publisher string
	level     int
	speaking  bool
}

// speakerDetector chooses the active speaker from the audible publishers'
// levels, with hysteresis. It is a pure function of the levels and times
// (monotonic nanoseconds) it is given.
type speakerDetector struct {
	current        string // "" when nobody speaks
	candidate      string // the loudest speaking publisher, if not current
	candidateSince int64
	quiet          bool // current has not been speaking since quietSince
	quietSince     int64
}

// update takes the levels of every audible publisher at now (one entry
// each) and returns the active speaker and whether it changed:
//   - with no active speaker, the loudest speaking publisher takes over at
//     once;
//   - one who left or is no longer audible loses the floor at once;
//   - another speaking publisher takes over once it has been the loudest
//     for speakerTakeover;
//   - an active speaker silent for speakerSilence gives the floor to the
//     loudest speaking publisher, or to nobody.
func (d *speakerDetector) update(now int64, levels []speakerLevel) (string, bool) {
	loudest := -1
	present, speaking := false, false
	for i, l := range levels {
		if l.publisher == d.current {
			present, speaking = true, l.speaking
		}
		if l.speaking && (loudest < 0 || d.louder(l, levels[loudest])) {
			loudest = i
		}
	}
	next := ""
	if loudest >= 0 {
		next = levels[loudest].publisher
	}
	if speaking {
		d.quiet = false
	} else if !d.quiet {
		d.quiet, d.quietSince = true, now
	}
	if next == d.current || next == "" {
		d.candidate = ""
	} else if next != d.candidate {
		d.candidate, d.candidateSince = next, now
	}
	switch {
	case next == d.current:
		return d.current, false
	case d.current == "" || !present,
		d.quiet && now-d.quietSince >= int64(speakerSilence),
		d.candidate != "" && now-d.candidateSince >= int64(speakerTakeover):
		d.current, d.candidate, d.quiet = next, "", false
		return next, true
	}
	return d.current, false
}

// louder orders speaking publishers: the higher level first; on a tie the
// active speaker, then the pending candidate, then the smaller ID, so that
// the order of the levels never decides.
func (d *speakerDetector) louder(a, b speakerLevel) bool {
	if a.level != b.level {
		return a.level > b.level
	}
	for _, favourite := range []string{d.current, d.candidate} {
		if favourite != "" && (a.publisher == favourite) != (b.publisher == favourite) {
			return a.publisher == favourite
		}
	}
	return a.publisher < b.publisher
}

// publisherLevels returns one speakerLevel per audible publisher of an
// audio track among tracks, its loudest track's (a speaking track before a
// silent one), appending to out. audible nil means every publisher.
func publisherLevels(out []speakerLevel, now int64, tracks []*Track, audible func(string) bool) []speakerLevel {
	for _, t := range tracks {
		if t.kind != webrtc.RTPCodecTypeAudio || (audible != nil && !audible(t.streamID)) {
			continue
		}
		level, speaking := t.audioLevelAt(now)
		l := speakerLevel{publisher: t.streamID, level: level, speaking: speaking}
		merged := false
		for i := range out {
			if out[i].publisher != l.publisher {
				continue
			}
			if (l.speaking && !out[i].speaking) || (l.speaking == out[i].speaking && l.level > out[i].level) {
				out[i] = l
			}
			merged = true
			break
		}
		if !merged {
			out = append(out, l)
		}
	}
	return out
}
