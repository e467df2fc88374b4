package record

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The minutes video's picture: a 1280x720 canvas at 30 frames a second.
// The hub's camera fills it; while a room holds the floor the hub takes
// the left half and the room's camera the right; while the screen is
// shared it fills the canvas with the cameras small in the top right
// corner. A caption line at the bottom names the conference, the date and
// who holds the floor; gaps in the recording are a black slate.
const (
	MinutesWidth  = 1280
	MinutesHeight = 720
	MinutesFPS    = 30
)

// MinutesSpec is what the caption says.
type MinutesSpec struct {
	Title string
	// Names maps a bridge ID to the name the caption gives it; a bridge
	// without one is named by its ID.
	Names map[string]string
	// Location is the time zone of the caption's date (nil: UTC).
	Location *time.Location
	// From and To, when set (both), limit the video to that part of the
	// meeting on the wall clock (the manifest's times, as the segments
	// are placed): what was recorded in [From, To), with slates only for
	// the gaps inside it. Zero: the whole recording.
	From, To time.Time
}

// Whole reports whether spec asks for the whole recording (no range).
func (s MinutesSpec) Whole() bool { return s.From.IsZero() && s.To.IsZero() }

// MinutesPlan is one render: ffmpeg's arguments for the inputs, the
// filter graph and the streams (the caller adds its global options and
// the output), the caption texts to write into the work directory as
// CaptionFile(i), and the video's length.
type MinutesPlan struct {
	Args     []string
	Captions []string
	Duration time.Duration
	Segments int // how many of the manifest's segments it shows
}

// CaptionFile is the file name the filter graph reads caption i from.
func CaptionFile(i int) string { return fmt.Sprintf("caption-%d.txt", i) }

// ErrNothingRecorded: a manifest without a segment to show.
var ErrNothingRecorded = errors.New("record: nothing recorded to render")

// RangeError: a MinutesSpec's range with nothing recorded in it.
// RecordedFrom and RecordedTo are what the recording covers (its first
// run's start to its last run's end).
type RangeError struct {
	From, To, RecordedFrom, RecordedTo time.Time
}

func (e *RangeError) Error() string {
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	return fmt.Sprintf("nothing recorded between %s and %s: the recording runs from %s to %s",
		f(e.From), f(e.To), f(e.RecordedFrom), f(e.RecordedTo))
}

// Slate texts.
const (
	SlateInterrupted = "connection interrupted"
	SlatePaused      = "recording paused"
)

// pauseSlate is how long a pause between two runs a person stopped and
// started shows: the minutes do not hold the whole break.
const pauseSlate = 3 * time.Second

// senderSanity: a segment whose sender time disagrees with the rest of
// its publisher's by more than this (a clock that jumped) is placed by
// its arrival instead.
const senderSanity = time.Second

// box is a place on the canvas.
type box struct{ x, y, w, h int }

var (
	boxFull   = box{0, 0, MinutesWidth, MinutesHeight}
	boxLeft   = box{0, MinutesHeight / 4, MinutesWidth / 2, MinutesHeight / 2}
	boxRight  = box{MinutesWidth / 2, MinutesHeight / 4, MinutesWidth / 2, MinutesHeight / 2}
	boxInset  = box{MinutesWidth - 328, 8, 320, 180}
	boxInset2 = box{MinutesWidth - 328, 196, 320, 180}
)

// span is one stretch of the output: a run's wall-clock interval shown
// from out on, or a slate.
type span struct {
	from, to time.Time
	out      time.Duration
	slate    string
	cut      bool // its start cut by the range: sound begun before it enters
}

// placed is a segment on the wall clock: from its placed start for its
// media duration.
type placed struct {
	seg      Segment
	from, to time.Time
}

// piece is part of a video segment shown in a box, over [from, to) of
// the output.
type piece struct {
	seg      Segment
	skip     time.Duration // into the segment
	from, to time.Duration // on the output
	b        box
	z        int // 0 below 1: the shared screen under the cameras' insets
}

