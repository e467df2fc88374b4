package main

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/pion/webrtc/v4"
)

// wallShown is what the host page last told the server its wall shows.
func wallShown(t *testing.T, host *tab) (ids []string, sent int) {
	t.Helper()
	v, err := eval[struct {
		Tiles []wire.WallTile `json:"tiles"`
		Sent  int             `json:"sent"`
	}](host, `citybridge.wall`)
	if err != nil {
		t.Fatalf("the host page's wall: %v", err)
	}
	for _, tl := range v.Tiles {
		ids = append(ids, tl.Bridge)
	}
	return ids, v.Sent
}

// hostPackets returns, by publisher, the video packets the server has
// written to the host: its own per-subscriber counters.
func hostPackets(t *testing.T, ts *testServer) map[string]uint64 {
	t.Helper()
	r, err := ts.media.Router(ts.demo.Conference.ID)
	if err != nil {
		t.Fatal(err)
	}
	return routerHostPackets(r)
}

// routerHostPackets is hostPackets for a goroutine of the test's own.
func routerHostPackets(r *sfu.Router) map[string]uint64 {
	out := map[string]uint64{}
	if hub := r.Peer(controlplane.HubBridge.ID); hub != nil {
		for _, d := range hub.DownTracks() {
			if d.Track().Kind() == webrtc.RTPCodecTypeVideo {
				n, _ := d.Stats()
				out[d.Track().PublisherID()] = n
			}
		}
	}
	return out
}

// decodedFrames returns the host page's decoded frame counts by publisher.
func decodedFrames(t *testing.T, host *tab) map[string]int {
	t.Helper()
	stats, err := inbound(host)
	if err != nil {
		t.Fatalf("host stats: %v", err)
	}
	out := map[string]int{}
	for _, s := range stats {
		if s.Kind == "video" {
			out[s.Stream] = s.FramesDecoded
		}
	}
	return out
}

