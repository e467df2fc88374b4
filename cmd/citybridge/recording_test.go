package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
	"citybridge/sfu/record/recordtest"
	"citybridge/signaling/terminal"
)

// TestRecordingSurvivesKill: a synthetic hub (three VP8 layers and Opus)
// in conference c1, recorded in 3-second segments; the server is killed
// (SIGKILL) once several segments are closed. Every segment in the
// manifest matches its checksum, and ffprobe and ffmpeg read it. Started
// again on the same data directory, the server resumes the recording by
// itself (the hub's terminal reconnects on its own) in new segments.
func TestRecordingSurvivesKill(t *testing.T) {
	requireMediaPass(t) // a real process, real-time media: not under the race detector
	recordtest.NeedTools(t, "ffprobe", "ffmpeg")
	data := filepath.Join(t.TempDir(), "data")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	udp := freeTCPUDPPort(t)
	flags := []string{"--recording-segment", "3s", "--recordings-min-free", "100MB"}
	p := startBinaryOn(t, data, addr, udp, flags...)
	host := p.link(t, "/host")
	const conf = "c1"
	dir := filepath.Join(data, "recordings", conf)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hub, err := terminal.StartFleet(p.base, conf, []string{host}, []string{"q", "h", "f"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Stop)

	var floor controlplane.FloorState
	waitUntil(t, 30*time.Second, "recording started", func() (bool, string) {
		code := p.api(t, "POST", "/api/conferences/"+conf+"/recording", host, &floor)
		return code == http.StatusOK && floor.Recording, fmt.Sprintf("%d %+v", code, floor)
	})
	segments := func(track string, after time.Time) int {
		m, err := record.ReadManifest(dir)
		if err != nil {
			return 0
		}
		n := 0
		for _, s := range m.Segments {
			if s.Track == track && !s.Start.Before(after) {
				n++
			}
		}
		return n
	}
	waitUntil(t, 60*time.Second, "closed segments of the hub's camera and microphone", func() (bool, string) {
		v, a := segments("hub-camera", time.Time{}), segments("hub-audio", time.Time{})
		return v >= 2 && a >= 2, fmt.Sprintf("camera %d, audio %d", v, a)
	})
	_ = p.cmd.Process.Kill()
	p.wait()
	killed := time.Now()

	before, err := record.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range before.Segments {
		checkRecordedSegment(t, dir, s)
	}
	if len(before.Runs) != 1 || !before.Runs[0].Stopped.IsZero() {
		t.Errorf("runs before the restart: %+v, want one still open", before.Runs)
	}

	p = startBinaryOn(t, data, addr, udp, flags...)
	waitUntil(t, 60*time.Second, "the recording resumed in new segments", func() (bool, string) {
		v, a := segments("hub-camera", killed), segments("hub-audio", killed)
		return v >= 1 && a >= 1, fmt.Sprintf("camera %d, audio %d since the restart", v, a)
	})
	if code := p.api(t, "GET", "/api/conferences/"+conf+"/floor", host, &floor); code != http.StatusOK || !floor.Recording {
		t.Errorf("floor after the restart: %d %+v, want recording", code, floor)
	}
	if code := p.api(t, "DELETE", "/api/conferences/"+conf+"/recording", host, &floor); code != http.StatusOK || floor.Recording {
		t.Errorf("stop recording: %d %+v", code, floor)
	}
	after, err := record.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Runs) != 2 || !after.Runs[1].Resumed || after.Runs[1].Stopped.IsZero() {
		t.Errorf("runs: %+v, want the first and a resumed one, stopped", after.Runs)
	}
	for _, s := range after.Segments[len(before.Segments):] {
		checkRecordedSegment(t, dir, s)
	}
	t.Logf("%d segments before the kill, %d after the restart", len(before.Segments), len(after.Segments)-len(before.Segments))
	for _, s := range after.Segments {
		t.Logf("%s: %s %s %dx%d, %d ms, %d frames", s.File, s.Codec, s.Layer, s.Width, s.Height, s.DurationMS, s.Frames)
	}
}