// PlaceSegments puts every segment on one wall clock. A publisher's
// segments with sender times keep the distances their sender times say
// (audio and video sampled together play together, whatever each took
// to arrive), shifted by the smallest delay seen between its sender
// clock and the server's (arrival), among those within senderSanity of
// the median; a segment without a sender time, or
// one off by more than senderSanity, is placed by its first frame's
// arrival.
func PlaceSegments(segs []Segment) []time.Time {
	delays := map[string][]time.Duration{}
	for _, s := range segs {
		if !s.SenderStart.IsZero() {
			delays[s.Publisher] = append(delays[s.Publisher], s.Start.Sub(s.SenderStart))
		}
	}
	// The smallest delay near the median (a clock that jumped does not
	// move the rest).
	offset := map[string]time.Duration{}
	for pub, ds := range delays {
		slices.Sort(ds)
		med := ds[len(ds)/2]
		for _, d := range ds {
			if (d - med).Abs() <= senderSanity {
				offset[pub] = d
				break
			}
		}
	}
	out := make([]time.Time, len(segs))
	for i, s := range segs {
		out[i] = s.Start
		if o, ok := offset[s.Publisher]; ok && !s.SenderStart.IsZero() {
			if at := s.SenderStart.Add(o); s.Start.Sub(at).Abs() <= senderSanity {
				out[i] = at
			}
		}
	}
	return out
}

