package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/terminal"
)

// TestResumeAfterServerRestart: the hub and a room in Chromium and three
// synthetic terminals are in a conference, one room holding the floor; the
// server is killed (SIGKILL) and started again on the same data directory
// and ports. Every terminal is back and receiving the hub within 10 s of
// the server being ready, without anyone touching anything; the floor
// holder still holds the floor; the attendance record shows, for each
// bridge, one interval before the outage and one after.
func TestResumeAfterServerRestart(t *testing.T) {
	requireMediaPass(t) // not parallel: it needs the machine's CPU to itself
	data := filepath.Join(t.TempDir(), "data")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	udp := freeTCPUDPPort(t)
	p := startBinaryOn(t, data, addr, udp)
	tech, host := p.link(t, "/rooms"), p.link(t, "/host")
	conf := "c1"
	issue := func(bridge string) string {
		var link struct{ Token string }
		if code := p.api(t, "POST", "/api/bridges/"+bridge+"/terminal-links", tech, &link); code != http.StatusCreated {
			t.Fatalf("terminal link for %s: %d", bridge, code)
		}
		return link.Token
	}
	const pageRoom = "commune-001"
	simRooms := []string{"commune-002", "commune-003", "ward-001"}
	browser := newBrowser(t)
	hubTab := openTab(t, browser, "host", p.base+"/host#t="+host)
	roomTab := openTab(t, browser, pageRoom, p.base+"/room#t="+issue(pageRoom))
	saveScreenshotsOnFailure(t, hubTab, roomTab)
	var tokens []string
	for _, b := range simRooms {
		tokens = append(tokens, issue(b))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fleet, err := terminal.StartFleet(p.base, conf, tokens, []string{"q"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Stop)

	pageDecoding := func(since time.Time, within time.Duration, what string) {
		t.Helper()
		first := -1
		waitUntil(t, within, what, func() (bool, string) {
			frames, _ := received(t, roomTab, "hub")
			if first < 0 {
				first = frames
			}
			return frames > first+5, fmt.Sprintf("frames %d (from %d), %v since", frames, first, time.Since(since).Round(100*time.Millisecond))
		})
	}
	fleetReceiving := func(within time.Duration, what string) {
		t.Helper()
		waitUntil(t, within, what, func() (bool, string) {
			n := fleet.Receiving(time.Second)
			return n == len(simRooms), fmt.Sprintf("%d of %d", n, len(simRooms))
		})
	}
	pageDecoding(time.Now(), 60*time.Second, "the room page decoding the hub")
	fleetReceiving(30*time.Second, "the synthetic terminals receiving the hub")
	req, _ := http.NewRequest("POST", p.base+"/api/conferences/"+conf+"/floor", strings.NewReader(`{"bridge":"commune-002"}`))
	req.Header.Set("Authorization", "Bearer "+host)
	if resp, err := p.client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("give the floor: %v %v", resp, err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()
	killed := time.Now()
	time.Sleep(2 * time.Second) // the outage: two seconds with no server at all
	q := startBinaryOn(t, data, addr, udp)
	ready := time.Now()
	t.Logf("server down %.1f s", ready.Sub(killed).Seconds())

	pageDecoding(ready, 10*time.Second, "the room page decoding the hub again")
	fleetReceiving(10*time.Second-time.Since(ready), "the synthetic terminals receiving the hub again")
	t.Logf("everyone back %.1f s after the server was ready", time.Since(ready).Seconds())

	var floor struct{ Holder string }
	if code := q.api(t, "GET", "/api/conferences/"+conf+"/floor", host, &floor); code != 200 || floor.Holder != "commune-002" {
		t.Errorf("floor after the restart: %d %+v, want commune-002 holding it", code, floor)
	}
	var rec attendanceAnswer
	if code := q.api(t, "GET", "/api/conferences/"+conf+"/attendance", host, &rec); code != 200 {
		t.Fatalf("attendance: %d", code)
	}
	for _, b := range append([]string{controlplane.HubBridge.ID, pageRoom}, simRooms...) {
		iv := rec.of(b).Intervals
		if len(iv) != 2 || iv[0].Cause != controlplane.EndServerStopped || !iv[1].Leave.IsZero() ||
			iv[0].Leave.After(killed) || iv[1].Join.Before(killed) {
			t.Errorf("%s attendance %+v: want one interval ended by the stop and one open since the restart", b, iv)
		}
	}
	if errs := fleet.Errors(); len(errs) > 0 {
		t.Errorf("terminals gave up: %v", errs)
	}
}
