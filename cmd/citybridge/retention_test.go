package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/sfu/record"
)

// ageRecording moves every time in conference's manifest so that its
// last segment ends at end.
func ageRecording(t *testing.T, recordings, conference string, end time.Time) {
	t.Helper()
	dir := filepath.Join(recordings, conference)
	m, err := record.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	shift := end.Sub(m.LastEnd())
	for i := range m.Segments {
		m.Segments[i].Start = m.Segments[i].Start.Add(shift)
		m.Segments[i].End = m.Segments[i].End.Add(shift)
	}
	for i := range m.Runs {
		m.Runs[i].Started = m.Runs[i].Started.Add(shift)
		m.Runs[i].Stopped = m.Runs[i].Stopped.Add(shift)
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, record.ManifestName), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestRecordingRetention: --recordings-keep 90d with the sweep's clock in
// the test's hands. At start, a conference whose recording ended 100 days
// ago is deleted, one of a day ago is kept. With the clock 91 days on,
// the sweep deletes that one too but keeps c1, which is being recorded
// (its old files with it); once c1's recording stops, the next sweep
// deletes it. Each deletion is audited by "system". With keep 0 nothing
// ever expires; the flag takes days, hours and 0.
func TestRecordingRetention(t *testing.T) {
	t.Parallel()
	var clock atomic.Pointer[time.Time]
	now := time.Now()
	clock.Store(&now)
	var recordings string
	ts := startTestServerWith(t, func(c *Config) {
		recordings = filepath.Join(c.Data, "recordings")
		for conf, ended := range map[string]time.Duration{"old": 100 * 24 * time.Hour, "recent": 24 * time.Hour, "c1": 100 * 24 * time.Hour} {
			fakeRecordingIn(t, recordings, conf)
			ageRecording(t, recordings, conf, now.Add(-ended))
		}
		c.RecordingsKeep = days(90 * 24 * time.Hour)
		c.recordingsClock = func() time.Time { return *clock.Load() }
	})
	exists := func(conf string) bool {
		_, err := os.Stat(filepath.Join(recordings, conf))
		return !errors.Is(err, os.ErrNotExist)
	}
	// The sweep at start runs beside the server; c1 is not recorded yet,
	// so it goes too (ended 100 days ago).
	waitUntil(t, 10*time.Second, "the start's sweep", func() (bool, string) {
		return !exists("old") && !exists("c1"), ""
	})
	if !exists("recent") {
		t.Fatal("the sweep at start deleted a recording of yesterday")
	}
	fakeRecordingIn(t, recordings, "c1")
	ageRecording(t, recordings, "c1", now.Add(-100*24*time.Hour))
	if code, body := apiCall(t, ts, "POST", "/api/conferences/c1/recording", ts.demo.HostToken); code != 200 {
		t.Fatalf("start recording: %d %s", code, body)
	}
	later := now.Add(91 * 24 * time.Hour)
	clock.Store(&later)
	if got := ts.sig.SweepRecordings(); !slices.Equal(got, []string{"recent"}) {
		t.Errorf("sweep 91 days on: deleted %v, want [recent] (c1 is being recorded)", got)
	}
	if exists("recent") || !exists("c1") {
		t.Errorf("after the sweep: recent there %v, c1 there %v", exists("recent"), exists("c1"))
	}
	if code, body := apiCall(t, ts, "DELETE", "/api/conferences/c1/recording", ts.demo.HostToken); code != 200 {
		t.Fatalf("stop recording: %d %s", code, body)
	}
	if got := ts.sig.SweepRecordings(); !slices.Equal(got, []string{"c1"}) || exists("c1") {
		t.Errorf("sweep once c1 stopped: deleted %v", got)
	}
	es, err := ts.store.AuditLog(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var audited []string
	for _, e := range es {
		if e.Who == "system" && strings.HasPrefix(e.Action, "delete recordings") && strings.HasPrefix(e.Result, "ok") {
			audited = append(audited, e.Target)
		}
	}
	slices.Sort(audited)
	if !slices.Equal(audited, []string{"c1", "c1", "old", "recent"}) {
		t.Errorf("audited deletions %v, want c1 (at start and after its recording), old, recent", audited)
	}

	fakeRecordingIn(t, recordings, "kept")
	ageRecording(t, recordings, "kept", now.Add(-10*365*24*time.Hour))
	if got, err := (record.Archive{Dir: recordings}).Expired(0, later); err != nil || len(got) != 0 {
		t.Errorf("keep 0 expired %v (%v), want nothing", got, err)
	}

	getenv := func(string) string { return "" }
	if cfg, err := parseServeFlags(nil, getenv, io.Discard); err != nil || time.Duration(cfg.RecordingsKeep) != 90*24*time.Hour {
		t.Errorf("default keep: %v %v, want 90d", cfg.RecordingsKeep, err)
	}
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "0": 0, "36h": 36 * time.Hour, "1d": 24 * time.Hour} {
		if cfg, err := parseServeFlags([]string{"--recordings-keep", in}, getenv, io.Discard); err != nil || time.Duration(cfg.RecordingsKeep) != want {
			t.Errorf("--recordings-keep %s: %v %v, want %v", in, time.Duration(cfg.RecordingsKeep), err, want)
		}
	}
	for _, bad := range []string{"forever", "-1d", "-5h", "d", "1.5d"} {
		if _, err := parseServeFlags([]string{"--recordings-keep", bad}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "recordings-keep") {
			t.Errorf("--recordings-keep %q accepted: %v", bad, err)
		}
	}
}
