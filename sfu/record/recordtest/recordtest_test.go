package recordtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestProbeAndDecode: a second of H.264 (160x120) and AAC made by ffmpeg
// probes as those two streams lasting a second, and decodes; the same
// file cut short does not, nor does a file that is not media.
func TestProbeAndDecode(t *testing.T) {
	NeedTools(t, "ffprobe", "ffmpeg")
	dir := t.TempDir()
	path := filepath.Join(dir, "a.mp4")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-f", "lavfi", "-i", "sine=d=1",
		"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	p, err := ProbeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Stream{{CodecType: "video", CodecName: "h264", Width: 160, Height: 120, PixFmt: "yuv420p"}, {CodecType: "audio", CodecName: "aac"}}
	if len(p.Streams) != 2 || p.Streams[0] != want[0] || p.Streams[1] != want[1] || p.Duration < 950*time.Millisecond || p.Duration > 1100*time.Millisecond {
		t.Errorf("probe %+v, want %+v lasting 1 s", p, want)
	}
	if err := Decode(path); err != nil {
		t.Error(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.mp4")
	if err := os.WriteFile(short, b[:len(b)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Decode(short); err == nil {
		t.Errorf("a file cut short decodes without an error")
	}
	junk := filepath.Join(dir, "junk.webm")
	if err := os.WriteFile(junk, []byte("not media"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := ProbeFile(junk); err == nil {
		t.Errorf("junk probes as %+v", p)
	}
}
