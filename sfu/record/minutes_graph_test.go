package record

import (
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
