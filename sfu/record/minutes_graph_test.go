package record

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse("15:04:05.000", s)
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 12, 6, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

func seg(track, pub, kind, start string, ms int64) Segment {
	return Segment{File: track + "-" + start + ".webm", Track: track, Publisher: pub, Kind: kind, Start: at(start), DurationMS: ms}
}

// TestPlanMinutes: a run that died, then a resumed one. The hub's camera
// and microphone carry sender times (its clock 40 s behind the
// server's): both are placed where the earlier arrival says, 20 ms in,
// though the camera's first frame arrived 180 ms after the sound's. A
// room holds the floor from 3 to 6 s (the hub on the left, the room on
// the right, the caption naming it), the screen is shared from 7 to 9 s
// (full, the hub inset above it), the gap between the runs is a slate
// saying the connection was interrupted, and the whole lasts the runs
// and the gap: 20 s.
func TestPlanMinutes(t *testing.T) {
	cam := seg("hub-camera", "hub", "video", "09:00:00.200", 10000)
	cam.SenderStart = at("08:59:20.000")
	mic := seg("hub-audio", "hub", "audio", "09:00:00.020", 10000)
	mic.SenderStart = at("08:59:20.000")
	m := Manifest{
		Conference: "c1",
		Runs:       []Run{{Started: at("09:00:00.000")}, {Started: at("09:00:15.000"), Stopped: at("09:00:20.000"), Resumed: true}},
		Segments: []Segment{cam, mic,
			seg("ward-001-camera", "ward-001", "video", "09:00:03.000", 3000),
			seg("hub-screen", "hub", "video", "09:00:07.000", 2000),
			seg("hub-camera", "hub", "video", "09:00:15.000", 5000),
			seg("hub-audio", "hub", "video", "09:00:15.000", 0), // no length: left out
		},
	}
	plan, err := PlanMinutes(m, "/rec/c1", MinutesSpec{Title: "Council", Names: map[string]string{"ward-001": "Ward 1"}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Duration != 20*time.Second {
		t.Errorf("duration %v, want 20s (10.02 s, a 4.98 s slate, 5 s)", plan.Duration)
	}
	var graph string
	var inputs []string
	for i, a := range plan.Args {
		switch a {
		case "-filter_complex":
			graph = plan.Args[i+1]
		case "-i":
			inputs = append(inputs, strings.TrimPrefix(plan.Args[i+1], "/rec/c1/"))
		}
	}
	// The hub's first segment in three layouts (full, left, full, inset,
	// full), the room's, the screen's, the hub's second; the microphone.
	if len(inputs) != 9 || slices.Index(inputs, mic.File) != 8 {
		t.Errorf("inputs %v", inputs)
	}
	for _, want := range []string{
		// the hub's camera (after the screen, drawn first) placed by its sender time, 20 ms in
		"[1:v]scale=1280:720:force_original_aspect_ratio=decrease:force_divisible_by=2,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,setpts=PTS+0.020/TB",
		// the floor: the hub on the left, the room on the right
		"scale=640:360", "overlay=x=640:y=180:eof_action=pass:enable='between(t,3.000,6.000)'",
		"overlay=x=0:y=180:eof_action=pass:enable='between(t,3.000,6.000)'",
		// the screen full, the hub inset over it
		"overlay=x=0:y=0:eof_action=pass:enable='between(t,7.000,9.000)'",
		"overlay=x=952:y=8:eof_action=pass:enable='between(t,7.000,9.000)'",
		// the resumed run after the slate
		"setpts=PTS+15.000/TB",
		"drawtext=text='connection interrupted'", "enable='between(t,10.020,15.000)'",
		// the microphone 20 ms in, mixed over 20 s of silence
		"adelay=20:all=1", "atrim=duration=20.000", "amix=inputs=2:duration=first",
	} {
		if !strings.Contains(graph, want) {
			t.Errorf("graph lacks %q:\n%s", want, graph)
		}
	}
	// The screen is below the inset: its overlay comes first.
	if s, h := strings.Index(graph, "x=0:y=0:eof_action=pass:enable='between(t,7.000"), strings.Index(graph, "x=952:y=8"); s < 0 || h < s {
		t.Errorf("the hub's inset is drawn before the screen")
	}
	wantCaptions := []string{
		"Council  ·  6 December 2026  ·  floor: the chair",
		"Council  ·  6 December 2026  ·  floor: Ward 1",
		"Council  ·  6 December 2026  ·  floor: the chair",
		"Council  ·  6 December 2026  ·  floor: the chair",
	}
	if !slices.Equal(plan.Captions, wantCaptions) {
		t.Errorf("captions %q, want %q", plan.Captions, wantCaptions)
	}
	for i := range plan.Captions {
		if !strings.Contains(graph, "textfile="+CaptionFile(i)) {
			t.Errorf("caption %d not drawn", i)
		}
	}
	if !slices.Contains(plan.Args, "-t") || plan.Args[len(plan.Args)-1] != "20.000" {
		t.Errorf("output length: %v", plan.Args[len(plan.Args)-4:])
	}
}

// TestPlanMinutesPause: between a run a person stopped and the next, the
// minutes show a short "recording paused" slate, not the whole break.
func TestPlanMinutesPause(t *testing.T) {
	m := Manifest{
		Runs: []Run{{Started: at("09:00:00.000"), Stopped: at("09:00:05.000")}, {Started: at("09:10:00.000"), Stopped: at("09:10:05.000")}},
		Segments: []Segment{
			seg("hub-camera", "hub", "video", "09:00:00.000", 5000),
			seg("hub-camera", "hub", "video", "09:10:00.000", 5000),
		},
	}
	plan, err := PlanMinutes(m, "/rec", MinutesSpec{})
	if err != nil {
		t.Fatal(err)
	}
	graph := plan.Args[slices.Index(plan.Args, "-filter_complex")+1]
	if plan.Duration != 13*time.Second || !strings.Contains(graph, "text='recording paused'") ||
		!strings.Contains(graph, "enable='between(t,5.000,8.000)'") || !strings.Contains(graph, "setpts=PTS+8.000/TB") {
		t.Errorf("%v:\n%s", plan.Duration, graph)
	}
	if _, err := PlanMinutes(Manifest{Runs: m.Runs}, "/rec", MinutesSpec{}); err != ErrNothingRecorded {
		t.Errorf("no segments: %v", err)
	}
}

// TestPlaceSegments: a publisher's segments keep their sender clock's
// distances, at its smallest delay; one whose sender time jumped by
// more than senderSanity, and one without, are placed by arrival.
func TestPlaceSegments(t *testing.T) {
	a := seg("hub-audio", "hub", "audio", "09:00:00.050", 1000)
	a.SenderStart = at("08:00:00.000")
	v := seg("hub-camera", "hub", "video", "09:00:00.300", 1000)
	v.SenderStart = at("08:00:00.100")
	jumped := seg("hub-camera", "hub", "video", "09:00:05.000", 1000)
	jumped.SenderStart = at("07:00:00.000")
	none := seg("ward-001-camera", "ward-001", "video", "09:00:01.000", 1000)
	got := PlaceSegments([]Segment{a, v, jumped, none})
	want := []time.Time{at("09:00:00.050"), at("09:00:00.150"), at("09:00:05.000"), at("09:00:01.000")}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("segment %d placed at %v, want %v", i, got[i].Format("15:04:05.000"), want[i].Format("15:04:05.000"))
		}
	}
}

