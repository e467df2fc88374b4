package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
	"citybridge/sfu/record/recordtest"
)

// minutesMarks: when, by the test's clock, the meeting's parts began.
type minutesMarks struct {
	started, stopped       time.Time // the recording
	floorGiven, floorTaken time.Time // room B's floor
	shared, unshared       time.Time // the screen
}

// checkMinutesVideo (TestBrowserRecording's end): the recording's stop
// renders the minutes video, whose progress the API shows until it is
// done. ffmpeg decodes the MP4 without an error, it lasts the meeting
// within a second, and its frames show the layouts: during the floor the
// right half (room B beside the hub) differs from the hub alone and
// holds a picture, not black; during the share the picture (the screen
// large) differs from the hub alone. The console says the video is ready.
func checkMinutesVideo(t *testing.T, ts *testServer, host *tab, dir string, at minutesMarks) {
	t.Helper()
	status := func() (controlplane.RecordingStatus, int) {
		req, _ := http.NewRequest("GET", ts.base+"/api/conferences/c1/recording", nil)
		req.Header.Set("Authorization", "Bearer "+ts.demo.HostToken)
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st controlplane.RecordingStatus
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st, resp.StatusCode
	}
	var seen []string
	waitUntil(t, 5*time.Minute, "the minutes video rendered", func() (bool, string) {
		st, code := status()
		if st.Minutes != nil {
			if s := fmt.Sprintf("%s %d%%", st.Minutes.State, st.Minutes.Percent); len(seen) == 0 || seen[len(seen)-1] != s {
				seen = append(seen, s)
			}
		}
		return code == http.StatusOK && st.Minutes != nil && st.Minutes.State != record.JobQueued && st.Minutes.State != record.JobRendering,
			fmt.Sprintf("%d %+v", code, st.Minutes)
	})
	st, _ := status()
	t.Logf("minutes video job: %v; %+v", seen, *st.Minutes)
	if st.Recording || st.Minutes.State != record.JobDone || st.Minutes.File != record.MinutesName {
		t.Fatalf("recording status after the render: %+v %+v", st, *st.Minutes)
	}
	waitUntil(t, 10*time.Second, "the console showing the minutes video ready", func() (bool, string) {
		s, err := eval[string](host, `document.getElementById("minutes").textContent`)
		return err == nil && (s == "Video biên bản đã xong" || s == "Minutes video ready"), fmt.Sprint(s, err)
	})
	path := filepath.Join(dir, record.MinutesName)
	if err := recordtest.Decode(path); err != nil {
		t.Errorf("the minutes video: %v", err)
	}
	probe, err := recordtest.ProbeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	length := probe.Duration
	meeting := at.stopped.Sub(at.started)
	t.Logf("minutes video: %+v; %v for a %v meeting", probe.Streams, length, meeting)
	var h264, aac, yuv420p bool
	for _, st := range probe.Streams {
		h264, aac, yuv420p = h264 || st.CodecName == "h264", aac || st.CodecName == "aac", yuv420p || st.PixFmt == "yuv420p"
	}
	if !h264 || !aac || !yuv420p {
		t.Errorf("minutes video streams: %+v", probe.Streams)
	}
	if d := length - meeting; d.Abs() > time.Second {
		t.Errorf("the minutes video lasts %v, the meeting %v", length, meeting)
	}
	// The video's time of a moment of the meeting: its start is the
	// run's (the server's clock), its end the run's stop.
	m, err := record.ReadManifest(dir)
	if err != nil || len(m.Runs) != 1 {
		t.Fatalf("manifest: %v %+v", err, m.Runs)
	}
	run := m.Runs[0]
	lead := length - run.Stopped.Sub(run.Started) // (frames placed before the run's start)
	// Each frame is sampled where the track that part shows was recorded
	// (on a loaded machine a browser pauses a layer for seconds; the
	// minutes show what was recorded), in the middle of its longest
	// stretch within the part.
	sample := func(track string, from, to time.Time) []byte {
		t.Helper()
		var best time.Duration
		var mid time.Time
		for _, s := range m.Segments {
			if s.Track != track {
				continue
			}
			a, b := s.Start, s.Start.Add(time.Duration(s.DurationMS)*time.Millisecond)
			a, b = maxTime(a, from), minTime(b, to)
			if d := b.Sub(a); d > best {
				best, mid = d, a.Add(d/2)
			}
		}
		if best < 500*time.Millisecond {
			t.Fatalf("%s recorded for %v between %v and %v, want some time to sample", track, best, from, to)
		}
		return frameAt(t, path, mid.Sub(run.Started)+lead)
	}
	b := ""
	for _, s := range m.Segments {
		if s.Track != "hub-camera" && strings.HasSuffix(s.Track, "-camera") {
			b = s.Track
		}
	}
	alone := sample("hub-camera", at.floorTaken.Add(500*time.Millisecond), at.shared)
	floor := sample(b, at.floorGiven, at.floorTaken)
	screen := sample("hub-screen", at.shared, at.unshared)
	right := func(f []byte, top, bottom int) []byte { return crop(f, frameW/2, frameW, top, bottom) }
	if d := meanDiff(right(floor, 0, frameH), right(alone, 0, frameH)); d < 10 {
		t.Errorf("the right half during the floor differs from the hub alone by %.1f, want room B's picture beside the hub", d)
	}
	if y := meanLuma(right(floor, frameH/4, frameH*3/4)); y < 30 {
		t.Errorf("room B's place during the floor: mean luma %.1f, black", y)
	}
	if d := meanDiff(screen, alone); d < 10 {
		t.Errorf("the picture during the share differs from the hub alone by %.1f, want the screen", d)
	}
	t.Logf("right half, floor against the hub alone: %.1f; share against the hub alone: %.1f",
		meanDiff(right(floor, 0, frameH), right(alone, 0, frameH)), meanDiff(screen, alone))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// The frames compared: grey, scaled down.
const frameW, frameH = 128, 72

// frameAt decodes the frame at t as frameW x frameH grey bytes.
func frameAt(t *testing.T, path string, at time.Duration) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-ss", strconv.FormatFloat(at.Seconds(), 'f', 3, 64), "-i", path,
		"-frames:v", "1", "-vf", fmt.Sprintf("scale=%d:%d,format=gray", frameW, frameH), "-f", "rawvideo", "-").Output()
	if err != nil || len(out) != frameW*frameH {
		t.Fatalf("frame at %v: %v (%d bytes)", at, err, len(out))
	}
	return out
}

func crop(f []byte, x0, x1, y0, y1 int) []byte {
	var out []byte
	for y := y0; y < y1; y++ {
		out = append(out, f[y*frameW+x0:y*frameW+x1]...)
	}
	return out
}

func meanDiff(a, b []byte) float64 {
	sum := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		sum += max(d, -d)
	}
	return float64(sum) / float64(len(a))
}

func meanLuma(a []byte) float64 {
	sum := 0
	for _, v := range a {
		sum += int(v)
	}
	return float64(sum) / float64(len(a))
}
