package signaling

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// TestRenderMinutesRange: the server refuses a range of a conference's
// recording with nothing recorded in it at once (ErrRangeNotRecorded,
// saying what the recording covers), before any render is queued, and
// queues one inside it (the job saying its range); a
// recording whose segments are all empty is nothing to render, for a
// range too; a conference never recorded is nothing to render.
func TestRenderMinutesRange(t *testing.T) {
	store, err := controlplane.Open(filepath.Join(t.TempDir(), "citybridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	recordings := t.TempDir()
	srv := New(Config{Store: store, Recordings: RecordingConfig{Dir: recordings}})
	t.Cleanup(srv.Close)
	day := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	write := func(conf string, ms int64) {
		t.Helper()
		m := record.Manifest{Conference: conf, Runs: []record.Run{{Started: day, Stopped: day.Add(10 * time.Second)}},
			Segments: []record.Segment{{File: "hub-camera-1.webm", Track: "hub-camera", Publisher: "hub", Kind: "video", Start: day, DurationMS: ms}}}
		b, _ := json.Marshal(m)
		if err := os.MkdirAll(filepath.Join(recordings, conf), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(recordings, conf, record.ManifestName), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("c1", 10000)
	write("c2", 0)
	outside := controlplane.MinutesRange{From: day.Add(time.Hour), To: day.Add(2 * time.Hour)}
	_, err = srv.RenderMinutes("c1", outside)
	if !errors.Is(err, controlplane.ErrRangeNotRecorded) || !strings.Contains(err.Error(), "the recording runs from 2026-12-06T09:00:00Z to 2026-12-06T09:00:10Z") {
		t.Errorf("a range after the recording: %v", err)
	}
	if _, ok := srv.renderer().Job("c1"); ok {
		t.Errorf("a render was queued for a refused range")
	}
	inside := controlplane.MinutesRange{From: day.Add(2 * time.Second), To: day.Add(4 * time.Second)}
	if j, err := srv.RenderMinutes("c1", inside); err != nil || j.State != record.JobQueued || !j.From.Equal(inside.From) || !j.To.Equal(inside.To) {
		t.Errorf("a range inside: %+v %v, want its job queued", j, err)
	}
	for _, c := range []struct {
		conf string
		rng  controlplane.MinutesRange
	}{{"c2", inside}, {"c3", inside}, {"c3", controlplane.MinutesRange{}}} {
		if _, err := srv.RenderMinutes(c.conf, c.rng); !errors.Is(err, controlplane.ErrNothingToRender) {
			t.Errorf("%s %+v: %v, want nothing to render", c.conf, c.rng, err)
		}
	}
}
