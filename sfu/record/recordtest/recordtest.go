// Package recordtest reads media files the way the recording tests check
// them: ffprobe's streams and duration, and ffmpeg decoding without an
// error. It is imported by tests only (sfu/record's and cmd/citybridge's);
// it does not import sfu/record, whose own tests use it.
package recordtest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NeedTools fails t unless every tool (ffprobe, ffmpeg) is on the PATH.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/test installs it): %v", tool, err)
		}
	}
}

// Stream is one stream of a file, as ffprobe reads it.
type Stream struct {
	CodecType string `json:"codec_type"` // "video", "audio"
	CodecName string `json:"codec_name"` // "vp8", "h264", "opus", "aac"
	Width     int    `json:"width"`      // video only
	Height    int    `json:"height"`
	PixFmt    string `json:"pix_fmt"` // video only
}

// Probe is what ffprobe reads of a file.
type Probe struct {
	Streams  []Stream
	Duration time.Duration // the container's
}

// ProbeFile runs ffprobe on path.
func ProbeFile(path string) (Probe, error) {
	out, err := exec.Command("ffprobe", "-v", "error", "-of", "json", "-show_entries",
		"stream=codec_type,codec_name,width,height,pix_fmt:format=duration", path).Output()
	if err != nil {
		return Probe{}, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	var probe struct {
		Streams []Stream `json:"streams"`
		Format  struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		return Probe{}, fmt.Errorf("ffprobe %s: %w: %s", path, err, out)
	}
	d, err := strconv.ParseFloat(probe.Format.Duration, 64)
	if err != nil {
		return Probe{}, fmt.Errorf("ffprobe %s: duration %q: %s", path, probe.Format.Duration, out)
	}
	return Probe{Streams: probe.Streams, Duration: time.Duration(d * float64(time.Second))}, nil
}

// Decode runs ffmpeg on path, decoding every stream to nothing, with
// outputArgs before the null output (e.g. "-fps_mode", "passthrough"). It
// fails when ffmpeg does or when it reports anything (at -v error).
func Decode(path string, outputArgs ...string) error {
	args := append([]string{"-v", "error", "-i", path}, outputArgs...)
	out, err := exec.Command("ffmpeg", append(args, "-f", "null", "-")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		return fmt.Errorf("ffmpeg decoding %s: %v: %s", path, err, out)
	}
	return nil
}

// DecodeSegment is Decode for a recording's segment: every frame passes
// at its own time (no frame dropped or duplicated to a rate).
func DecodeSegment(path string) error {
	return Decode(path, "-fps_mode", "passthrough", "-enc_time_base", "-1")
}