// checkRecordedSegment: the file matches the manifest's size and
// SHA-256, ffprobe reads the codec (and the picture size the manifest
// gives) and a duration within 100 ms of the manifest's, and ffmpeg
// decodes it without an error.
func checkRecordedSegment(t *testing.T, dir string, s record.Segment) {
	t.Helper()
	path := filepath.Join(dir, s.File)
	got, size, err := record.FileSum(path)
	if err != nil {
		t.Errorf("%s: %v", s.File, err)
		return
	}
	if got != s.SHA256 || size != s.Bytes {
		t.Errorf("%s: sha256 %s, %d bytes; manifest %s, %d bytes", s.File, got, size, s.SHA256, s.Bytes)
	}
	probe, err := recordtest.ProbeFile(path)
	if err != nil || len(probe.Streams) != 1 {
		t.Errorf("%s: %+v (%v)", s.File, probe, err)
		return
	}
	want := map[string]string{"video/VP8": "vp8", "video/H264": "h264", "audio/opus": "opus"}[s.Codec]
	st := probe.Streams[0]
	if st.CodecName != want || st.Width != s.Width || st.Height != s.Height {
		t.Errorf("%s: ffprobe %s %dx%d; manifest %s %dx%d", s.File, st.CodecName, st.Width, st.Height, s.Codec, s.Width, s.Height)
	}
	manifest := time.Duration(s.DurationMS) * time.Millisecond
	if d := probe.Duration; d < manifest-100*time.Millisecond || d > manifest+100*time.Millisecond || d <= 0 {
		t.Errorf("%s: ffprobe duration %v, manifest %d ms", s.File, d, s.DurationMS)
	}
	if err := recordtest.DecodeSegment(path); err != nil {
		t.Error(err)
	}
}

// TestBrowserRecording (a first part of issue 23's): a Chromium hub and
// three Chromium rooms; the chair starts recording from the console,
// gives the floor to room B until B's camera has a closed segment, shares
// the screen until the screen has one, and stops. Every room page and the
// console showed the indicator while recording and not after; ffprobe
// reads every segment (codec, size); each track's segments last what the
// wall clock measured between their frames, within a second; the hub's
// microphone is recorded for the whole meeting, within a second. The
// minutes video follows (checkMinutesVideo).
//
// It runs twice: with the browsers' default video (VP8, WebM files) and
// with --video-codec h264 (Matroska files).
func TestBrowserRecording(t *testing.T) {
	requireMediaPass(t) // four Chromiums on two cores: timing-sensitive
	recordtest.NeedTools(t, "ffprobe", "ffmpeg")
	for _, codec := range []string{"", "h264"} {
		name := codec
		if name == "" {
			name = "vp8"
		}
		t.Run(name, func(t *testing.T) { browserRecording(t, codec) })
	}
}

