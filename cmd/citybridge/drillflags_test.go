package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/terminal/drill"
)

// drillRun is one run of the drill tool against the test server.
type drillRun struct {
	code           int
	stdout, stderr *syncBuffer
	took           time.Duration
	started        time.Time
}

// runDrill runs roomsim's code (drill.Main) against ts with the synthetic
// hub, 180p rooms and args; in the background when wait is false (the
// run's done channel then closes at the end).
func runDrill(ts *testServer, args ...string) (*drillRun, <-chan struct{}) {
	r := &drillRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}, started: time.Now()}
	all := append([]string{"-url", ts.base, "-token", ts.demo.TechnicianToken, "-hub-token", ts.demo.HostToken,
		"-conference", ts.demo.Conference.ID, "-layers", "q"}, args...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.code = drill.Main("roomsim", all, r.stdout, r.stderr)
		r.took = time.Since(r.started)
	}()
	return r, done
}

// drillJSON runs the drill with --json to its end and decodes its report.
func drillJSON(t *testing.T, ts *testServer, wantCode int, args ...string) (*drillRun, drill.JSONReport) {
	t.Helper()
	r, done := runDrill(ts, append(args, "-json")...)
	<-done
	t.Logf("roomsim %s: exit %d after %v\n%s\n%s", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond), progressLines(r.stderr.String()), r.stdout.String())
	var rep drill.JSONReport
	if err := json.Unmarshal([]byte(r.stdout.String()), &rep); err != nil {
		t.Fatalf("roomsim %s: report not JSON: %v", strings.Join(args, " "), err)
	}
	if r.code != wantCode {
		t.Errorf("roomsim %s: exit %d, want %d", strings.Join(args, " "), r.code, wantCode)
	}
	return r, rep
}

