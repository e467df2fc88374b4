package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// fakeRecording adds one recorded file (4 KB of random bytes, named as
// the recorder names a camera's segment) to conference's manifest in
// ts's recordings directory, as a closed segment of a run started by
// "test chair".
func fakeRecording(t *testing.T, ts *testServer, conference string) record.Segment {
	t.Helper()
	return fakeRecordingIn(t, filepath.Join(ts.cfg.Data, "recordings"), conference)
}

// fakeRecordingIn is fakeRecording in the recordings directory recordings.
func fakeRecordingIn(t *testing.T, recordings, conference string) record.Segment {
	t.Helper()
	dir := filepath.Join(recordings, conference)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	m, err := record.ReadManifest(dir)
	if errors.Is(err, os.ErrNotExist) {
		m = record.Manifest{Conference: conference}
	} else if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Add(-time.Minute)
	if len(m.Runs) == 0 {
		m.Runs = append(m.Runs, record.Run{Started: start.Add(-time.Second), By: "test chair", Stopped: start.Add(time.Minute)})
	}
	b := make([]byte, 4096)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("hub-camera-%s-%d.webm", start.Format("20060102T150405.000Z"), uniq.Add(1))
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	sum, size, err := record.FileSum(path)
	if err != nil {
		t.Fatal(err)
	}
	s := record.Segment{File: name, Track: "hub-camera", Publisher: "hub", Kind: "video", Codec: "video/VP8",
		Start: start, End: start.Add(50 * time.Second), DurationMS: 50000, Frames: 1500, Bytes: size, SHA256: sum}
	m.Segments = append(m.Segments, s)
	j, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, record.ManifestName), j, 0o640); err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeMinutes puts a minutes video (8 KB of random bytes) and its
// minutes.json in a conference's recording directory, as a finished
// render leaves them.
func fakeMinutes(t *testing.T, dir string) record.MinutesInfo {
	t.Helper()
	b := make([]byte, 8192)
	_, _ = rand.Read(b)
	path := filepath.Join(dir, record.MinutesName)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	sum, size, err := record.FileSum(path)
	if err != nil {
		t.Fatal(err)
	}
	info := record.MinutesInfo{File: record.MinutesName, Bytes: size, SHA256: sum, DurationMS: 100000, Segments: 1,
		Rendered: time.Now().UTC().Truncate(time.Second), RenderMS: 1234}
	j, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, record.MinutesInfoName), j, 0o640); err != nil {
		t.Fatal(err)
	}
	return info
}