func browserRecording(t *testing.T, codec string) {
	ts := startTestServerWith(t, func(c *Config) { c.RecordingSegment = 4 * time.Second; c.VideoCodec = codec })
	began := time.Now()
	const conf = "c1"
	dir := filepath.Join(ts.cfg.Data, "recordings", conf)
	a, b, c := "commune-001", "commune-002", "ward-001"
	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	rooms := map[string]*tab{}
	for _, id := range []string{a, b, c} {
		rooms[id] = openTab(t, browser, id, ts.terminalLink(t, id))
	}
	saveScreenshotsOnFailure(t, host, rooms[a], rooms[b], rooms[c])
	for id, tb := range rooms {
		waitUntil(t, 60*time.Second, id+" decoding the hub", func() (bool, string) {
			frames, audio := received(t, tb, "hub")
			return frames > 0 && audio > 0, fmt.Sprintf("frames %d, audio packets %d", frames, audio)
		})
	}
	indicators := func(want bool) {
		t.Helper()
		for _, tb := range []*tab{host, rooms[a], rooms[b], rooms[c]} {
			waitUntil(t, 5*time.Second, fmt.Sprintf("%s's recording indicator shown %v", tb.name, want), func() (bool, string) {
				hidden, err := eval[bool](tb, `document.getElementById("recording").hidden`)
				return err == nil && hidden == !want, fmt.Sprint(hidden, err)
			})
		}
	}
	indicators(false)
	click(t, host, "#record")
	started := time.Now()
	indicators(true)

	closed := func(track string) int {
		m, err := record.ReadManifest(dir)
		if err != nil {
			return 0
		}
		n := 0
		for _, s := range m.Segments {
			if s.Track == track {
				n++
			}
		}
		return n
	}
	var marks minutesMarks
	click(t, host, `#wall [data-bridge="`+b+`"] button.give-floor`)
	marks.floorGiven = time.Now()
	waitUntil(t, 30*time.Second, "a closed segment of B's camera and microphone", func() (bool, string) {
		v, au := closed(b+"-camera"), closed(b+"-audio")
		return v >= 1 && au >= 1, fmt.Sprintf("camera %d, audio %d", v, au)
	})
	click(t, host, "#take-floor")
	marks.floorTaken = time.Now()
	// A stretch of the hub alone, for the minutes video's frames to
	// compare: until a closed segment of the hub's camera reaches 2 s
	// past the floor's end.
	waitUntil(t, 30*time.Second, "the hub's camera recorded alone for 2 s", func() (bool, string) {
		m, _ := record.ReadManifest(dir)
		for _, s := range m.Segments {
			if s.Track == "hub-camera" && s.End.After(marks.floorTaken.Add(2*time.Second)) {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(m.Segments), " segments")
	})
	click(t, host, "#share")
	marks.shared = time.Now()
	waitUntil(t, 30*time.Second, "a closed segment of the shared screen", func() (bool, string) {
		n := closed("hub-screen")
		return n >= 1, fmt.Sprint(n)
	})
	click(t, host, "#share")
	marks.unshared = time.Now()
	click(t, host, "#record")
	stopped := time.Now()
	indicators(false)

	m, err := record.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Runs) != 1 || m.Runs[0].Stopped.IsZero() || m.Runs[0].By != "host link "+conf {
		t.Errorf("runs %+v, want one by the host link, stopped", m.Runs)
	}
	var audio time.Duration
	tracks := map[string]int{}
	// Each track's segments last, together, what the wall clock measured
	// between their first and last frames' arrival, within a second. A
	// segment alone can be further off on a loaded machine: a sender
	// that falls behind and catches up moves its first or last frame's
	// arrival by a second or more (seen with four Chromiums encoding
	// H.264 on two cores); across a track's segments the cuts cancel
	// out (one segment's last frame and the next one's first arrive
	// together), and only the ends remain.
	media, wallclock := map[string]time.Duration{}, map[string]time.Duration{}
	for _, s := range m.Segments {
		tracks[s.Track]++
		checkRecordedSegment(t, dir, s)
		wall := s.End.Sub(s.Start)
		media[s.Track] += time.Duration(s.DurationMS) * time.Millisecond
		wallclock[s.Track] += wall
		if s.Kind == "video" && (s.Width < 320 || s.Height < 180) {
			t.Errorf("%s: %dx%d", s.File, s.Width, s.Height)
		}
		if wantVideo := map[string]string{"": "video/VP8", "h264": "video/H264"}[codec]; s.Kind == "video" && !strings.EqualFold(s.Codec, wantVideo) {
			t.Errorf("%s: %s, want %s", s.File, s.Codec, wantVideo)
		}
		if s.Track == "hub-audio" {
			audio += time.Duration(s.DurationMS) * time.Millisecond
		}
		sender := "no sender report"
		if !s.SenderStart.IsZero() {
			sender = fmt.Sprintf("first frame arrived %v after its sender time", s.Start.Sub(s.SenderStart).Round(time.Millisecond))
		}
		t.Logf("%s: %s %s %dx%d, %d ms (wall %v), %d frames; %s", s.File, s.Codec, s.Layer, s.Width, s.Height, s.DurationMS, wall.Round(time.Millisecond), s.Frames, sender)
	}
	for track, d := range media {
		// Video may lag more: a Chromium encoding H.264 at 720p on a
		// loaded two-core machine falls behind and sends its frames
		// (stamped when captured) ever later, 1.2 s over 10 s once.
		// The file keeps the capture times, which is right; the
		// arrival times stretch.
		slack := time.Second
		if !strings.HasSuffix(track, "-audio") {
			slack = max(slack, wallclock[track]*15/100)
		}
		if w := wallclock[track]; d-w > slack || w-d > slack {
			t.Errorf("%s's segments last %v, their frames came over %v of the wall clock", track, d, w)
		}
	}
	for _, want := range []string{"hub-camera", "hub-audio", "hub-screen", b + "-camera", b + "-audio"} {
		if tracks[want] == 0 {
			t.Errorf("no segment of %s: %v", want, tracks)
		}
	}
	for _, never := range []string{a + "-camera", a + "-audio", c + "-camera", c + "-audio"} {
		if tracks[never] != 0 {
			t.Errorf("%s recorded: it never held the floor nor was unmuted", never)
		}
	}
	// Starting and stopping are in the audit log, by the chair.
	es, err := ts.store.AuditLog(began, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]int{}
	for _, e := range es {
		if e.Result == "ok" && e.Role == controlplane.RoleHost {
			audited[e.Action]++
		}
	}
	if audited["control record"] != 1 || audited["control stop_record"] != 1 {
		t.Errorf("audit log: %v, want one record and one stop_record by the host", audited)
	}
	if meeting := stopped.Sub(started); audio < meeting-time.Second || audio > meeting+200*time.Millisecond {
		t.Errorf("the hub's microphone recorded for %v of a %v recording", audio, meeting)
	}
	marks.started, marks.stopped = started, stopped
	checkMinutesVideo(t, ts, host, dir, marks)
}

