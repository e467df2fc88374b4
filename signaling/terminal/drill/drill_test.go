package drill

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestDrillUsage: every bad flag, and every combination that cannot run,
// is refused before anything starts, with exit status 2 and the reason.
func TestDrillUsage(t *testing.T) {
	base := []string{"-url", "https://127.0.0.1:1", "-token", "tech", "-conference", "c1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--url, --conference and --token are required"},
		{[]string{"-url", "https://x", "-token", "t"}, "--url, --conference and --token are required"},
		{[]string{"-url", "ftp://x", "-token", "t", "-conference", "c1", "-steady", "-duration", "1s"}, "want https://host:port"},
		{base, "nothing to do"},
		{append(base, "extra"), "unexpected arguments"},
		{append(base, "-drop", "commune-001"), "want BRIDGE:DURATION"},
		{append(base, "-drop", "commune-001:soon"), "want a positive duration"},
		{append(base, "-drop", "commune-001:-3s"), "want a positive duration"},
		{append(base, "-drop", "commune-001:3s", "-drop", "commune-001:5s"), "given twice"},
		{append(base, "-flap", "10%:5s"), "want PERCENT:DOWN:UP"},
		{append(base, "-flap", "0%:5s:5s", "-duration", "1m"), "want 1% to 100%"},
		{append(base, "-flap", "10%:5s:0s", "-duration", "1m"), "up \"0s\""},
		{append(base, "-flap", "10%:5s:5s"), "--flap needs a --duration"},
		{append(base, "-steady"), "--steady needs --duration"},
		{append(base, "-steady", "-duration", "1m", "-drop", "commune-001:3s"), "--steady runs no fault"},
		{append(base, "-steady", "-duration", "1m", "-scenario", "hub-drop", "-hub-token", "h"), "--steady runs no fault"},
		{append(base, "-scenario", "earthquake"), "no scenario \"earthquake\""},
		{append(base, "-scenario", "hub-drop"), "needs --hub-token"},
		{append(base, "-reboot", "-1"), "cannot be negative"},
		{append(base, "-bridges", "-3", "-reboot", "1"), "cannot be negative"},
		{append(base, "-reboot", "1", "-duration", "-1s"), "--duration cannot be negative"},
		{append(base, "-reboot", "1", "-recovery-timeout", "0s"), "--recovery-timeout must be positive"},
		{append(base, "-reboot", "1", "-layers", "q,q"), "each layer once"},
		{append(base, "-reboot", "1", "-layers", "x"), "each layer once"},
		{append(base, "-reboot", "1", "-log-level", "loud"), "--log-level \"loud\""},
		{append(base, "-reboot", "two"), "invalid value"},
		{append(base, "-nosuchflag"), "not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main("roomsim", c.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
		if stdout.Len() > 0 {
			t.Errorf("%q: printed %q on standard output", c.args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main("roomsim", []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-steady") {
		t.Errorf("-h: exit %d, %q", code, stderr.String())
	}
}

// TestScenarioUnderFlags: a scenario sets what the flags beside it leave
// unset, and nothing they set.
func TestScenarioUnderFlags(t *testing.T) {
	for _, c := range []struct {
		args     []string
		flap     string
		duration time.Duration
		dropFor  time.Duration
		hubDrop  time.Duration
	}{
		{[]string{"-scenario", "flap"}, "10%:5s:15s", 2 * time.Minute, 0, 0},
		{[]string{"-scenario", "flap", "-duration", "30s"}, "10%:5s:15s", 30 * time.Second, 0, 0},
		{[]string{"-scenario", "flap", "-flap", "50%:2s:3s", "-duration", "12s"}, "50%:2s:3s", 12 * time.Second, 0, 0},
		{[]string{"-scenario", "bridges-drop", "-duration", "5s"}, "", 5 * time.Second, 20 * time.Second, 0},
		{[]string{"-scenario", "hub-drop", "-hub-token", "h"}, "", 0, 0, 5 * time.Second},
	} {
		o, err := parse(append([]string{"-url", "https://x", "-token", "t", "-conference", "c1"}, c.args...))
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if o.flap != c.flap || o.duration != c.duration || o.dropFor != c.dropFor || o.hubDrop != c.hubDrop {
			t.Errorf("%q: flap %q, duration %v, bridges-drop %v, hub-drop %v; want %q, %v, %v, %v",
				c.args, o.flap, o.duration, o.dropFor, o.hubDrop, c.flap, c.duration, c.dropFor, c.hubDrop)
		}
	}
}

// TestMatchServerEvents: a fault is matched with the first drop the
// server logged during it and the first reconnect or join after that
// drop, not with the events of the bridge's next fault.
func TestMatchServerEvents(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	evs := []event{
		{At: at(-5), Kind: "drop"}, // an earlier fault's
		{At: at(-4), Kind: "reconnect"},
		{At: at(3.2), Kind: "drop"},
		{At: at(4.0), Kind: "drop"}, // the signaling, after the media
		{At: at(6.3), Kind: "reconnect"},
		{At: at(20), Kind: "drop"}, // the next fault's
		{At: at(26.1), Kind: "join"},
	}
	for _, c := range []struct {
		cut, restored, next float64
		noticed, back       time.Duration
	}{
		{0, 6, 20, 3200 * time.Millisecond, 300 * time.Millisecond},
		{20, 26, 0, 0, 100 * time.Millisecond},
		{10, 13, 20, -1, -1}, // nothing logged: too short for the server
		{5, 6, 20, -1, -1},   // the drop at 3.2 s was before this cut
	} {
		next := time.Time{}
		if c.next > 0 {
			next = at(c.next)
		}
		noticed, back := match(evs, at(c.cut), at(c.restored), next, 30*time.Second)
		if noticed != c.noticed || back != c.back {
			t.Errorf("cut %v-%v: noticed %v, back %v; want %v, %v", c.cut, c.restored, noticed, back, c.noticed, c.back)
		}
	}
	// A reboot whose new connection took the place before the server read
	// the old one's end: a join alone, found from the restart on.
	if back := replaced(evs, at(26), time.Time{}, 30*time.Second); back != 100*time.Millisecond {
		t.Errorf("rebooted at 26 s: back after %v, want the join 100 ms after", back)
	}
	if back := replaced(evs, at(27), time.Time{}, 30*time.Second); back != -1 {
		t.Errorf("rebooted at 27 s: back after %v, want none (the join was before)", back)
	}
}

// TestSteadyTextReport: the steady report gives one line a bridge that
// dropped (how often, how long in all, the longest), whatever the number
// of outages, and says when one was still out at the end.
func TestSteadyTextReport(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	rep := &Report{Steady: true, Terminals: 3, Receiving: 3, Start: t0, End: t0.Add(time.Minute), Outages: []Outage{
		{Bridge: "ward-002", From: t0.Add(10 * time.Second), To: t0.Add(13 * time.Second)},
		{Bridge: "commune-001", From: t0.Add(5 * time.Second), To: t0.Add(7 * time.Second)},
		{Bridge: "ward-002", From: t0.Add(50 * time.Second)},
	}}
	text := reportHas(t, rep,
		"steady for 1m0s: 3 terminals, 3 receiving the hub at the start\n",
		"DROPPED: commune-001 1 times, 2s in all, the longest 2s from 08:00:05.000; no fault on its line\n",
		"DROPPED: ward-002 2 times, 13s in all, the longest 10s from 08:00:50.000, still out at the end; no fault on its line\n",
		"3 outages of 2 terminals with no fault on their line",
	)
	if strings.Contains(text, "none dropped") || len(rep.problems()) != 1 {
		t.Errorf("a steady run with outages: problems %v, report:\n%s", rep.problems(), text)
	}
}

// TestFaultSummary: the report's totals count every fault, a reboot too
// (nothing to detect), with the recoveries and detections in order
// whatever the faults' order, and name the bridges that did not recover.
func TestFaultSummary(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	rep := &Report{Start: t0, End: t0.Add(time.Minute), Faults: []Fault{
		{Kind: "cut", Bridge: "ward-001", Cut: t0, Restored: t0.Add(5 * time.Second), Detected: 500 * time.Millisecond, Recovered: 2 * time.Second, ServerNoticed: -1, ServerBack: -1},
		{Kind: "cut", Bridge: "ward-002", Cut: t0.Add(time.Second), Restored: t0.Add(6 * time.Second), Detected: 300 * time.Millisecond, ServerNoticed: -1, ServerBack: -1},
		{Kind: "reboot", Bridge: "commune-001", Cut: t0.Add(2 * time.Second), Restored: t0.Add(2 * time.Second), Recovered: 1234 * time.Millisecond, ServerNoticed: -1, ServerBack: -1},
	}}
	reportHas(t, rep,
		"faults 3, detected by the terminal 2, recovered 2\n",
		"recovery after the line came back: min 1.23s, median 1.23s, p90 2s, max 2s\n",
		"detection after the cut: median 300ms, max 500ms\n",
		"NOT recovered: [ward-002]\n",
	)
}

// reportHas checks that rep's text report has every one of want, and
// returns the text.
func reportHas(t *testing.T, rep *Report, want ...string) string {
	t.Helper()
	var b bytes.Buffer
	rep.writeText(&b)
	for _, w := range want {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}
	return b.String()
}