// progressLines drops the terminals' log lines from the drill's standard
// error.
func progressLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "time=") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// serverSaw reads the server's event log for one bridge: the first drop
// from the cut to a second after the restore, and the first reconnect or
// join after that drop (zero times: none).
func serverSaw(t *testing.T, ts *testServer, bridge string, cut, restored time.Time) (dropAt, backAt time.Time) {
	t.Helper()
	evs, err := ts.store.Events(ts.demo.Conference.ID, bridge, cut, restored.Add(40*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		switch {
		case dropAt.IsZero() && e.Kind == controlplane.EventDrop && !e.At.After(restored.Add(time.Second)):
			dropAt = e.At
		case !dropAt.IsZero() && (e.Kind == controlplane.EventReconnect || e.Kind == controlplane.EventJoin):
			return dropAt, e.At
		}
	}
	return dropAt, time.Time{}
}

// serverJoin is the first join of bridge the server logged from a time
// (zero: none within 40 s).
func serverJoin(t *testing.T, ts *testServer, bridge string, from time.Time) time.Time {
	t.Helper()
	evs, err := ts.store.Events(ts.demo.Conference.ID, bridge, from, from.Add(40*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == controlplane.EventJoin {
			return e.At
		}
	}
	return time.Time{}
}

// within reports whether a and b are at most 1 s apart.
func within(a, b time.Duration) bool { return (a - b).Abs() <= time.Second }

func msd(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// checkFault holds one fault of a report to its script (a cut of script,
// or a reboot when script is 0) and to the server's event log.
func checkFault(t *testing.T, ts *testServer, rep drill.JSONReport, i int, script time.Duration) {
	t.Helper()
	f := rep.List[i]
	down := time.Duration(f.DownSeconds * float64(time.Second))
	restored := f.Cut.Add(down)
	name := fmt.Sprintf("%s %s of %v at %s", f.Bridge, f.Kind, script, f.Cut.Format("15:04:05.000"))
	if !within(down, script) {
		t.Errorf("%s: reported down for %v", name, down)
	}
	if f.RecoveredMs < 0 { // 0: within the millisecond
		t.Errorf("%s: not recovered", name)
		return
	}
	recoveredAt := restored.Add(msd(f.RecoveredMs))
	if script > 0 && (f.NoticedMs <= 0 || msd(f.NoticedMs) > down) {
		t.Errorf("%s: noticed after %d ms: want during the cut (the terminal's ICE notices in 2 s)", name, f.NoticedMs)
	}
	dropAt, backAt := serverSaw(t, ts, f.Bridge, f.Cut, restored)
	if script == 0 && dropAt.IsZero() {
		// A reboot here is instant: the new terminal may take the place
		// before the server has read the old connection's end, and the
		// log then has the join alone.
		joinAt := serverJoin(t, ts, f.Bridge, restored)
		t.Logf("%s: recovered %v after starting again; server's log: no drop, the place taken by a new join %v after",
			name, msd(f.RecoveredMs), joinAt.Sub(restored).Round(time.Millisecond))
		if joinAt.IsZero() || f.ServerNoticedMs >= 0 || !within(msd(f.ServerBackMs), joinAt.Sub(restored)) ||
			!within(recoveredAt.Sub(joinAt), 0) {
			t.Errorf("%s: the report has the server noticing after %d ms and back after %d ms, recovered after %d ms; its log a join at %v",
				name, f.ServerNoticedMs, f.ServerBackMs, f.RecoveredMs, joinAt)
		}
		return
	}
	if dropAt.IsZero() || backAt.IsZero() {
		if script >= 5*time.Second || script == 0 { // the server's ICE notices in 3 to 4 s
			t.Errorf("%s: the server's log has no drop and return (drop %v, back %v)", name, dropAt, backAt)
		}
		if f.ServerNoticedMs >= 0 {
			t.Errorf("%s: the report has the server noticing after %d ms, its log no drop", name, f.ServerNoticedMs)
		}
		return
	}
	t.Logf("%s: terminal noticed after %v, recovered %v after the restore; server's log: drop after %v, back %v after the restore",
		name, msd(f.NoticedMs), msd(f.RecoveredMs), dropAt.Sub(f.Cut).Round(time.Millisecond), backAt.Sub(restored).Round(time.Millisecond))
	if !within(msd(f.ServerNoticedMs), dropAt.Sub(f.Cut)) || !within(msd(f.ServerBackMs), backAt.Sub(restored)) {
		t.Errorf("%s: the report has the server noticing after %d ms and back after %d ms; its log %v and %v",
			name, f.ServerNoticedMs, f.ServerBackMs, dropAt.Sub(f.Cut), backAt.Sub(restored))
	}
	if !within(recoveredAt.Sub(backAt), 0) {
		t.Errorf("%s: recovered at %s by the report, back at %s by the server's log", name,
			recoveredAt.Format("15:04:05.000"), backAt.Format("15:04:05.000"))
	}
	if script > 0 {
		// The terminal's ICE gives up on a line silent for 2 s (counted
		// from the last packet, which may come before the cut), the
		// server's after 3 s, checked once a second: the terminal notices
		// first, by 1 to 2 s on a loaded machine, never later than a
		// second after the server, and not in under a second.
		noticedAt := f.Cut.Add(msd(f.NoticedMs))
		if noticedAt.After(dropAt.Add(time.Second)) || msd(f.NoticedMs) < time.Second {
			t.Errorf("%s: the terminal noticed at %s (%d ms after the cut), the server logged the drop at %s", name,
				noticedAt.Format("15:04:05.000"), f.NoticedMs, dropAt.Format("15:04:05.000"))
		}
	} else if dropAt.Sub(f.Cut) > time.Second { // a reboot: its connection closes at once
		t.Errorf("%s: the server logged the drop %v after the reboot", name, dropAt.Sub(f.Cut))
	}
}

// TestDrillFlags: each of roomsim's fault flags, the named scenarios and
// the steady mode, against a real server: the report's cut lengths are
// within 1 s of the script, its recovery times within 1 s of the server's
// own event log (and its figures from that log are the log's), and the
// drill lasts its --duration and no more than the recoveries need.
func TestDrillFlags(t *testing.T) {
	requireMediaPass(t) // it measures seconds: not beside the race detector's load
	ts := startTestServer(t)
	invited, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	b := func(i int) string { return invited[i].ID }

	// The command, in text: the drill waits out its duration and
	// the recovery, and reports the cut as it was.
	r, done := runDrill(ts, "-bridges", "2", "-drop", b(0)+":3s", "-duration", "6s")
	<-done
	t.Logf("roomsim -drop %s:3s -duration 6s: exit %d after %v\n%s", b(0), r.code, r.took.Round(time.Millisecond), r.stdout.String())
	m := regexp.MustCompile(`(?m)^` + b(0) + `\tcut\t\S+\t(\S+)\t(\S+)\t(\S+)\t`).FindStringSubmatch(r.stdout.String())
	if r.code != 0 || m == nil {
		t.Fatalf("exit %d, no line for the cut: %s", r.code, r.stderr.String())
	}
	down, err1 := time.ParseDuration(m[1])
	_, err2 := time.ParseDuration(m[2])
	rec, err3 := time.ParseDuration(m[3])
	if err1 != nil || err2 != nil || err3 != nil || !within(down, 3*time.Second) || rec < 0 || rec > 5*time.Second {
		t.Errorf("the cut reported down for %q, noticed after %q, recovered after %q: want 3 s, a time, a time", m[1], m[2], m[3])
	}
	if r.took < 6*time.Second {
		t.Errorf("the drill ended after %v, before its 6 s", r.took)
	}

	// Drops of their own lengths, a reboot and the bridges-drop scenario
	// (one bridge of four, 20 s), under a --duration shorter than they
	// are: the drill waits for them.
	r, rep := drillJSON(t, ts, 0, "-bridges", "4", "-drop", b(0)+":3s", "-drop", b(1)+":6s", "-reboot", "1",
		"-scenario", "bridges-drop", "-duration", "5s")
	scripts := map[string]time.Duration{b(0): 3 * time.Second, b(1): 6 * time.Second}
	kinds := map[string]int{}
	for i, f := range rep.List {
		kinds[f.Kind]++
		script, ok := scripts[f.Bridge]
		switch {
		case f.Kind == "reboot":
			script = 0
		case !ok:
			script = 20 * time.Second // the bridges-drop scenario's
		}
		checkFault(t, ts, rep, i, script)
	}
	if len(rep.List) != 4 || kinds["cut"] != 3 || kinds["reboot"] != 1 || rep.Recovered != 4 {
		t.Errorf("%d faults (%v), %d recovered: want 3 cuts and a reboot, all recovered", len(rep.List), kinds, rep.Recovered)
	}
	if r.took > 40*time.Second {
		t.Errorf("the drill took %v for a 20 s cut", r.took)
	}

	// A flap: one line of two, 4 s down and 3 s up for 12 s: two cuts.
	r, rep = drillJSON(t, ts, 0, "-bridges", "2", "-flap", "50%:4s:3s", "-duration", "12s")
	for i := range rep.List {
		checkFault(t, ts, rep, i, 4*time.Second)
	}
	if len(rep.List) != 2 || rep.List[0].Bridge != rep.List[1].Bridge {
		t.Errorf("%d cuts: want 2, of one bridge", len(rep.List))
	}
	if rep.Seconds < 12 || r.took > 12*time.Second+20*time.Second {
		t.Errorf("the drill ran %.1f s of its 12 s script, %v in all", rep.Seconds, r.took)
	}

	// The hub's line, 5 s: every room has the hub back within a second of
	// the server logging the hub's return.
	_, rep = drillJSON(t, ts, 0, "-bridges", "2", "-scenario", "hub-drop")
	if hd := rep.HubDrop; hd == nil {
		t.Error("no hub-drop in the report")
	} else {
		down := time.Duration(hd.DownSeconds * float64(time.Second))
		dropAt, backAt := serverSaw(t, ts, controlplane.HubBridge.ID, hd.Cut, hd.Cut.Add(down))
		t.Logf("hub-drop: the server's log has the hub drop %v after the cut and back %v after the restore",
			dropAt.Sub(hd.Cut).Round(time.Millisecond), backAt.Sub(hd.Cut.Add(down)).Round(time.Millisecond))
		if !within(down, 5*time.Second) || hd.RoomsBack != hd.Rooms || hd.Rooms != 2 {
			t.Errorf("hub down for %v, back at %d of %d rooms: want 5 s, 2 of 2", down, hd.RoomsBack, hd.Rooms)
		}
		switch {
		case dropAt.IsZero() || backAt.IsZero():
			t.Errorf("the server's log has no drop and return of the hub (drop %v, back %v)", dropAt, backAt)
		case !within(msd(hd.ServerNoticedMs), dropAt.Sub(hd.Cut)) || !within(msd(hd.ServerBackMs), backAt.Sub(hd.Cut.Add(down))):
			t.Errorf("the report has the server noticing the hub after %d ms, back after %d ms; its log %v, %v",
				hd.ServerNoticedMs, hd.ServerBackMs, dropAt.Sub(hd.Cut), backAt.Sub(hd.Cut.Add(down)))
		case !within(hd.Cut.Add(down+msd(hd.WorstMs)).Sub(backAt), 0):
			t.Errorf("the last room had the hub back %d ms after its line; the server's log has the hub back after %v",
				hd.WorstMs, backAt.Sub(hd.Cut.Add(down)))
		}
	}

	// Steady: three rooms for 8 s with no fault; the server kicks one
	// midway. The report names it, from when the server's log has it
	// leave, and no other; exit status 1.
	r, done = runDrill(ts, "-bridges", "3", "-steady", "-duration", "8s", "-json")
	waitUntil(t, 60*time.Second, "the steady phase", func() (bool, string) {
		return strings.Contains(r.stderr.String(), "steady: keeping"), progressLines(r.stderr.String())
	})
	resp, body := request(t, ts, http.MethodPost, "/api/conferences/"+ts.demo.Conference.ID+"/bridges/"+b(1)+"/actions/kick",
		ts.demo.TechnicianToken, "", "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("kick: %d %s", resp.StatusCode, body)
	}
	kicked := time.Now()
	<-done
	t.Logf("roomsim -steady: exit %d after %v\n%s", r.code, r.took.Round(time.Millisecond), r.stdout.String())
	if err := json.Unmarshal([]byte(r.stdout.String()), &rep); err != nil {
		t.Fatalf("steady report: %v", err)
	}
	evs, err := ts.store.Events(ts.demo.Conference.ID, b(1), kicked.Add(-time.Second), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var leftAt time.Time
	for _, e := range evs {
		if e.Kind == controlplane.EventLeave && leftAt.IsZero() {
			leftAt = e.At
		}
	}
	if r.code != 1 || !rep.Steady || len(rep.Dropped) != 1 || rep.Dropped[0].Bridge != b(1) || leftAt.IsZero() {
		t.Fatalf("steady with %s kicked: exit %d, dropped %+v, server's leave at %v: want exit 1 and %s alone", b(1), r.code, rep.Dropped, leftAt, b(1))
	}
	if !within(rep.Dropped[0].From.Sub(leftAt), 0) || !rep.Dropped[0].To.IsZero() {
		t.Errorf("%s dropped from %s to %q by the report; the server's log has it leave at %s", b(1),
			rep.Dropped[0].From.Format("15:04:05.000"), rep.Dropped[0].To, leftAt.Format("15:04:05.000"))
	}
	if rep.Seconds < 8 || r.took > 8*time.Second+20*time.Second {
		t.Errorf("steady ran %.1f s of its 8 s, %v in all", rep.Seconds, r.took)
	}
}
