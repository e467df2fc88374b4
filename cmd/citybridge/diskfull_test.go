package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
	"citybridge/signaling/terminal"
	"citybridge/signaling/wire"
)

// requireRoot fails a test that mounts a file system when it does not run
// as root. scripts/test runs such tests as root (with sudo when it is run
// by a normal user: its rootOnly list), so they always run in CI.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to mount a tmpfs: run it as root, or through scripts/test (which uses sudo)")
	}
}

// mountTmpfs mounts a tmpfs of size bytes in a temporary directory,
// unmounted when the test ends.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillTo writes filler files into dir until at most free bytes are left
// (0: until the file system is full).
func fillTo(t *testing.T, dir string, free uint64) {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for {
		left, err := record.FreeBytes(dir)
		if err != nil {
			t.Fatal(err)
		}
		if left <= free {
			return
		}
		n := min(uint64(len(chunk)), left-free)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// TestRecordingDiskFull: a small tmpfs as --recordings, with synthetic
// terminals (a hub and two rooms) in conference c1.
//
//   - With less free than --recordings-min-free, the chair's record is
//     refused with no_space and a message saying how much is free, on
//     the console (signaling) and the API; nothing is recorded.
//   - Started with room, the tmpfs is filled to between the floor and
//     twice it: the technicians get the recording_space alert while the
//     recording goes on. Filled below the floor, the recording stops:
//     every page's indicator off, the run stopped by "system" in the
//     manifest, every segment matching its checksum, the audit log
//     saying the system stopped it (low_space).
//   - With no floor (--recordings-min-free 0), the tmpfs filled to the
//     last byte: a write fails, and the recording stops the same way
//     (disk_full), with the alert.
//
// Each time the rooms stay joined and keep receiving the hub.
func TestRecordingDiskFull(t *testing.T) {
	requireRoot(t)
	const conf = "c1"
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	t.Run("refused below the floor", func(t *testing.T) {
		mnt := mountTmpfs(t, 8<<20)
		ts := startTestServerWith(t, func(c *Config) { c.Recordings, c.RecordingsMinFree = mnt, 64e6 })
		code, body := apiCall(t, ts, "POST", "/api/conferences/"+conf+"/recording", ts.demo.HostToken)
		if code != http.StatusConflict || !strings.Contains(body, `"no_space"`) || !strings.Contains(body, "MB free") && !strings.Contains(body, "GB free") {
			t.Errorf("API: %d %s, want 409 no_space saying what is free", code, body)
		}
		host, _ := joinWith(t, ts, ts.demo.HostToken)
		if err := wsSend(host, wire.Control{Action: string(controlplane.ActionRecord)}); err != nil {
			t.Fatal(err)
		}
		m, err := wsNext(host, 5*time.Second, wire.TypeError)
		if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.CodeNoSpace || !strings.Contains(e.Message, "free in "+mnt) {
			t.Errorf("console: %+v %v, want a no_space error saying what is free", m, err)
		}
		if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
			t.Errorf("something was recorded: %v", ents)
		}
	})

	// meeting starts c1 with a hub and two rooms on ts, and returns the
	// fleets once the rooms receive the hub.
	meeting := func(t *testing.T, ts *testServer) (hub, rooms *terminal.Fleet) {
		t.Helper()
		return syntheticMeeting(t, ts, conf, log, "commune-001", "commune-002")
	}
	indicators := func(t *testing.T, want bool, fleets ...*terminal.Fleet) {
		t.Helper()
		waitUntil(t, 10*time.Second, fmt.Sprintf("every page's indicator %v", want), func() (bool, string) {
			var seen []string
			ok := true
			for _, f := range fleets {
				for i := range f.Terminals {
					on, known := f.Terminal(i).Recording()
					ok = ok && known && on == want
					seen = append(seen, fmt.Sprintf("%s %v/%v", f.Terminal(i).Bridge(), on, known))
				}
			}
			return ok, strings.Join(seen, ", ")
		})
	}
	// undisturbed: the rooms are still joined (no new join, no resume)
	// and receive the hub more than before.
	undisturbed := func(t *testing.T, rooms *terminal.Fleet, before []int64) {
		t.Helper()
		waitUntil(t, 10*time.Second, "the rooms receiving the hub after the stop", func() (bool, string) {
			var seen []string
			ok := rooms.Receiving(time.Second) == 2
			for i := range rooms.Terminals {
				r := rooms.Terminal(i)
				ok = ok && r.HubPackets() > before[i]+50
				seen = append(seen, fmt.Sprintf("%s: %s, %d packets (%d before), %d joins, %d resumes", r.Bridge(), r.State(), r.HubPackets(), before[i], r.Joins(), r.Resumes()))
			}
			return ok, strings.Join(seen, "; ")
		})
		for i := range rooms.Terminals {
			if r := rooms.Terminal(i); r.Joins() != 1 || r.Resumes() != 0 || r.State() != terminal.StateConnected {
				t.Errorf("%s: %s, %d joins, %d resumes: the meeting was disturbed", r.Bridge(), r.State(), r.Joins(), r.Resumes())
			}
		}
	}
	packets := func(rooms *terminal.Fleet) []int64 {
		var out []int64
		for i := range rooms.Terminals {
			out = append(out, rooms.Terminal(i).HubPackets())
		}
		return out
	}
	alerted := func(t *testing.T, ts *testServer) {
		t.Helper()
		waitUntil(t, 10*time.Second, "the technicians' recording_space alert", func() (bool, string) {
			code, body := apiCall(t, ts, "GET", "/api/alerts", ts.demo.TechnicianToken)
			var al []controlplane.Alert
			_ = json.Unmarshal([]byte(body), &al)
			for _, a := range al {
				if a.Kind == controlplane.AlertRecordingSpace && a.Cleared.IsZero() {
					return true, ""
				}
			}
			return false, fmt.Sprint(code, " ", body)
		})
	}
	stoppedBySystem := func(t *testing.T, ts *testServer, result string) {
		t.Helper()
		waitUntil(t, 15*time.Second, "the recording stopped", func() (bool, string) {
			_, body := apiCall(t, ts, "GET", "/api/conferences/"+conf+"/floor", ts.demo.HostToken)
			return strings.Contains(body, `"recording":false`), body
		})
		es, err := ts.store.AuditLog(time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range es {
			if e.Who == "system" && e.Action == "control stop_record" && e.Target == conf {
				n++
				if e.Result != result {
					t.Errorf("audited as stopped for %q, want %q", e.Result, result)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d audit entries of the system stopping the recording, want 1", n)
		}
	}

	t.Run("stops below the floor", func(t *testing.T) {
		const floor = 4 << 20
		mnt := mountTmpfs(t, 24<<20)
		ts := startTestServerWith(t, func(c *Config) {
			c.Recordings, c.RecordingsMinFree, c.RecordingSegment = mnt, floor, 2*time.Second
		})
		hub, rooms := meeting(t, ts)
		if code, body := apiCall(t, ts, "POST", "/api/conferences/"+conf+"/recording", ts.demo.HostToken); code != http.StatusOK {
			t.Fatalf("start recording: %d %s", code, body)
		}
		indicators(t, true, hub, rooms)
		dir := filepath.Join(mnt, conf)
		waitUntil(t, 30*time.Second, "a closed segment", func() (bool, string) {
			m, err := record.ReadManifest(dir)
			return err == nil && len(m.Segments) > 0, fmt.Sprint(err)
		})
		fillTo(t, mnt, 3*floor/2)
		alerted(t, ts)
		if _, body := apiCall(t, ts, "GET", "/api/conferences/"+conf+"/floor", ts.demo.HostToken); !strings.Contains(body, `"recording":true`) {
			t.Errorf("the recording stopped above the floor: %s", body)
		}
		before := packets(rooms)
		fillTo(t, mnt, floor/2)
		stoppedBySystem(t, ts, "low_space")
		indicators(t, false, hub, rooms)
		m, err := record.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Runs) != 1 || m.Runs[0].Stopped.IsZero() || m.Runs[0].StoppedBy != "system" {
			t.Errorf("runs %+v, want one stopped by the system", m.Runs)
		}
		for _, s := range m.Segments {
			sum, size, err := record.FileSum(filepath.Join(dir, s.File))
			if err != nil || sum != s.SHA256 || size != s.Bytes {
				t.Errorf("%s: %v, %d bytes %s; manifest %d bytes %s", s.File, err, size, sum, s.Bytes, s.SHA256)
			}
		}
		undisturbed(t, rooms, before)
		t.Logf("%d segments, %d bytes recorded before the stop", len(m.Segments), m.Bytes())
	})

	t.Run("stops on a full disk", func(t *testing.T) {
		mnt := mountTmpfs(t, 16<<20)
		ts := startTestServerWith(t, func(c *Config) {
			c.Recordings, c.RecordingsMinFree, c.RecordingSegment = mnt, 0, 2*time.Second
		})
		hub, rooms := meeting(t, ts)
		if code, body := apiCall(t, ts, "POST", "/api/conferences/"+conf+"/recording", ts.demo.HostToken); code != http.StatusOK {
			t.Fatalf("start recording: %d %s", code, body)
		}
		indicators(t, true, hub, rooms)
		waitUntil(t, 30*time.Second, "a closed segment", func() (bool, string) {
			m, err := record.ReadManifest(filepath.Join(mnt, conf))
			return err == nil && len(m.Segments) > 0, fmt.Sprint(err)
		})
		before := packets(rooms)
		fillTo(t, mnt, 0)
		stoppedBySystem(t, ts, "disk_full")
		alerted(t, ts)
		indicators(t, false, hub, rooms)
		undisturbed(t, rooms, before)
	})
}

// apiCall makes one API call with a bearer token and returns the status
// and the body.
func apiCall(t *testing.T, ts *testServer, method, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
