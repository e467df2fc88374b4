package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/terminal"
)

// techCall calls the API with the demo's technician link.
func techCall(t *testing.T, ts *testServer, method, path string) (int, []byte) {
	t.Helper()
	return callAs(t, ts, method, path, ts.demo.TechnicianToken)
}

// TestReadinessReport: ten synthetic room terminals join; one has no
// camera, one sits behind a 150 kbit/s downlink. A technician runs the
// readiness check for all of them at once: each receives its own camera
// back through the server for 10 s while its link is measured. The report
// fails exactly those two, for a missing camera and for bandwidth, passes
// the other eight, and exports as CSV.
func TestReadinessReport(t *testing.T) {
	// It judges links by their measured figures, which the race detector
	// and a crowded machine distort (round trips of 90 ms on loopback):
	// the media pass runs it.
	requireMediaPass(t)
	ts := startTestServer(t)
	conf := ts.demo.Conference.ID
	bridges, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	// Ten rooms: a conference of the demo's first ten invited bridges.
	var ids []string
	for _, b := range bridges {
		if b.Kind != controlplane.KindHub && len(ids) < 10 {
			ids = append(ids, b.ID)
		}
	}
	c := ts.demo.Conference
	c.ID, c.Title, c.AllBridges, c.Bridges, c.State = "", "readiness", false, ids, controlplane.StateScheduled
	c, err = ts.store.CreateConference(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.store.SetConferenceState(c.ID, controlplane.StateOpen); err != nil {
		t.Fatal(err)
	}
	conf = c.ID
	noCamera, narrow := ids[3], ids[7]

	ctx, cancel := context.WithCancel(context.Background())
	var terms []*terminal.Terminal
	done := make(chan struct{}, len(ids))
	t.Cleanup(func() {
		cancel()
		for range terms {
			<-done
		}
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, id := range ids {
		tok, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: id})
		if err != nil {
			t.Fatal(err)
		}
		link := &terminal.Link{}
		if id == narrow {
			link.SetRate(150)
		}
		term, err := terminal.New(terminal.Config{Base: ts.base, Token: tok, Conference: conf, Link: link,
			NoCamera: id == noCamera, Logger: log.With("bridge", id)})
		if err != nil {
			t.Fatal(err)
		}
		terms = append(terms, term)
		go func() {
			defer func() { done <- struct{}{} }()
			_ = term.Run(ctx)
		}()
	}
	waitUntil(t, 30*time.Second, "ten terminals connected and observed", func() (bool, string) {
		n := 0
		for _, id := range ids {
			if l, ok := ts.mon.Link(conf, id); ok && l.State != controlplane.QualityLost && l.Sample.RecvBps > 0 {
				n++
			}
		}
		return n == len(ids), fmt.Sprintf("%d of %d", n, len(ids))
	})

	code, body := techCall(t, ts, "POST", "/api/conferences/"+conf+"/readiness")
	if code != http.StatusAccepted {
		t.Fatalf("starting the check: %d %s", code, body)
	}
	if code, body := techCall(t, ts, "POST", "/api/conferences/"+conf+"/readiness"); code != http.StatusConflict {
		t.Errorf("a second check while one runs: %d %s, want 409", code, body)
	}
	var rep controlplane.ReadinessReport
	waitUntil(t, 30*time.Second, "the readiness report", func() (bool, string) {
		code, body := techCall(t, ts, "GET", "/api/conferences/"+conf+"/readiness")
		if code != http.StatusOK {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		rep = controlplane.ReadinessReport{}
		if err := json.Unmarshal(body, &rep); err != nil {
			return false, err.Error()
		}
		return !rep.Running && !rep.Finished.IsZero(), fmt.Sprintf("running %v", rep.Running)
	})
	for _, r := range rep.Bridges {
		t.Logf("%-12s pass=%-5v rtt %5.1f ms loss %4.1f%% estimate %5d kbit/s sent %4d recv %4d kbit/s camera %v: %s",
			r.Bridge, r.Pass, r.RTTMs, 100*r.Loss, r.EstimateBps/1000, r.SentBps/1000, r.RecvBps/1000, r.Camera != nil && *r.Camera, r.Reason)
	}
	if rep.Passed != 8 || rep.Failed != 2 || len(rep.Bridges) != 10 {
		t.Errorf("%d passed, %d failed of %d, want 8 and 2 of 10", rep.Passed, rep.Failed, len(rep.Bridges))
	}
	for _, r := range rep.Bridges {
		switch r.Bridge {
		case noCamera:
			if r.Pass || !strings.Contains(r.Reason, "no camera") || strings.Contains(r.Reason, "bandwidth") {
				t.Errorf("%s (no camera): pass %v, reason %q; want failed for its camera only", r.Bridge, r.Pass, r.Reason)
			}
		case narrow:
			if r.Pass || !strings.Contains(r.Reason, "bandwidth") || strings.Contains(r.Reason, "camera") {
				t.Errorf("%s (150 kbit/s): pass %v, reason %q; want failed for bandwidth", r.Bridge, r.Pass, r.Reason)
			}
		default:
			if !r.Pass {
				t.Errorf("%s failed: %s", r.Bridge, r.Reason)
			}
		}
	}
	code, body = techCall(t, ts, "GET", "/api/conferences/"+conf+"/readiness?format=csv")
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if code != http.StatusOK || err != nil || len(rows) != 11 || rows[0][0] != "bridge" {
		t.Fatalf("CSV export: %d, %v, %d rows", code, err, len(rows))
	}
	for _, row := range rows[1:] {
		if want := map[bool]string{true: "fail", false: "pass"}[row[0] == noCamera || row[0] == narrow]; row[3] != want {
			t.Errorf("CSV row %v: result %s, want %s", row, row[3], want)
		}
	}

	// The same from the dashboard: pick the conference, run the check,
	// read the table.
	tech := openTab(t, newBrowser(t), "tech", ts.base+"/tech#t="+ts.demo.TechnicianToken)
	saveScreenshotsOnFailure(t, tech)
	waitUntil(t, 10*time.Second, "the conference in the readiness list", func() (bool, string) {
		ok, err := eval[bool](tech, `(() => { const s = document.getElementById("ready-conf");
			if (![...s.options].some((o) => o.value === `+strconvQuote(conf)+`)) return false;
			s.value = `+strconvQuote(conf)+`; s.dispatchEvent(new Event("change"));
			document.getElementById("readiness").open = true; return true; })()`)
		return err == nil && ok, fmt.Sprint(ok, err)
	})
	click(t, tech, "#ready-run")
	type row struct{ Bridge, Class string }
	waitUntil(t, 40*time.Second, "the dashboard's readiness table", func() (bool, string) {
		rows, err := eval[[]row](tech, `citybridge.readiness && !citybridge.readiness.running && citybridge.readiness.started > `+strconvQuote(rep.Finished.Format(time.RFC3339Nano))+`
			? [...document.querySelectorAll("#ready-rows tr")].map((r) => ({bridge: r.dataset.bridge, class: r.className})) : []`)
		if err != nil || len(rows) != 10 {
			return false, fmt.Sprint(rows, err)
		}
		var failed []string
		for _, r := range rows {
			if strings.Contains(r.Class, "fail") {
				failed = append(failed, r.Bridge)
			}
		}
		return len(failed) == 2 && failed[0] != failed[1] && (failed[0] == noCamera || failed[0] == narrow) && (failed[1] == noCamera || failed[1] == narrow),
			fmt.Sprintf("failing on the page: %v", failed)
	})
	if hidden, _ := eval[bool](tech, `document.getElementById("ready-csv").hidden`); hidden {
		t.Error("no CSV download offered with the report")
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }
