package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBrowserTechnicianDashboard: two room terminals in Chromium and the
// technicians' dashboard (/tech) opened with a technician link. Both
// bridges get a tile with a state and a score; a tile opens the detail
// panel, whose history chart is drawn; "request keyframe" is acknowledged
// and listed in the panel's event log; "page reload" reloads that
// room's page (a marker left on its window is gone) and the room joins
// again by itself.
func TestBrowserTechnicianDashboard(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	rooms := []string{"commune-001", "ward-017"}
	browser := newBrowser(t)
	roomTabs := map[string]*tab{}
	tabs := []*tab{}
	for _, id := range rooms {
		roomTabs[id] = openTab(t, browser, id, ts.terminalLink(t, id))
		tabs = append(tabs, roomTabs[id])
	}
	tech := openTab(t, browser, "tech", ts.base+"/tech#t="+ts.demo.TechnicianToken)
	tabs = append(tabs, tech)
	saveScreenshotsOnFailure(t, tabs...)

	for _, id := range rooms {
		waitUntil(t, 60*time.Second, id+" connected", func() (bool, string) {
			st, err := eval[string](roomTabs[id], `citybridge.state`)
			return err == nil && st == "connected", fmt.Sprint(st, err)
		})
	}

	// A tile per bridge, with a quality state and a score.
	type tile struct {
		Bridge, State, Score, Name string
	}
	waitUntil(t, 30*time.Second, "a tile with a state and a score for both rooms", func() (bool, string) {
		got, err := eval[[]tile](tech, `[...document.querySelectorAll(".link-tile:not([hidden])")].map((e) => ({
			bridge: e.dataset.bridge, state: e.dataset.state, score: e.querySelector(".score").textContent,
			name: e.querySelector(".name").textContent }))`)
		if err != nil {
			return false, err.Error()
		}
		ok := 0
		for _, id := range rooms {
			for _, tl := range got {
				if tl.Bridge == id && tl.Name != "" && (tl.State == "good" || tl.State == "fair" || tl.State == "poor") && tl.Score != "" && tl.Score != "–" {
					ok++
				}
			}
		}
		return ok == len(rooms), fmt.Sprintf("%+v", got)
	})
	transport, _ := eval[string](tech, `citybridge.transport`)
	t.Logf("dashboard updates by %s", transport)

	// The detail panel of the first room: figures, a drawn chart (history
	// points come every 5 s), its event log.
	a := rooms[0]
	click(t, tech, `.link-tile[data-bridge="`+a+`"]`)
	waitUntil(t, 10*time.Second, "the detail panel's figures", func() (bool, string) {
		rtt, err := eval[string](tech, `document.querySelector('#figures [data-fig="rtt"]')?.textContent || ""`)
		return err == nil && rtt != "", fmt.Sprint(rtt, err)
	})
	waitUntil(t, 40*time.Second, "a history chart drawn", func() (bool, string) {
		// loadDetail runs every 10 s while the panel is open.
		got, err := eval[map[string]int](tech, `(() => {
			const c = document.querySelector('#charts [data-chart="rtt"] canvas');
			let painted = 0;
			if (c && c.width > 0 && c.height > 0) {
				const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
				for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
			}
			return { points: citybridge.history.length, painted };
		})()`)
		if err != nil {
			return false, err.Error()
		}
		return got["points"] >= 2 && got["painted"] > 100, fmt.Sprint(got)
	})

	// Request a keyframe: acknowledged, and in the event log.
	click(t, tech, `#actions button[data-action="keyframe"]`)
	waitUntil(t, 10*time.Second, "the keyframe request acknowledged", func() (bool, string) {
		got, err := eval[map[string]any](tech, `citybridge.lastAction || {}`)
		ok, _ := got["ok"].(bool)
		return err == nil && ok, fmt.Sprint(got, err)
	})
	if text, _ := eval[string](tech, `document.getElementById("action-result").className`); text != "action-result ok" {
		t.Errorf("action result shown as %q, want ok", text)
	}
	waitUntil(t, 15*time.Second, "the keyframe action listed in the event log", func() (bool, string) {
		rows, err := eval[[]string](tech, `[...document.querySelectorAll("#events tr.event")].map((r) => r.textContent)`)
		n := 0
		for _, r := range rows {
			if strings.Contains(r, "action") && strings.Contains(r, "keyframe") && strings.Contains(r, "technician link") {
				n++
			}
		}
		return err == nil && n == 1, fmt.Sprint(rows, err)
	})

	// Reload the first room's page from the dashboard.
	room := roomTabs[a]
	if _, err := eval[bool](room, `window.techMarker = true`); err != nil {
		t.Fatal(err)
	}
	click(t, tech, `#actions button[data-action="reload"]`)
	waitUntil(t, 10*time.Second, "the reload acknowledged", func() (bool, string) {
		got, err := eval[map[string]any](tech, `citybridge.lastAction || {}`)
		ok, _ := got["ok"].(bool)
		return err == nil && ok && got["path"] == "/api/conferences/"+ts.demo.Conference.ID+"/bridges/"+a+"/actions/reload", fmt.Sprint(got, err)
	})
	waitUntil(t, 30*time.Second, a+"'s page reloaded and joined again", func() (bool, string) {
		got, err := eval[map[string]any](room, `({ marker: window.techMarker === true, state: window.citybridge?.state || "" })`)
		if err != nil { // between the two pages
			return false, err.Error()
		}
		return got["marker"] == false && got["state"] == "connected", fmt.Sprint(got)
	})
	// The other room was left alone.
	if st, err := eval[string](roomTabs[rooms[1]], `citybridge.state`); err != nil || st != "connected" {
		t.Errorf("%s: state %q (%v), want connected", rooms[1], st, err)
	}
}
