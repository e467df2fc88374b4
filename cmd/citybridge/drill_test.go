package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/terminal"
)

// startFleet provisions n room terminals (the first n invited bridges) and
// a synthetic hub, and starts them against ts.
func startFleet(t *testing.T, ts *testServer, n int) (hub, rooms *terminal.Fleet) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bridges, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, b := range bridges[:n] {
		tok, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: b.ID})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	conf := ts.demo.Conference.ID
	if hub, err = terminal.StartFleet(ts.base, conf, []string{ts.demo.HostToken}, []string{"q", "h", "f"}, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Stop)
	if rooms, err = terminal.StartFleet(ts.base, conf, tokens, nil, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rooms.Stop)
	return hub, rooms
}

// TestTerminalsSurviveCuts: synthetic terminals follow the page's rules:
// short and long cuts of their line are noticed and recovered from.
func TestTerminalsSurviveCuts(t *testing.T) {
	requireMediaPass(t)
	ts := startTestServer(t)
	_, rooms := startFleet(t, ts, 4)
	waitUntil(t, 30*time.Second, "every terminal receiving the hub", func() (bool, string) {
		n := rooms.Receiving(time.Second)
		var st []string
		for _, tm := range rooms.Terminals {
			st = append(st, fmt.Sprintf("%s/%s/%d", tm.Bridge(), tm.State(), tm.HubPackets()))
		}
		return n == 4, fmt.Sprintf("%d of 4: %v", n, st)
	})
	ctx := t.Context()
	rooms.Flap(ctx, []int{0, 1}, 5*time.Second, 5*time.Second, 20*time.Second)
	waitUntil(t, 30*time.Second, "every terminal receiving again", func() (bool, string) {
		n := rooms.Receiving(time.Second)
		return n == 4, fmt.Sprintf("%d of 4", n)
	})
	rep := rooms.Report()
	var b strings.Builder
	rep.Write(&b)
	t.Log(b.String())
	if rep.Faults == 0 || rep.Recovered != rep.Faults {
		t.Fatalf("report: %+v", rep)
	}
	_ = runtime.NumGoroutine
}
