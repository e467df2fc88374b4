package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"citybridge/controlplane"
	"citybridge/sfu/record"
)

// TestRecordingFromAnyNode: the chair's recording calls reach the
// conference's owner from any node. Started at node-b, the conference
// served by node-a is recorded by node-a (its manifest has the run,
// node-b has no recording at all); the recording's status at node-b is
// node-a's; stopped at node-b, node-a stops. The archive at node-b,
// which has no files of the conference, is node-a's: the list, and a
// range of a file on node-a's disk. Once node-b has files of its own it
// answers from its own disk.
func TestRecordingFromAnyNode(t *testing.T) {
	t.Parallel()
	a, b, conf, _ := twoNodes(t, "recording")
	host := a.demo.HostToken
	aDir, bDir := filepath.Join(a.cfg.Data, "recordings"), filepath.Join(b.cfg.Data, "recordings")
	status := func(ts *testServer) controlplane.RecordingStatus {
		t.Helper()
		code, body := get(t, ts, "/api/conferences/"+conf+"/recording", host)
		var st controlplane.RecordingStatus
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("recording status at %s: %d %s", ts.cfg.Node, code, body)
		}
		return st
	}

	if code, body := callAs(t, b, http.MethodPost, "/api/conferences/"+conf+"/recording", host); code != http.StatusOK {
		t.Fatalf("start recording at node-b: %d %s", code, body)
	}
	m, err := record.ReadManifest(filepath.Join(aDir, conf))
	if err != nil || len(m.Runs) != 1 || !m.Runs[0].Stopped.IsZero() {
		t.Fatalf("node-a's manifest after a start at node-b: %+v %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(bDir, conf)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node-b recorded the conference node-a serves: %v", err)
	}
	if !status(a).Recording || !status(b).Recording {
		t.Errorf("recording at node-a %v, as node-b says %v: want both", status(a).Recording, status(b).Recording)
	}
	if code, body := callAs(t, b, http.MethodDelete, "/api/conferences/"+conf+"/recording", host); code != http.StatusOK {
		t.Fatalf("stop recording at node-b: %d %s", code, body)
	}
	if m, err = record.ReadManifest(filepath.Join(aDir, conf)); err != nil || len(m.Runs) != 1 || m.Runs[0].Stopped.IsZero() {
		t.Fatalf("node-a's manifest after a stop at node-b: %+v %v", m, err)
	}
	if status(a).Recording || status(b).Recording {
		t.Error("still recording after the stop at node-b")
	}

	// The archive: node-a's files, asked of node-b.
	seg := fakeRecordingIn(t, aDir, conf)
	content, err := os.ReadFile(filepath.Join(aDir, conf, seg.File))
	if err != nil {
		t.Fatal(err)
	}
	list := func(ts *testServer) controlplane.Recordings {
		t.Helper()
		code, body := get(t, ts, "/api/conferences/"+conf+"/recordings", host)
		var got controlplane.Recordings
		if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("recordings at %s: %d %s", ts.cfg.Node, code, body)
		}
		return got
	}
	if got := list(b); len(got.Segments) != 1 || got.Segments[0].File != seg.File || len(got.Runs) != 1 {
		t.Errorf("recordings at node-b: %+v, want node-a's %s", got, seg.File)
	}
	req, _ := http.NewRequest(http.MethodGet, b.base+"/api/conferences/"+conf+"/recordings/"+seg.File, nil)
	req.Header.Set("Authorization", "Bearer "+host)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, _ = got.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got.Bytes(), content[10:20]) {
		t.Errorf("node-a's file downloaded at node-b: %d, %d bytes (equal: %v)", resp.StatusCode, got.Len(), bytes.Equal(got.Bytes(), content[10:20]))
	}

	// node-b's own files are answered from its own disk.
	own := fakeRecordingIn(t, bDir, conf)
	if got := list(b); len(got.Segments) != 1 || got.Segments[0].File != own.File {
		t.Errorf("recordings at node-b with its own: %+v, want %s", got.Segments, own.File)
	}
}
