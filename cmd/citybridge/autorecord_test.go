package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"
	"citybridge/signaling/terminal"
)

// TestAutoRecord: a conference created with auto_record (the API, as the
// admin page sends it) starts recording by itself when it goes live, by
// "auto": with its hub joined (the hub's indicator on, the hub's camera
// recorded, the manifest's run by "auto"), and with nobody joined yet.
// The field reads back, is changed with PUT, and a body that is wrong
// changes nothing; a conference without it is not recorded when it goes
// live. Every automatic start is audited by "auto".
func TestAutoRecord(t *testing.T) {
	t.Parallel()
	ts := startTestServerWith(t, func(c *Config) { c.RecordingSegment = 2 * time.Second })
	if err := ts.store.SetPassword("admin", adminPass); err != nil {
		t.Fatal(err)
	}
	credential, call := authzCallers(t, ts)
	admin := credential(t, adminLog)
	api := func(method, path, body string, out any) int {
		t.Helper()
		code, answer := call(t, method, path, body, admin, ts.base)
		if out != nil && code < 300 {
			if err := json.Unmarshal([]byte(answer), out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, answer)
			}
		}
		return code
	}
	create := func(title string, auto bool) controlplane.Conference {
		t.Helper()
		var c controlplane.Conference
		if code := api("POST", "/api/conferences", fmt.Sprintf(`{"title":%q,"all_bridges":true,"auto_record":%v}`, title, auto), &c); code != http.StatusCreated || c.AutoRecord != auto {
			t.Fatalf("create %s: %d %+v", title, code, c)
		}
		return c
	}
	state := func(id, st string) {
		t.Helper()
		if code := api("POST", "/api/conferences/"+id+"/state", `{"state":"`+st+`"}`, nil); code != http.StatusOK {
			t.Fatalf("%s to %s: %d", id, st, code)
		}
	}
	recording := func(id string) bool {
		t.Helper()
		st, err := ts.store.LiveState(id)
		if err != nil {
			t.Fatal(err)
		}
		return st.Recording
	}

	// The field: read back, changed, and left alone by a bad body.
	a := create("Tự ghi hình", true)
	var got controlplane.Conference
	if api("GET", "/api/conferences/"+a.ID, "", &got); !got.AutoRecord {
		t.Errorf("auto_record not kept: %+v", got)
	}
	if code := api("PUT", "/api/conferences/"+a.ID, `{"title":"Tự ghi hình","all_bridges":true,"auto_record":"yes"}`, nil); code != http.StatusBadRequest {
		t.Errorf("auto_record \"yes\": %d, want 400", code)
	}
	got = controlplane.Conference{}
	if api("GET", "/api/conferences/"+a.ID, "", &got); !got.AutoRecord {
		t.Errorf("a refused change changed auto_record: %+v", got)
	}
	for _, want := range []bool{false, true} {
		got = controlplane.Conference{}
		if code := api("PUT", "/api/conferences/"+a.ID, fmt.Sprintf(`{"title":"Tự ghi hình","all_bridges":true,"auto_record":%v}`, want), &got); code != http.StatusOK || got.AutoRecord != want {
			t.Errorf("PUT auto_record %v: %d %+v", want, code, got)
		}
	}
	var list []struct {
		ID         string `json:"id"`
		AutoRecord bool   `json:"auto_record"`
	}
	api("GET", "/api/conferences", "", &list)
	for _, c := range list {
		if c.ID == a.ID && !c.AutoRecord {
			t.Errorf("the list does not say %s records itself", a.ID)
		}
	}

	// Live with its hub joined.
	state(a.ID, "open")
	host, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleHost, Conference: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	hub, err := terminal.StartFleet(ts.base, a.ID, []string{host}, []string{"q"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Stop)
	waitUntil(t, 30*time.Second, "the hub joined (its first floor message)", func() (bool, string) {
		_, known := hub.Terminal(0).Recording()
		return known, hub.Terminal(0).State()
	})
	if on, _ := hub.Terminal(0).Recording(); on || recording(a.ID) {
		t.Fatal("recorded before going live")
	}
	state(a.ID, "live")
	waitUntil(t, 10*time.Second, "the hub's indicator on", func() (bool, string) {
		on, known := hub.Terminal(0).Recording()
		return on, fmt.Sprint(on, known)
	})
	dir := filepath.Join(ts.cfg.Data, "recordings", a.ID)
	waitUntil(t, 30*time.Second, "a closed segment of the hub's camera", func() (bool, string) {
		m, err := record.ReadManifest(dir)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range m.Segments {
			if s.Track == "hub-camera" {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(m.Segments), " segments")
	})
	m, _ := record.ReadManifest(dir)
	if len(m.Runs) != 1 || m.Runs[0].By != "auto" {
		t.Errorf("runs %+v, want one by auto", m.Runs)
	}

	// Live with nobody there; and one without auto_record.
	b, c := create("Không ai", true), create("Không ghi", false)
	for _, id := range []string{b.ID, c.ID} {
		state(id, "open")
		state(id, "live")
	}
	if !recording(b.ID) {
		t.Errorf("%s went live with auto_record and nobody joined: not recording", b.ID)
	}
	if recording(c.ID) {
		t.Errorf("%s went live without auto_record: recording", c.ID)
	}
	var rec controlplane.Recordings
	if code := api("GET", "/api/conferences/"+b.ID+"/recordings", "", &rec); code != http.StatusOK || !rec.Recording || len(rec.Runs) != 1 || rec.Runs[0].By != "auto" {
		t.Errorf("%s's recordings: %d %+v", b.ID, code, rec)
	}

	es, err := ts.store.AuditLog(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var audited []string
	for _, e := range es {
		if e.Who == "auto" && e.Action == "control record" && e.Result == "ok" {
			audited = append(audited, e.Target)
		}
	}
	if strings.Join(audited, " ") != a.ID+" "+b.ID {
		t.Errorf("audited automatic starts %v, want %s and %s", audited, a.ID, b.ID)
	}
}