// PlanMinutes builds the minutes video's ffmpeg arguments from a
// manifest: segments are read from dir. It is a pure function of its
// arguments.
func PlanMinutes(m Manifest, dir string, spec MinutesSpec) (MinutesPlan, error) {
	var plan MinutesPlan
	if !spec.Whole() && (spec.From.IsZero() || spec.To.IsZero() || !spec.From.Before(spec.To)) {
		return plan, fmt.Errorf("record: a range needs both ends, its start before its end (%v, %v)", spec.From, spec.To)
	}
	segs := slices.DeleteFunc(slices.Clone(m.Segments), func(s Segment) bool { return s.DurationMS <= 0 })
	if len(segs) == 0 {
		return plan, ErrNothingRecorded
	}
	at := PlaceSegments(segs)
	ps := make([]placed, len(segs))
	for i, s := range segs {
		ps[i] = placed{seg: s, from: at[i], to: at[i].Add(time.Duration(s.DurationMS) * time.Millisecond)}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].from.Before(ps[j].from) })
	spans := timeline(m.Runs, ps)
	if !spec.Whole() {
		kept := clip(spans, spec.From, spec.To)
		if len(kept) == 0 {
			return plan, &RangeError{From: spec.From, To: spec.To, RecordedFrom: spans[0].from, RecordedTo: spans[len(spans)-1].to}
		}
		spans = kept
	}
	plan.Duration = spans[len(spans)-1].out + spans[len(spans)-1].to.Sub(spans[len(spans)-1].from)
	loc := spec.Location
	if loc == nil {
		loc = time.UTC
	}

	var pieces []piece
	// sound is an audio segment entered whole from skip, at on the output.
	type sound struct {
		p        placed
		skip, at time.Duration
	}
	var audio []sound
	type caption struct {
		from, to time.Duration
		text     string
	}
	var captions []caption
	addCaption := func(from, to time.Duration, text string) {
		if n := len(captions); n > 0 && captions[n-1].text == text && captions[n-1].to == from {
			captions[n-1].to = to
			return
		}
		captions = append(captions, caption{from, to, text})
	}
	shown := map[string]bool{}
	for _, sp := range spans {
		if sp.slate != "" {
			continue
		}
		var in []placed
		for _, p := range ps {
			if p.to.After(sp.from) && p.from.Before(sp.to) {
				in = append(in, p)
				shown[p.seg.File] = true
			}
		}
		// Breakpoints: wherever a video segment starts or ends.
		cuts := []time.Time{sp.from, sp.to}
		for _, p := range in {
			if p.seg.Kind == "audio" {
				switch {
				case !p.from.Before(sp.from): // (a segment is in the run it starts in)
					audio = append(audio, sound{p: p, at: sp.out + p.from.Sub(sp.from)})
				case sp.cut: // begun before the range: from where it starts
					audio = append(audio, sound{p: p, skip: sp.from.Sub(p.from), at: sp.out})
				}
				continue
			}
			for _, t := range []time.Time{p.from, p.to} {
				if t.After(sp.from) && t.Before(sp.to) {
					cuts = append(cuts, t)
				}
			}
		}
		slices.SortFunc(cuts, func(a, b time.Time) int { return a.Compare(b) })
		cuts = slices.CompactFunc(cuts, func(a, b time.Time) bool { return a.Equal(b) })
		for i := 0; i+1 < len(cuts); i++ {
			a, b := cuts[i], cuts[i+1]
			mid := a.Add(b.Sub(a) / 2)
			hub, holder, screen := covering(in, mid, isHubCamera), covering(in, mid, isFloorCamera), covering(in, mid, isScreen)
			boxes := map[*placed]box{}
			switch {
			case screen != nil:
				boxes[screen] = boxFull
				if hub != nil {
					boxes[hub] = boxInset
				}
				if holder != nil {
					boxes[holder] = boxInset2
				}
			case holder != nil:
				boxes[holder] = boxRight
				if hub != nil {
					boxes[hub] = boxLeft
				}
			case hub != nil:
				boxes[hub] = boxFull
			}
			from, to := sp.out+a.Sub(sp.from), sp.out+b.Sub(sp.from)
			for _, p := range []*placed{screen, hub, holder} { // (the screen below the insets)
				if p == nil {
					continue
				}
				z := 1
				if p == screen {
					z = 0
				}
				pieces = append(pieces, piece{seg: p.seg, skip: a.Sub(p.from), from: from, to: to, b: boxes[p], z: z})
			}
			floor := spec.name("hub")
			if holder != nil {
				floor = spec.name(holder.seg.Publisher)
			}
			date := a.In(loc).Format("2 January 2006")
			addCaption(from, to, strings.Join(nonEmpty(spec.Title, date, "floor: "+floor), "  ·  "))
		}
	}
	plan.Segments = len(shown)
	pieces = mergePieces(pieces)
	slices.SortStableFunc(pieces, func(a, b piece) int { return a.z - b.z })

	// Inputs: a video piece is its segment from skip for its length (the
	// input seeks, so only that part is decoded); an audio segment whole.
	var args, graph []string
	n := 0
	sec := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }
	total := sec(plan.Duration)
	graph = append(graph, fmt.Sprintf("color=c=black:s=%dx%d:r=%d:d=%s,format=yuv420p[v0]", MinutesWidth, MinutesHeight, MinutesFPS, total))
	last := "v0"
	for i, p := range pieces {
		args = append(args, "-threads", "1")
		if p.skip > 0 {
			args = append(args, "-ss", sec(p.skip))
		}
		args = append(args, "-t", sec(p.to-p.from), "-i", filepath.Join(dir, p.seg.File))
		graph = append(graph, fmt.Sprintf("[%d:v]scale=%d:%d:force_original_aspect_ratio=decrease:force_divisible_by=2,"+
			"pad=%d:%d:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,setpts=PTS+%s/TB[p%d]",
			n, p.b.w, p.b.h, p.b.w, p.b.h, sec(p.from), i))
		next := fmt.Sprintf("v%d", i+1)
		graph = append(graph, fmt.Sprintf("[%s][p%d]overlay=x=%d:y=%d:eof_action=pass:enable='between(t,%s,%s)'[%s]",
			last, i, p.b.x, p.b.y, sec(p.from), sec(p.to), next))
		last = next
		n++
	}
	// The slates and the caption line.
	var text []string
	for _, sp := range spans {
		if sp.slate != "" {
			end := sp.out + sp.to.Sub(sp.from)
			text = append(text, fmt.Sprintf("drawtext=text='%s':fontcolor=white:fontsize=40:x=(w-text_w)/2:y=(h-text_h)/2:enable='between(t,%s,%s)'",
				sp.slate, sec(sp.out), sec(end)))
		}
	}
	text = append(text, fmt.Sprintf("drawbox=x=0:y=%d:w=%d:h=40:color=black@0.6:t=fill", MinutesHeight-40, MinutesWidth))
	for i, c := range captions {
		plan.Captions = append(plan.Captions, c.text)
		text = append(text, fmt.Sprintf("drawtext=textfile=%s:expansion=none:fontcolor=white:fontsize=22:x=16:y=%d:enable='between(t,%s,%s)'",
			CaptionFile(i), MinutesHeight-31, sec(c.from), sec(c.to)))
	}
	graph = append(graph, fmt.Sprintf("[%s]%s[vout]", last, strings.Join(text, ",")))

	// The audio: every segment at its place, mixed over silence of the
	// video's length.
	graph = append(graph, fmt.Sprintf("anullsrc=r=48000:cl=stereo,atrim=duration=%s[a0]", total))
	mix := "[a0]"
	for i, a := range audio {
		args = append(args, "-threads", "1")
		if a.skip > 0 {
			args = append(args, "-ss", sec(a.skip))
		}
		args = append(args, "-i", filepath.Join(dir, a.p.seg.File))
		graph = append(graph, fmt.Sprintf("[%d:a]aresample=48000:async=1:first_pts=0,aformat=channel_layouts=stereo,adelay=%d:all=1[a%d]", n, a.at.Milliseconds(), i+1))
		mix += fmt.Sprintf("[a%d]", i+1)
		n++
	}
	graph = append(graph, fmt.Sprintf("%samix=inputs=%d:duration=first:dropout_transition=0:normalize=0[aout]", mix, len(audio)+1))
	args = append(args, "-filter_complex", strings.Join(graph, ";\n"), "-map", "[vout]", "-map", "[aout]", "-t", total)
	plan.Args = args
	return plan, nil
}