// TestRecordingRefusedLowSpace: with less free space than
// --recordings-min-free, starting a recording is refused with a clear
// error (how much is free, how much is needed), from the API and from the
// console's control message alike, and nothing changes: the floor says
// not recording and no recording directory is made for the conference.
func TestRecordingRefusedLowSpace(t *testing.T) {
	t.Parallel()
	ts := startTestServerWith(t, func(c *Config) { c.RecordingsMinFree = 1 << 62 })
	const conf = "c1"
	call := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, ts.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+ts.demo.HostToken)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}
	code, body := call("POST", "/api/conferences/"+conf+"/recording")
	if code != http.StatusConflict || !strings.Contains(body, `"no_space"`) || !strings.Contains(body, "GB free in") ||
		!strings.Contains(body, "--recordings-min-free") {
		t.Errorf("start recording with too little space: %d %s", code, body)
	}
	code, body = call("GET", "/api/conferences/"+conf+"/floor")
	if code != http.StatusOK || !strings.Contains(body, `"recording":false`) {
		t.Errorf("floor after the refusal: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(ts.cfg.Data, "recordings", conf)); !os.IsNotExist(err) {
		t.Errorf("a recording directory was made for %s: %v", conf, err)
	}
	// A stop while not recording changes nothing either.
	if code, body = call("DELETE", "/api/conferences/"+conf+"/recording"); code != http.StatusOK || !strings.Contains(body, `"recording":false`) {
		t.Errorf("stop while not recording: %d %s", code, body)
	}
}