// filesUnder is every file under dir with its content's checksum.
func filesUnder(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		sum, _, err := record.FileSum(path)
		out[path] = sum
		return err
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// auditSince is the audit log's entries after seq.
func auditSince(t *testing.T, ts *testServer, seq uint64) []controlplane.AuditEntry {
	t.Helper()
	var out []controlplane.AuditEntry
	if err := ts.store.EachAudit(time.Time{}, time.Time{}, seq, func(e controlplane.AuditEntry) bool {
		out = append(out, e)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func lastAuditSeq(t *testing.T, ts *testServer) uint64 {
	t.Helper()
	var seq uint64
	for _, e := range auditSince(t, ts, 0) {
		seq = e.Seq
	}
	return seq
}

// TestRecordingAccess: the archive's three operations (list, download,
// delete) called as every caller of docs/SECURITY.md's table, expecting
// what the table says: an allowed list shows the manifest's files
// (sizes, checksums, who started the run), an allowed download is the
// file itself and is audited, an allowed delete removes the conference's
// recordings and is audited; a refused call gets 401 or 403 and changes
// neither the store (audit log included) nor a file. Then: a range
// request gets 206 and exactly those bytes; names that are no file of
// the manifest (a path out of the directory, the manifest itself, a
// hidden file) are refused; deleting while the conference is recorded
// is refused (409) and removes nothing.
func TestRecordingAccess(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	credential, call := authzCallers(t, ts)
	doc := docAllowed(t)
	const base = "/api/conferences/c1/recordings"
	recordings := filepath.Join(ts.cfg.Data, "recordings")
	dir := filepath.Join(recordings, "c1")
	fakeRecording(t, ts, "c1")
	seg := fakeRecording(t, ts, "c1")
	content, err := os.ReadFile(filepath.Join(dir, seg.File))
	if err != nil {
		t.Fatal(err)
	}
	minutes := fakeMinutes(t, dir)
	// A file beside the recordings that no manifest lists, and one out
	// of the recordings directory altogether.
	if err := os.WriteFile(filepath.Join(dir, ".hidden.webm"), []byte("not listed"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stray.webm"), []byte("not listed"), 0o640); err != nil {
		t.Fatal(err)
	}

	ops := []struct {
		method, pattern string
		path            func() string
		allowed         func(t *testing.T, code int, body string, audited []controlplane.AuditEntry)
	}{
		{"GET", "/api/conferences/{id}/recordings", func() string { return base }, func(t *testing.T, code int, body string, audited []controlplane.AuditEntry) {
			var got controlplane.Recordings
			if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
				t.Fatalf("list: %d %s", code, body)
			}
			m, err := record.ReadManifest(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.Files != len(m.Segments)+1 || len(got.Segments) != len(m.Segments) || got.Bytes != m.Bytes()+minutes.Bytes || got.Recording {
				t.Fatalf("list: %d files, %d bytes, recording %v; the manifest has %d files, %d bytes, the minutes video %d",
					got.Files, got.Bytes, got.Recording, len(m.Segments), m.Bytes(), minutes.Bytes)
			}
			if len(got.Minutes) != 1 || got.Minutes[0].File != record.MinutesName || got.Minutes[0].Bytes != minutes.Bytes ||
				got.Minutes[0].SHA256 != minutes.SHA256 || got.Minutes[0].DurationMS != minutes.DurationMS ||
				got.Minutes[0].URL != base+"/"+record.MinutesName || !got.Minutes[0].End.Equal(minutes.Rendered) {
				t.Errorf("minutes: %+v, minutes.json %+v", got.Minutes, minutes)
			}
			for i, s := range got.Segments {
				w := m.Segments[i]
				if s.File != w.File || s.SHA256 != w.SHA256 || s.Bytes != w.Bytes || s.DurationMS != w.DurationMS ||
					s.Track != w.Track || !s.Start.Equal(w.Start) || s.By != "test chair" || s.URL != base+"/"+w.File {
					t.Errorf("segment %d: %+v, manifest %+v", i, s, w)
				}
			}
			if len(got.Runs) != 1 || got.Runs[0].By != "test chair" {
				t.Errorf("runs: %+v", got.Runs)
			}
			if len(audited) != 0 {
				t.Errorf("a list was audited: %+v", audited)
			}
		}},
		{"GET", "/api/conferences/{id}/recordings/{file}", func() string { return base + "/" + seg.File }, func(t *testing.T, code int, body string, audited []controlplane.AuditEntry) {
			if code != http.StatusOK || body != string(content) {
				t.Fatalf("download: %d, %d bytes (want %d)", code, len(body), len(content))
			}
			if len(audited) != 1 || audited[0].Action != "GET /api/conferences/{id}/recordings/{file}" || audited[0].Target != base+"/"+seg.File || audited[0].Role == "" {
				t.Errorf("the download's audit entries: %+v", audited)
			}
		}},
		{"DELETE", "/api/conferences/{id}/recordings", func() string { return base }, func(t *testing.T, code int, body string, audited []controlplane.AuditEntry) {
			if code != http.StatusOK || !strings.Contains(body, `"files":`) {
				t.Fatalf("delete: %d %s", code, body)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("c1's recordings are still there: %v", err)
			}
			if len(audited) != 1 || audited[0].Action != "DELETE /api/conferences/{id}/recordings" || audited[0].Target != base || audited[0].Role != controlplane.RoleAdmin {
				t.Errorf("the deletion's audit entries: %+v", audited)
			}
			// Back as it was for the next caller.
			if err := os.MkdirAll(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			fakeRecording(t, ts, "c1")
			seg = fakeRecording(t, ts, "c1")
			if content, err = os.ReadFile(filepath.Join(dir, seg.File)); err != nil {
				t.Fatal(err)
			}
			minutes = fakeMinutes(t, dir)
		}},
	}
	for _, op := range ops {
		allowedCallers, ok := doc[op.method+" "+op.pattern]
		if !ok {
			t.Fatalf("%s %s is not in docs/SECURITY.md's table", op.method, op.pattern)
		}
		for _, caller := range allCallers {
			t.Run(op.method+" "+op.pattern+" as "+caller, func(t *testing.T) {
				cred := credential(t, caller)
				storeBefore, err := ts.store.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				filesBefore, seq := filesUnder(t, recordings), lastAuditSeq(t, ts)
				code, body := call(t, op.method, op.path(), "", cred, ts.base)
				if slices.Contains(allowedCallers, caller) {
					op.allowed(t, code, body, auditSince(t, ts, seq))
					return
				}
				want := http.StatusForbidden
				if caller == anon || caller == revTok || caller == expLog {
					want = http.StatusUnauthorized
				}
				if code != want || bytes.Contains([]byte(body), content) {
					t.Fatalf("refused call: %d %.200s, want %d", code, body, want)
				}
				storeAfter, err := ts.store.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(storeBefore, storeAfter) {
					t.Errorf("a refused call changed the store: %s", diffKeys(storeBefore, storeAfter))
				}
				if after := filesUnder(t, recordings); !maps.Equal(filesBefore, after) {
					t.Errorf("a refused call changed the recordings: %v -> %v", filesBefore, after)
				}
			})
		}
	}

	admin, host := credential(t, adminLog), credential(t, hostTok)
	get := func(t *testing.T, path string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", ts.base+path, nil)
		host(req)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	t.Run("range", func(t *testing.T) {
		resp, b := get(t, base+"/"+seg.File, "Range", "bytes=100-199")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, content[100:200]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(content)) {
			t.Errorf("bytes=100-199: %d, Content-Range %q, %d bytes (equal: %v)", resp.StatusCode,
				resp.Header.Get("Content-Range"), len(b), bytes.Equal(b, content[100:200]))
		}
		resp, b = get(t, base+"/"+seg.File, "Range", "bytes=-10")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, content[len(content)-10:]) {
			t.Errorf("bytes=-10: %d, %d bytes", resp.StatusCode, len(b))
		}
		resp, _ = get(t, base+"/"+seg.File, "Range", fmt.Sprintf("bytes=%d-", len(content)+10))
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("a range past the end: %d, want 416", resp.StatusCode)
		}
	})

	t.Run("minutes video", func(t *testing.T) {
		video, err := os.ReadFile(filepath.Join(dir, record.MinutesName))
		if err != nil {
			t.Fatal(err)
		}
		seq := lastAuditSeq(t, ts)
		resp, b := get(t, base+"/"+record.MinutesName, "Range", "bytes=1000-2999")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, video[1000:3000]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-2999/%d", len(video)) ||
			resp.Header.Get("Content-Type") != "video/mp4" || resp.Header.Get("ETag") != `"`+minutes.SHA256+`"` {
			t.Errorf("minutes.mp4 bytes=1000-2999: %d, %v, %d bytes (equal: %v)", resp.StatusCode, resp.Header,
				len(b), bytes.Equal(b, video[1000:3000]))
		}
		if a := auditSince(t, ts, seq); len(a) != 1 || a[0].Action != "GET /api/conferences/{id}/recordings/{file}" || a[0].Target != base+"/"+record.MinutesName {
			t.Errorf("the minutes video's download was not audited as a segment's is: %+v", a)
		}
		// Look-alikes of its name, its description, and its unfinished
		// render are no file of the archive.
		if err := os.WriteFile(filepath.Join(dir, record.MinutesName+".part"), []byte("not listed"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Minutes.mp4"), []byte("not listed"), 0o640); err != nil {
			t.Fatal(err)
		}
		seq = lastAuditSeq(t, ts)
		for _, name := range []string{record.MinutesName + ".part", "Minutes.mp4", record.MinutesInfoName, "minutes.mp4%20",
			"minutes.mp", "xminutes.mp4", "minutes.mp4%2F", "..%2Fc1%2F" + record.MinutesName} {
			resp, b := get(t, base+"/"+name)
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: %d %.100s, want 400 or 404", name, resp.StatusCode, b)
			}
			if bytes.Contains(b, []byte("not listed")) || bytes.Contains(b, video[:64]) || bytes.Contains(b, []byte(minutes.SHA256)) {
				t.Errorf("%s: the answer holds a file: %.100s", name, b)
			}
		}
		// A video no render described (one being renamed into place, say)
		// is not served either.
		info := filepath.Join(dir, record.MinutesInfoName)
		described, err := os.ReadFile(info)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(info); err != nil {
			t.Fatal(err)
		}
		if resp, _ := get(t, base+"/"+record.MinutesName); resp.StatusCode != http.StatusNotFound {
			t.Errorf("minutes.mp4 without minutes.json: %d, want 404", resp.StatusCode)
		}
		if a := auditSince(t, ts, seq); len(a) != 0 {
			t.Errorf("refused downloads were audited as downloads: %+v", a)
		}
		if err := os.WriteFile(info, described, 0o640); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("names that are no file of the manifest", func(t *testing.T) {
		db, _ := os.ReadFile(filepath.Join(ts.cfg.Data, "citybridge.db"))
		seq := lastAuditSeq(t, ts)
		for _, name := range []string{
			"..%2F..%2Fcitybridge.db", "..%2F..%2F..%2Fetc%2Fpasswd", "%2E%2E%2Fc1%2F" + seg.File, "..%5C..%5Ccitybridge.db",
			record.ManifestName, ".hidden.webm", "stray.webm", "%2Fetc%2Fpasswd", "%2E%2E", "nope.webm",
		} {
			resp, b := get(t, base+"/"+name)
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: %d %.100s, want 400 or 404", name, resp.StatusCode, b)
			}
			if len(b) > 0 && (bytes.Contains(b, []byte("not listed")) || (len(db) > 0 && bytes.Contains(b, db[:64])) || bytes.Contains(b, []byte(`"segments"`))) {
				t.Errorf("%s: the answer holds a file: %.100s", name, b)
			}
		}
		if a := auditSince(t, ts, seq); len(a) != 0 {
			t.Errorf("refused downloads were audited as downloads: %+v", a)
		}
	})

	t.Run("no deletion while recorded", func(t *testing.T) {
		if code, body := call(t, "POST", "/api/conferences/c1/recording", "", host, ts.base); code != http.StatusOK {
			t.Fatalf("start recording: %d %s", code, body)
		}
		before, seq := filesUnder(t, recordings), lastAuditSeq(t, ts)
		code, body := call(t, "DELETE", base, "", admin, ts.base)
		if code != http.StatusConflict {
			t.Errorf("delete while recorded: %d %s, want 409", code, body)
		}
		if after := filesUnder(t, recordings); !maps.Equal(before, after) {
			t.Errorf("a refused deletion changed the recordings: %v -> %v", before, after)
		}
		if a := auditSince(t, ts, seq); len(a) != 0 {
			t.Errorf("a refused deletion was audited: %+v", a)
		}
		if code, body := call(t, "DELETE", "/api/conferences/c1/recording", "", host, ts.base); code != http.StatusOK {
			t.Fatalf("stop recording: %d %s", code, body)
		}
		if code, body := call(t, "DELETE", base, "", admin, ts.base); code != http.StatusOK {
			t.Fatalf("delete once stopped: %d %s", code, body)
		}
		resp, b := get(t, base)
		var got controlplane.Recordings
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Files != 0 || len(got.Segments) != 0 {
			t.Errorf("list after deletion: %d %s", resp.StatusCode, b)
		}
		for _, f := range []string{seg.File, record.MinutesName} {
			if resp, _ := get(t, base+"/"+f); resp.StatusCode != http.StatusNotFound {
				t.Errorf("a deleted file, %s: %d, want 404", f, resp.StatusCode)
			}
		}
	})
}