// planInputs reads a plan's inputs: each file (dir left off) with the
// -ss it is entered from ("" for none), and the filter graph.
func planInputs(plan MinutesPlan, dir string) (files, skips []string, graph string) {
	ss := ""
	for i, a := range plan.Args {
		switch a {
		case "-ss":
			ss = plan.Args[i+1]
		case "-i":
			files = append(files, strings.TrimPrefix(plan.Args[i+1], dir+"/"))
			skips = append(skips, ss)
			ss = ""
		case "-filter_complex":
			graph = plan.Args[i+1]
		}
	}
	return files, skips, graph
}

// TestPlanMinutesRange: TestPlanMinutes's meeting (a run that died at
// 10 s, a resumed one from 15 to 20 s), rendered in ranges. A range
// inside the first run lasts what it asks (4 s): the pictures are cut
// to it (the hub's camera entered 4 s in, the room's 1 s in, the floor's
// layout until 2 s), the microphone begun before it is entered 4 s in
// with no delay. A range over the gap keeps the slate (for the whole
// gap) and the second run's sound after it; one starting in the gap
// drops it. A range of a paused recording keeps the short slate only
// when both sides are in it. A range with nothing recorded in it is a
// RangeError saying what the recording covers.
func TestPlanMinutesRange(t *testing.T) {
	cam := seg("hub-camera", "hub", "video", "09:00:00.000", 10000)
	mic := seg("hub-audio", "hub", "audio", "09:00:00.000", 10000)
	room := seg("ward-001-camera", "ward-001", "video", "09:00:03.000", 3000)
	cam2 := seg("hub-camera", "hub", "video", "09:00:15.000", 5000)
	mic2 := seg("hub-audio", "hub", "audio", "09:00:15.000", 5000)
	m := Manifest{
		Conference: "c1",
		Runs:       []Run{{Started: at("09:00:00.000")}, {Started: at("09:00:15.000"), Stopped: at("09:00:20.000"), Resumed: true}},
		Segments:   []Segment{cam, mic, room, cam2, mic2},
	}
	spec := MinutesSpec{Title: "Council", Names: map[string]string{"ward-001": "Ward 1"}}
	plan := func(from, to string) (MinutesPlan, error) {
		s := spec
		s.From, s.To = at(from), at(to)
		return PlanMinutes(m, "/rec/c1", s)
	}
	type want struct {
		from, to string
		duration time.Duration
		inputs   map[string]string // file: its -ss
		graph    []string
		not      []string
		captions []string
		segments int
	}
	for _, w := range []want{
		{from: "09:00:04.000", to: "09:00:08.000", duration: 4 * time.Second,
			inputs: map[string]string{cam.File: "4.000,6.000", room.File: "1.000", mic.File: "4.000"},
			graph: []string{
				"overlay=x=640:y=180:eof_action=pass:enable='between(t,0.000,2.000)'", // the room, right
				"overlay=x=0:y=180:eof_action=pass:enable='between(t,0.000,2.000)'",   // the hub, left
				"overlay=x=0:y=0:eof_action=pass:enable='between(t,2.000,4.000)'",     // the hub, full
				"adelay=0:all=1", "atrim=duration=4.000",
			},
			not:      []string{"drawtext=text=", "adelay=4000"},
			captions: []string{"Council  ·  6 December 2026  ·  floor: Ward 1", "Council  ·  6 December 2026  ·  floor: the chair"},
			segments: 3},
		{from: "09:00:08.000", to: "09:00:17.000", duration: 9 * time.Second, // 2 s, the 5 s gap, 2 s
			inputs: map[string]string{cam.File: "8.000", mic.File: "8.000", cam2.File: "", mic2.File: ""},
			graph: []string{
				"drawtext=text='connection interrupted'", "enable='between(t,2.000,7.000)'",
				"setpts=PTS+7.000/TB", "adelay=0:all=1", "adelay=7000:all=1", "atrim=duration=9.000",
			},
			segments: 4},
		{from: "09:00:12.000", to: "09:00:18.500", duration: 3500 * time.Millisecond, // from the gap: no slate
			inputs:   map[string]string{cam2.File: "", mic2.File: ""},
			graph:    []string{"setpts=PTS+0.000/TB", "adelay=0:all=1", "atrim=duration=3.500"},
			not:      []string{"drawtext=text="},
			segments: 2},
		{from: "09:00:16.000", to: "09:00:30.000", duration: 4 * time.Second, // past the end: what there is
			inputs:   map[string]string{cam2.File: "1.000", mic2.File: "1.000"},
			graph:    []string{"adelay=0:all=1", "atrim=duration=4.000"},
			segments: 2},
	} {
		p, err := plan(w.from, w.to)
		if err != nil {
			t.Errorf("%s-%s: %v", w.from, w.to, err)
			continue
		}
		if p.Duration != w.duration || p.Args[len(p.Args)-1] != fmt.Sprintf("%.3f", w.duration.Seconds()) {
			t.Errorf("%s-%s: %v long (output -t %s), want %v", w.from, w.to, p.Duration, p.Args[len(p.Args)-1], w.duration)
		}
		files, skips, graph := planInputs(p, "/rec/c1")
		got := map[string]string{}
		for i, f := range files {
			if _, dup := got[f]; dup && skips[i] != got[f] {
				got[f] += "," + skips[i]
				continue
			}
			got[f] = skips[i]
		}
		if !maps.Equal(got, w.inputs) {
			t.Errorf("%s-%s: inputs (file: -ss) %v, want %v", w.from, w.to, got, w.inputs)
		}
		for _, s := range w.graph {
			if !strings.Contains(graph, s) {
				t.Errorf("%s-%s: graph lacks %q:\n%s", w.from, w.to, s, graph)
			}
		}
		for _, s := range w.not {
			if strings.Contains(graph, s) {
				t.Errorf("%s-%s: graph has %q:\n%s", w.from, w.to, s, graph)
			}
		}
		if w.captions != nil && !slices.Equal(p.Captions, w.captions) {
			t.Errorf("%s-%s: captions %q, want %q", w.from, w.to, p.Captions, w.captions)
		}
		if p.Segments != w.segments {
			t.Errorf("%s-%s: shows %d segments, want %d", w.from, w.to, p.Segments, w.segments)
		}
	}

	// Nothing recorded: in the gap, after the end, before the start.
	for _, r := range [][2]string{{"09:00:11.000", "09:00:14.000"}, {"09:00:20.000", "09:01:00.000"}, {"08:00:00.000", "09:00:00.000"}} {
		_, err := plan(r[0], r[1])
		var re *RangeError
		if !errors.As(err, &re) || !re.RecordedFrom.Equal(at("09:00:00.000")) || !re.RecordedTo.Equal(at("09:00:20.000")) ||
			!strings.Contains(err.Error(), "the recording runs from 2026-12-06T09:00:00Z to 2026-12-06T09:00:20Z") {
			t.Errorf("%v: %v, want a RangeError with the recording's extent", r, err)
		}
	}
	for _, r := range [][2]time.Time{{at("09:00:05.000"), at("09:00:05.000")}, {at("09:00:06.000"), at("09:00:05.000")}, {at("09:00:05.000"), {}}} {
		s := spec
		s.From, s.To = r[0], r[1]
		if _, err := PlanMinutes(m, "/rec/c1", s); err == nil || errors.As(err, new(*RangeError)) {
			t.Errorf("range %v: %v, want refused", r, err)
		}
	}

	// A pause: its slate only between two runs both in the range.
	paused := Manifest{
		Runs: []Run{{Started: at("09:00:00.000"), Stopped: at("09:00:05.000")}, {Started: at("09:10:00.000"), Stopped: at("09:10:05.000")}},
		Segments: []Segment{
			seg("hub-camera", "hub", "video", "09:00:00.000", 5000),
			seg("hub-camera", "hub", "video", "09:10:00.000", 5000),
		},
	}
	for _, r := range []struct {
		from, to string
		duration time.Duration
		slate    bool
	}{{"09:00:04.000", "09:10:02.000", 6 * time.Second, true}, {"09:05:00.000", "09:10:03.000", 3 * time.Second, false}} {
		p, err := PlanMinutes(paused, "/rec", MinutesSpec{From: at(r.from), To: at(r.to)})
		if err != nil {
			t.Fatal(err)
		}
		_, _, graph := planInputs(p, "/rec")
		if p.Duration != r.duration || strings.Contains(graph, "text='recording paused'") != r.slate {
			t.Errorf("%s-%s: %v long, slate %v; want %v, slate %v:\n%s", r.from, r.to, p.Duration, !r.slate, r.duration, r.slate, graph)
		}
	}
}

// TestMinutesFileName: the whole recording's video is minutes.mp4; a
// range's is named by its ends in UTC, with nothing to escape.
func TestMinutesFileName(t *testing.T) {
	hcm := time.FixedZone("ICT", 7*3600)
	for _, c := range []struct {
		spec MinutesSpec
		want string
	}{
		{MinutesSpec{}, "minutes.mp4"},
		{MinutesSpec{From: at("09:05:00.000"), To: at("09:10:00.000")}, "minutes-20261206T090500Z-20261206T091000Z.mp4"},
		{MinutesSpec{From: at("09:05:00.000").In(hcm), To: at("09:10:00.250").In(hcm)}, "minutes-20261206T090500Z-20261206T091000.25Z.mp4"},
	} {
		if got := MinutesFileName(c.spec); got != c.want || url.PathEscape(got) != got {
			t.Errorf("%v-%v: %q, want %q", c.spec.From, c.spec.To, got, c.want)
		}
	}
}