// TestRecordingFlags: the recordings flags and their defaults; a size
// that is not one is refused with the flag's name.
func TestRecordingFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	cfg, err := parseServeFlags(nil, getenv, io.Discard)
	if err != nil || cfg.RecordingsMinFree != 5e9 || cfg.RecordingSegment != 5*time.Minute || cfg.Recordings != "" {
		t.Errorf("defaults: %v %d %v %q", err, cfg.RecordingsMinFree, cfg.RecordingSegment, cfg.Recordings)
	}
	for in, want := range map[string]byteSize{"500MB": 500e6, "5GB": 5e9, "1.5 GB": 1.5e9, "64kb": 64e3, "1024": 1024, "2TB": 2e12} {
		cfg, err := parseServeFlags([]string{"--recordings-min-free", in, "--recordings", "/srv/rec", "--recording-segment", "10s"}, getenv, io.Discard)
		if err != nil || cfg.RecordingsMinFree != want || cfg.Recordings != "/srv/rec" || cfg.RecordingSegment != 10*time.Second {
			t.Errorf("%q: %v %d, want %d", in, err, cfg.RecordingsMinFree, want)
		}
	}
	for _, bad := range []string{"lots", "-5GB", "5XB", ""} {
		if _, err := parseServeFlags([]string{"--recordings-min-free", bad}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "recordings-min-free") {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// TestRecordingFollowsFloor: synthetic terminals (pion: a hub and two
// rooms) in the test server; while recorded, the hub's camera and
// microphone are, and the room given the floor (its camera, and its
// microphone, unmuted with the floor), never the other, muted room.
// Every closed segment matches its checksum and plays. It runs in the
// ordinary test run, under the race detector: the recorder's taps on the
// SFU's read loops and its writers, with floor changes beside them.
func TestRecordingFollowsFloor(t *testing.T) {
	t.Parallel()
	ts := startTestServerWith(t, func(c *Config) { c.RecordingSegment = 2 * time.Second })
	const conf = "c1"
	dir := filepath.Join(ts.cfg.Data, "recordings", conf)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	a, b := "commune-001", "commune-002"
	syntheticMeeting(t, ts, conf, log, a, b)
	call := func(method, path, body string) int {
		req, _ := http.NewRequest(method, ts.base+"/api/conferences/"+conf+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ts.demo.HostToken)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call("POST", "/recording", ""); code != http.StatusOK {
		t.Fatalf("start recording: %d", code)
	}
	if code := call("POST", "/floor", `{"bridge":"`+a+`"}`); code != http.StatusOK {
		t.Fatalf("give the floor: %d", code)
	}
	closed := func() map[string]int {
		out := map[string]int{}
		if m, err := record.ReadManifest(dir); err == nil {
			for _, s := range m.Segments {
				out[s.Track]++
			}
		}
		return out
	}
	want := []string{"hub-camera", "hub-audio", a + "-camera", a + "-audio"}
	waitUntil(t, 60*time.Second, "closed segments of the hub and of the floor holder", func() (bool, string) {
		got := closed()
		for _, track := range want {
			if got[track] == 0 {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
	if code := call("DELETE", "/floor", ""); code != http.StatusOK {
		t.Fatalf("take the floor back: %d", code)
	}
	if code := call("DELETE", "/recording", ""); code != http.StatusOK {
		t.Fatalf("stop recording: %d", code)
	}
	m, err := record.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Segments {
		if s.Publisher == b || strings.HasPrefix(s.Track, b) {
			t.Errorf("%s recorded: it never held the floor nor was unmuted", s.File)
		}
		checkRecordedSegment(t, dir, s)
	}
	if len(m.Runs) != 1 || m.Runs[0].Stopped.IsZero() || m.Runs[0].By != "host link "+conf {
		t.Errorf("runs %+v, want one by the host link, stopped", m.Runs)
	}
}

// syntheticMeeting starts conference conf on ts with a synthetic hub and
// synthetic rooms (q and h layers each), stopped when the test ends, and
// returns once every room receives the hub.
func syntheticMeeting(t *testing.T, ts *testServer, conf string, log *slog.Logger, rooms ...string) (hub, fleet *terminal.Fleet) {
	t.Helper()
	hub, err := terminal.StartFleet(ts.base, conf, []string{ts.demo.HostToken}, []string{"q", "h"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Stop)
	var tokens []string
	for _, id := range rooms {
		link := ts.terminalLink(t, id)
		tokens = append(tokens, link[strings.Index(link, "#t=")+3:])
	}
	fleet, err = terminal.StartFleet(ts.base, conf, tokens, []string{"q", "h"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Stop)
	waitUntil(t, 60*time.Second, "the rooms receiving the hub", func() (bool, string) {
		n := fleet.Receiving(time.Second)
		return n == len(rooms), fmt.Sprint(n)
	})
	return hub, fleet
}
