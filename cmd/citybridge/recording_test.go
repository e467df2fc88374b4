package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
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
	for _, tool := range []string{"ffprobe", "ffmpeg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/test installs it): %v", tool, err)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	addr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	udp := freeUDPPort(t)
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
	_ = p.cmd.Wait()
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
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", s.File, err)
		return
	}
	if got := sha256Hex(b); got != s.SHA256 || int64(len(b)) != s.Bytes {
		t.Errorf("%s: sha256 %s, %d bytes; manifest %s, %d bytes", s.File, got, len(b), s.SHA256, s.Bytes)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-of", "json", "-show_entries",
		"stream=codec_name,width,height:format=duration", path).Output()
	if err != nil {
		t.Errorf("ffprobe %s: %v", s.File, err)
		return
	}
	var probe struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &probe); err != nil || len(probe.Streams) != 1 {
		t.Errorf("ffprobe %s: %s (%v)", s.File, out, err)
		return
	}
	want := map[string]string{"video/VP8": "vp8", "video/H264": "h264", "audio/opus": "opus"}[s.Codec]
	st := probe.Streams[0]
	if st.CodecName != want || st.Width != s.Width || st.Height != s.Height {
		t.Errorf("%s: ffprobe %s %dx%d; manifest %s %dx%d", s.File, st.CodecName, st.Width, st.Height, s.Codec, s.Width, s.Height)
	}
	d, err := strconv.ParseFloat(probe.Format.Duration, 64)
	if err != nil || d*1000 < float64(s.DurationMS)-100 || d*1000 > float64(s.DurationMS)+100 || d <= 0 {
		t.Errorf("%s: ffprobe duration %q s, manifest %d ms", s.File, probe.Format.Duration, s.DurationMS)
	}
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("ffmpeg decoding %s: %v: %s", s.File, err, out)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
