package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"citybridge/signaling/terminal"
)

// TestBrowserTechnicianActions: two room terminals in Chromium and the
// technicians' dashboard (/tech) opened with a technician link. Both
// bridges get a tile with a state and a score; a tile opens the detail
// panel, whose history chart is drawn; "request keyframe" is acknowledged
// and listed in the panel's event log; "page reload" reloads that
// room's page (a marker left on its window is gone) and the room joins
// again by itself.
func TestBrowserTechnicianActions(t *testing.T) {
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

// TestBrowserTechnicianDashboard: 116 synthetic room terminals and a
// synthetic hub in a conference, Chromium on /tech with a technician link.
// 116 room tiles render; one terminal's line is cut and its tile turns
// "lost" on screen within 5 s; the line is restored, the technician
// clicks "ICE restart" in that bridge's panel, the request reaches the
// terminal, and its tile is good again. The screenshot is the README's.
func TestBrowserTechnicianDashboard(t *testing.T) {
	requireMediaPass(t) // 117 terminals: it needs the machine to itself
	ts := startTestServer(t)
	const n = 116
	_, rooms := startFleet(t, ts, n, "q")
	waitUntil(t, 90*time.Second, "every terminal receiving the hub", func() (bool, string) {
		missing := rooms.NotReceiving(2 * time.Second)
		return len(missing) == 0, fmt.Sprintf("%d of %d; not receiving: %s", n-len(missing), n, strings.Join(missing, ", "))
	})
	tech := openTab(t, newBrowser(t), "tech", ts.base+"/tech#t="+ts.demo.TechnicianToken)
	saveScreenshotsOnFailure(t, tech)

	type tile struct{ Bridge, State string }
	tiles := func() (map[string]string, error) {
		got, err := eval[[]tile](tech, `[...document.querySelectorAll(".link-tile:not([hidden])")].map((e) => ({bridge: e.dataset.bridge, state: e.dataset.state}))`)
		m := map[string]string{}
		for _, tl := range got {
			m[tl.Bridge] = tl.State
		}
		return m, err
	}
	ids := map[string]bool{}
	for _, tm := range rooms.Terminals {
		ids[tm.Bridge()] = true
	}
	waitUntil(t, 30*time.Second, "116 room tiles, every one good", func() (bool, string) {
		m, err := tiles()
		if err != nil {
			return false, err.Error()
		}
		shown, good := 0, 0
		var other []string
		for id := range ids {
			if st, ok := m[id]; ok {
				shown++
				if st == "good" {
					good++
				} else if len(other) < 5 {
					other = append(other, id+" "+st)
				}
			}
		}
		return shown == n && good == n, fmt.Sprintf("%d tiles of rooms, %d good; e.g. %v", shown, good, other)
	})

	// Cut one terminal's line.
	const i = 57
	term, line := rooms.Terminals[i], rooms.Links[i]
	id := term.Bridge()
	line.Cut()
	cut := time.Now()
	waitUntil(t, 5*time.Second, id+"'s tile lost on screen", func() (bool, string) {
		m, err := tiles()
		return err == nil && m[id] == "lost", fmt.Sprint(m[id], err)
	})
	lostAfter := time.Since(cut)
	if m, _ := tiles(); len(m) > 0 {
		lost := 0
		for b, st := range m {
			if st == "lost" && b != id {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%d other tiles lost too", lost)
		}
	}
	docScreenshot(t, tech, "tech-dashboard")

	// Restore it, wait for the terminal to be back, and restart its ICE
	// from the dashboard.
	line.Restore()
	waitUntil(t, 30*time.Second, id+"'s terminal back", func() (bool, string) {
		return term.State() == terminal.StateConnected, term.State()
	})
	actions, restarts := term.Actions(), term.ICERestarts()
	click(t, tech, `.link-tile[data-bridge="`+id+`"]`)
	waitUntil(t, 10*time.Second, "the detail panel of "+id, func() (bool, string) {
		b, err := eval[string](tech, `citybridge.selected?.bridge || ""`)
		return err == nil && b == id, fmt.Sprint(b, err)
	})
	click(t, tech, `#actions button[data-action="ice_restart"]`)
	waitUntil(t, 10*time.Second, "the ICE restart reaching the terminal", func() (bool, string) {
		got, _ := eval[map[string]any](tech, `citybridge.lastAction || {}`)
		return term.Actions() > actions && term.ICERestarts() > restarts, fmt.Sprintf("terminal: %d actions, %d ICE restarts; page: %v", term.Actions(), term.ICERestarts(), got)
	})
	waitUntil(t, 30*time.Second, id+"'s tile good again", func() (bool, string) {
		m, err := tiles()
		return err == nil && m[id] == "good", fmt.Sprint(m[id], err)
	})
	t.Logf("%s lost on screen %v after the cut; good again %v after the cut", id, lostAfter.Round(100*time.Millisecond), time.Since(cut).Round(100*time.Millisecond))
}