// metricValue reads one unlabelled metric from /metrics.
func metricValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	code, body := get(t, ts, "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBrowserWallReceivesWhatItShows: a Chromium host console with 116
// synthetic rooms and a tile size that shows about 30. The server
// forwards video for the tiles on screen and the floor holder only (its
// own per-subscriber packet counters, and the hidden copies' metric);
// over 15 s every tile on screen decodes at 5 frames a second or more
// with no freeze over 2 s; scrolling brings the newly shown tiles' video
// within 2 s; and the rooms never shown get no keyframe request.
func TestBrowserWallReceivesWhatItShows(t *testing.T) {
	requireMediaPass(t)
	const n = 116
	ts := startTestServer(t)
	started := time.Now()
	bridges, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	// The floor to the last room before anyone joins: giving it later
	// renegotiates 116 rooms at once, which on two cores is a load spike
	// of its own. Its tile goes first on the wall, so it is on screen.
	holder := bridges[n-1].ID
	if err := ts.sig.Control(ts.demo.Conference.ID, controlplane.FloorRequest{Action: controlplane.ActionGiveFloor, Bridge: holder}); err != nil {
		t.Fatal(err)
	}
	// Rooms send their 180p layer only, as in the drill: 116 terminals,
	// the server and the host's Chromium share two cores.
	rooms, ids := startRooms(t, ts, n, "q")
	browser := newBrowser(t, withCamera("320x180"), withWindow(1280, 900))
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	saveScreenshotsOnFailure(t, host)
	waitUntil(t, 90*time.Second, "every room connected on the host's roster", func() (bool, string) {
		c := 0
		for _, e := range ts.sig.Roster(ts.demo.Conference.ID) {
			if e.State == wire.StateConnected {
				c++
			}
		}
		return c == n, fmt.Sprintf("%d of %d", c, n)
	})
	t.Logf("%d rooms connected after %v", n, time.Since(started).Round(time.Second))
	// The smallest tiles: about 30 of them in the window (the page
	// listens once its session has started: the rooms may all be in
	// before the console is).
	waitUntil(t, 30*time.Second, "the console connected", func() (bool, string) {
		st, err := eval[string](host, `citybridge.session ? citybridge.session.state : ""`)
		return st == "connected", fmt.Sprint(st, err)
	})
	if _, err := eval[bool](host, `(() => { const d = document.getElementById("density"); d.value = "110"; d.dispatchEvent(new Event("change")); return true; })()`); err != nil {
		t.Fatal(err)
	}

	// Settled: the host has every room's video subscribed, and the page's
	// view is the server's (hidden copies counted).
	var shown []string
	waitUntil(t, 30*time.Second, "the wall's view applied", func() (bool, string) {
		shown, _ = wallShown(t, host)
		subscribed := len(hostPackets(t, ts))
		hidden := ts.media.Stats().HiddenDownTracks
		want := int64(n - len(shown))
		if !slices.Contains(shown, holder) {
			want--
		}
		return subscribed == n && len(shown) >= 20 && hidden == want,
			fmt.Sprintf("%d rooms' video subscribed, %d tiles shown, %d copies hidden, want %d", subscribed, len(shown), hidden, want)
	})
	t.Logf("%d tiles on screen; floor holder %s", len(shown), holder)
	if len(shown) < 20 || len(shown) > 45 {
		t.Fatalf("%d tiles on screen: the test wants about 30: %v", len(shown), shown)
	}
	if h := metricValue(t, ts, "citybridge_down_tracks_hidden"); h < float64(n-len(shown)-1) {
		t.Errorf("citybridge_down_tracks_hidden %v, want at least %d", h, n-len(shown)-1)
	}
	// Every tile on screen showing its room before the measurement
	// starts (the console received every room for a moment after it
	// joined, and a tile shown only now waits for its room's keyframe).
	settled := time.Now()
	type sample struct {
		at     time.Time
		frames map[string]int
	}
	var samples []sample
	waitUntil(t, 30*time.Second, "every tile on screen decoding", func() (bool, string) {
		now := sample{time.Now(), decodedFrames(t, host)}
		samples = append(samples, now)
		var ago *sample // the newest sample at least a second old
		for i := range samples {
			if now.at.Sub(samples[i].at) >= time.Second {
				ago = &samples[i]
			}
		}
		if ago == nil {
			return false, "a second of samples"
		}
		var still []string
		packets := hostPackets(t, ts)
		for _, id := range shown {
			if now.frames[id] < ago.frames[id]+4 {
				still = append(still, fmt.Sprintf("%s (%d frames decoded, %d packets forwarded to the host so far)", id, now.frames[id], packets[id]))
			}
		}
		return len(still) == 0, fmt.Sprint("under 4 frames in the last second: ", still)
	})
	t.Logf("every tile on screen decoding %v after the view settled", time.Since(settled).Round(100*time.Millisecond))

	// 15 s: packets, frames, freezes, keyframe requests.
	never := map[int]int64{} // rooms not shown: their keyframe requests so far
	for i, id := range ids {
		if !slices.Contains(shown, id) && id != holder {
			never[i] = rooms.Terminals[i].KeyframeRequests()
		}
	}
	packets0 := hostPackets(t, ts)
	frames0 := decodedFrames(t, host)
	// The page times every picture it shows (requestVideoFrameCallback,
	// by the time each was handed to the compositor, which a busy main
	// thread does not delay): the longest time a tile went without a new
	// one is its longest freeze, as the host saw it. When the callback
	// missed pictures (presentedFrames jumped), the interval is shared
	// among them.
	if _, err := eval[bool](host, `(() => {
		const t0 = performance.now();
		window.wallGaps = {};
		for (const tile of document.querySelectorAll("#wall [data-bridge]")) {
			const v = tile.querySelector("video");
			const g = wallGaps[tile.dataset.bridge] = {last: t0, frames: -1, max: 0, on: true};
			const picture = (now, m) => {
				if (!g.on) return;
				const at = m.presentationTime || now;
				const n = g.frames < 0 ? 1 : Math.max(m.presentedFrames - g.frames, 1);
				g.max = Math.max(g.max, (at - g.last) / n);
				g.last = at;
				g.frames = m.presentedFrames;
				v.requestVideoFrameCallback(picture);
			};
			v.requestVideoFrameCallback(picture);
		}
		return true; })()`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const window = 15 * time.Second
	waitUntil(t, window+5*time.Second, "15 s of pictures", func() (bool, string) {
		return time.Since(start) >= window, ""
	})
	gaps, err := eval[map[string]float64](host, `(() => { const now = performance.now(), out = {};
		for (const [id, g] of Object.entries(wallGaps)) { g.on = false; out[id] = Math.max(g.max, now - g.last); }
		return out; })()`)
	if err != nil {
		t.Fatal(err)
	}
	lastFrames := decodedFrames(t, host)
	elapsed := time.Since(start)
	packets1 := hostPackets(t, ts)
	if now, _ := wallShown(t, host); !slices.Equal(now, shown) {
		t.Fatalf("the wall's view changed while nothing scrolled: %v, then %v", shown, now)
	}
	var forwarded []string
	for id, p := range packets1 {
		if p > packets0[id] {
			forwarded = append(forwarded, id)
		}
	}
	sort.Strings(forwarded)
	for _, id := range forwarded {
		if id != holder && !slices.Contains(shown, id) {
			t.Errorf("video of %s, not on screen, forwarded to the host: %d packets in %v", id, packets1[id]-packets0[id], elapsed.Round(time.Second))
		}
	}
	if len(forwarded) > len(shown)+1 {
		t.Errorf("%d rooms' video forwarded, %d tiles on screen and the floor holder", len(forwarded), len(shown))
	}
	var slow []string
	fpsMin := 1000.0
	longest := 0.0
	for _, id := range shown {
		fps := float64(lastFrames[id]-frames0[id]) / elapsed.Seconds()
		fpsMin, longest = min(fpsMin, fps), max(longest, gaps[id])
		if fps < 5 || gaps[id] > 2000 {
			slow = append(slow, fmt.Sprintf("%s %.1f fps, longest without a picture %.0f ms", id, fps, gaps[id]))
		}
	}
	t.Logf("over %v: %d rooms forwarded to the host, %d tiles on screen; the slowest tile decoded %.1f frames/s, the longest freeze %.0f ms",
		elapsed.Round(time.Second), len(forwarded), len(shown), fpsMin, longest)
	if len(slow) > 0 {
		t.Errorf("tiles on screen below 5 frames/s or frozen over 2 s: %s", strings.Join(slow, "; "))
	}
	for i, before := range never {
		if got := rooms.Terminals[i].KeyframeRequests(); got != before {
			t.Errorf("%s, never on screen, got %d keyframe requests", ids[i], got-before)
		}
	}

	// Scroll down the wall: the tiles that come on screen show their
	// rooms' video within 2 s of the scroll. The page times each tile's
	// first picture after the scroll itself (requestVideoFrameCallback):
	// polling getStats over 116 receivers on a busy machine takes longer
	// than what it measures. The test also watches when the server starts
	// forwarding each room to the console: from the console's message to
	// that is the room answering the server's keyframe request, which the
	// 116 synthetic rooms, in this test's process on two busy cores, take
	// up to 1.5 s to do (a room's Chromium answers at its next frame).
	// Beyond roomAnswer, that is the test's machine, not the product, and
	// it is taken off the bound.
	const roomAnswer = 200 * time.Millisecond
	target := ids[len(shown)+20]
	_, sent0 := wallShown(t, host)
	router, err := ts.media.Router(ts.demo.Conference.ID)
	if err != nil {
		t.Fatal(err)
	}
	before := routerHostPackets(router)
	fwdAt := map[string]time.Duration{} // by room, after the scroll
	watch := make(chan struct{})
	watched := make(chan struct{})
	scrolled := time.Now()
	go func() {
		defer close(watched)
		for {
			select {
			case <-watch:
				return
			case <-time.After(10 * time.Millisecond):
			}
			at := time.Since(scrolled)
			for id, n := range routerHostPackets(router) {
				if _, seen := fwdAt[id]; !seen && n > before[id] {
					fwdAt[id] = at
				}
			}
		}
	}()
	if _, err := eval[bool](host, `(() => {
		const t0 = performance.now();
		window.scrolledAt = t0;
		window.firstPicture = {};
		for (const tile of document.querySelectorAll("#wall [data-bridge]")) {
			const id = tile.dataset.bridge;
			tile.querySelector("video").requestVideoFrameCallback((now, m) => { firstPicture[id] = (m.presentationTime || now) - t0; (window.firstReceived ||= {})[id] = (m.receiveTime || 0) - t0; });
		}
		document.querySelector('#wall [data-bridge="`+target+`"]').scrollIntoView({block: "start"});
		return true; })()`); err != nil {
		close(watch)
		<-watched
		t.Fatal(err)
	}
	var fresh []string
	waitUntil(t, 5*time.Second, "the wall's new view sent", func() (bool, string) {
		now, sent := wallShown(t, host)
		if sent == sent0 {
			return false, "not yet"
		}
		fresh = fresh[:0]
		for _, id := range now {
			if !slices.Contains(shown, id) {
				fresh = append(fresh, id)
			}
		}
		return len(fresh) > 0, fmt.Sprint(now)
	})
	var in map[string]float64 // ms after the scroll
	waitUntil(t, 10*time.Second, "the newly shown tiles' pictures", func() (bool, string) {
		var err error
		if in, err = eval[map[string]float64](host, `window.firstPicture`); err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, id := range fresh {
			if _, ok := in[id]; !ok {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Sprint("no picture yet: ", missing)
	})
	close(watch)
	<-watched
	told, _ := eval[float64](host, `citybridge.wall.at - scrolledAt`)
	tellTook := time.Duration(told * float64(time.Millisecond))
	if tellTook > 500*time.Millisecond {
		t.Errorf("the console told the server %v after the scroll, want within 0.5 s", tellTook)
	}
	var worst, worstAnswer, worstShown time.Duration
	for _, id := range fresh {
		shownAt := time.Duration(in[id] * float64(time.Millisecond))
		fwd, ok := fwdAt[id]
		if !ok {
			t.Errorf("%s came on screen and showed a picture, but the server forwarded nothing of it", id)
			continue
		}
		answer := max(fwd-tellTook, 0) // the server asks as it hears (sfu/hide_test.go)
		excess := max(answer-roomAnswer, 0)
		worstAnswer, worstShown = max(worstAnswer, answer), max(worstShown, shownAt)
		worst = max(worst, shownAt-excess)
		if shownAt-excess > 2*time.Second {
			t.Errorf("%s came on screen and showed its room %v after the scroll (its synthetic room answered in %v: %v of it counted)", id, shownAt, answer, roomAnswer)
		}
	}
	recv, _ := eval[map[string]float64](host, `window.firstReceived || {}`)
	lastIn := 0.0
	for _, id := range fresh {
		lastIn = max(lastIn, recv[id])
	}
	t.Logf("scrolled: the server told %v after; %d tiles newly on screen; the rooms' keyframes forwarded within %v of that; first pictures in within %.0f ms, shown within %v (%v counting %v for each room's answer)",
		tellTook.Round(time.Millisecond), len(fresh), worstAnswer.Round(time.Millisecond), lastIn, worstShown.Round(time.Millisecond), worst.Round(time.Millisecond), roomAnswer)
}

// framesSent returns the frames a page's camera encoded so far, by RID.
func framesSent(t *testing.T, tb *tab) map[string]int {
	t.Helper()
	v, err := eval[map[string]int](tb, `(async () => { const out = {}; const pc = citybridge.session && citybridge.session.pcs.pub;
		if (!pc) return out; (await pc.getStats()).forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video") out[s.rid || ""] = s.framesEncoded || 0; });
		return out; })()`)
	if err != nil {
		t.Fatalf("%s: outbound stats: %v", tb.name, err)
	}
	return v
}

// TestWallFrameRate: a wall tile's video arrives at a thumbnail's frame
// rate while the floor holder's arrives at the full rate. Two synthetic
// rooms (30 frames a second, three temporal layers) and a Chromium room
// terminal; the floor to the first synthetic room. The host console
// decodes the floor holder at 25 frames a second or more and the other
// synthetic room at 12-17 (temporal layers 0 and 1 of 30); the Chromium
// room's tile at 60% or less of what its camera encodes on that layer, so
// Chromium's own simulcast is thinned too, and it decodes.
func TestWallFrameRate(t *testing.T) {
	requireMediaPass(t)
	ts := startTestServer(t)
	bridges, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	holder, chromeRoom := bridges[0].ID, bridges[2].ID
	if err := ts.sig.Control(ts.demo.Conference.ID, controlplane.FloorRequest{Action: controlplane.ActionGiveFloor, Bridge: holder}); err != nil {
		t.Fatal(err)
	}
	_, ids := startRooms(t, ts, 2)
	wallRoom := ids[1]
	browser := newBrowser(t, withCamera("640x360"))
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	room := openTab(t, browser, chromeRoom, ts.terminalLink(t, chromeRoom))
	saveScreenshotsOnFailure(t, host, room)
	waitUntil(t, 60*time.Second, "the host decoding all three rooms", func() (bool, string) {
		f := decodedFrames(t, host)
		return f[holder] > 30 && f[wallRoom] > 15 && f[chromeRoom] > 15, fmt.Sprint(f)
	})
	// What the Chromium room sends on the layer the host's tile gets.
	layer := ""
	waitUntil(t, 10*time.Second, "the host's layer of the Chromium room", func() (bool, string) {
		l, err := eval[struct {
			Layer  string `json:"layer"`
			Reason string `json:"reason"`
		}](host, `citybridge.layers["`+chromeRoom+`"] || {}`)
		if err != nil {
			return false, err.Error()
		}
		layer = l.Layer
		return layer != "", fmt.Sprint(l)
	})
	f0, s0, th0 := decodedFrames(t, host), framesSent(t, room), ts.media.Stats().ThinnedPackets
	start := time.Now()
	waitUntil(t, 12*time.Second, "8 s of frames", func() (bool, string) { return time.Since(start) >= 8*time.Second, "" })
	f1, s1, th1 := decodedFrames(t, host), framesSent(t, room), ts.media.Stats().ThinnedPackets
	secs := time.Since(start).Seconds()
	rate := func(id string) float64 { return float64(f1[id]-f0[id]) / secs }
	sent := float64(s1[layer]-s0[layer]) / secs
	t.Logf("frames/s at the host: floor holder %.1f, wall tile %.1f; Chromium room %.1f of the %.1f it encodes on %q; %d packets thinned",
		rate(holder), rate(wallRoom), rate(chromeRoom), sent, layer, th1-th0)
	if r := rate(holder); r < 25 {
		t.Errorf("the floor holder arrives at %.1f frames/s, want the full rate (30)", r)
	}
	if r := rate(wallRoom); r < 12 || r > 17 {
		t.Errorf("a wall tile arrives at %.1f frames/s, want a thumbnail's 15 (12-17)", r)
	}
	if r := rate(chromeRoom); r <= 0 || sent <= 0 || r > 0.6*sent {
		t.Errorf("the Chromium room's tile arrives at %.1f frames/s of the %.1f it encodes: want it thinned (at most 60%%) and decoding", r, sent)
	}
	if th1 == th0 {
		t.Error("the server's thinned packets counter did not move")
	}
	// The frames left out leave no hole: the host sees no loss and asks
	// for nothing again on the thinned tiles.
	stats, err := inbound(host)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{wallRoom, chromeRoom} {
		v, _ := find(stats, id, "video")
		t.Logf("%s at the host: %d packets, %d lost, %d NACKs, %d PLIs", id, v.PacketsReceived, v.PacketsLost, v.NackCount, v.PLICount)
		if v.PacketsLost > 0 || v.NackCount > 0 {
			t.Errorf("%s, thinned: %d packets lost and %d NACKs at the host, want none", id, v.PacketsLost, v.NackCount)
		}
	}
}