// timeline lays the runs end to end: each run's wall-clock interval
// (to its stop, or for a run the server did not live to stop, to its
// last segment's end), with a slate between runs: the whole gap after a
// run that died ("connection interrupted"), pauseSlate after one a
// person stopped.
func timeline(runs []Run, ps []placed) []span {
	if len(runs) == 0 { // (a manifest without runs: its segments' extent)
		runs = []Run{{Started: ps[0].from}}
	}
	var spans []span
	var out time.Duration
	for i, r := range runs {
		from, to := r.Started, r.Stopped
		var next time.Time
		if i+1 < len(runs) {
			next = runs[i+1].Started
		}
		for _, p := range ps {
			if !next.IsZero() && !p.from.Before(next) {
				continue
			}
			if i == 0 && p.from.Before(from) {
				from = p.from // (a first frame placed before the run's start: its sender clock)
			}
			if r.Stopped.IsZero() && p.to.After(to) && !p.from.Before(from) {
				to = p.to
			}
		}
		if to.Before(from) {
			to = from
		}
		if !next.IsZero() && to.After(next) {
			to = next
		}
		if i > 0 {
			prev := spans[len(spans)-1]
			gap, text := from.Sub(prev.to), SlateInterrupted
			if !runs[i-1].Stopped.IsZero() {
				gap, text = min(gap, pauseSlate), SlatePaused
			}
			if gap > 0 {
				spans = append(spans, span{from: prev.to, to: prev.to.Add(gap), out: out, slate: text})
				out += gap
			}
		}
		spans = append(spans, span{from: from, to: to, out: out})
		out += to.Sub(from)
	}
	return spans
}

// clip keeps the part of a timeline in [from, to) of the wall clock:
// each run cut to it, a slate only between two runs kept, laid end to
// end again. None when no run overlaps it.
func clip(spans []span, from, to time.Time) []span {
	var kept []span
	var slate *span // waiting for a run after it
	var out time.Duration
	for _, sp := range spans {
		if sp.slate != "" {
			if len(kept) > 0 {
				s := sp
				slate = &s
			}
			continue
		}
		a, b := sp.from, sp.to
		cut := a.Before(from)
		if cut {
			a = from
		}
		if b.After(to) {
			b = to
		}
		if !a.Before(b) {
			continue
		}
		if slate != nil {
			slate.out = out
			kept = append(kept, *slate)
			out += slate.to.Sub(slate.from)
			slate = nil
		}
		kept = append(kept, span{from: a, to: b, out: out, cut: cut})
		out += b.Sub(a)
	}
	return kept
}

// covering is the latest-starting segment of the kind is says that
// plays at t.
func covering(ps []placed, t time.Time, is func(Segment) bool) *placed {
	var best *placed
	for i := range ps {
		p := &ps[i]
		if is(p.seg) && !t.Before(p.from) && t.Before(p.to) && (best == nil || !p.from.Before(best.from)) {
			best = p
		}
	}
	return best
}

func isHubCamera(s Segment) bool { return s.Kind == "video" && s.Track == "hub-camera" }
func isScreen(s Segment) bool    { return s.Kind == "video" && s.Track == "hub-screen" }
func isFloorCamera(s Segment) bool {
	return s.Kind == "video" && s.Track != "hub-camera" && strings.HasSuffix(s.Track, "-camera")
}

// mergePieces joins a segment's consecutive pieces in the same box.
func mergePieces(ps []piece) []piece {
	var out []piece
	for _, p := range ps {
		merged := false
		for i := len(out) - 1; i >= 0; i-- {
			q := &out[i]
			if q.seg.File == p.seg.File && q.b == p.b && q.to == p.from {
				q.to = p.to
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, p)
		}
	}
	return out
}

func (s MinutesSpec) name(bridge string) string {
	if n := s.Names[bridge]; n != "" {
		return n
	}
	if bridge == "hub" {
		return "the chair"
	}
	return bridge
}

func nonEmpty(ss ...string) []string {
	return slices.DeleteFunc(ss, func(s string) bool { return s == "" })
}
