package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// layerInfo mirrors what the pages keep of the server's "layer" messages.
type layerInfo struct {
	Layer    string `json:"layer"`
	Reason   string `json:"reason"`
	Estimate int    `json:"estimate"`
}

func hubLayer(tb *tab) (layerInfo, error) {
	return eval[layerInfo](tb, `citybridge.layers.hub || {}`)
}

// timeline records, once a second, what the limited room receives: the
// server's estimate, the layer it chose and why, and the size decoded.
type timeline struct {
	mu        sync.Mutex
	start     time.Time
	rows      []string
	phase     string
	last      inboundStat
	lastRow   time.Time
	maxFreeze map[string]float64 // longest single freeze seen per phase, seconds (an upper bound)
	paused    map[string]bool    // phases in which the server said the video was paused
}

func (tl *timeline) setPhase(p string) {
	tl.mu.Lock()
	tl.phase = p
	tl.mu.Unlock()
}

func (tl *timeline) add(v inboundStat, l layerInfo) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	// Freezes are counted when they end; sampled often, one new freeze
	// between two samples has exactly the added duration, several share it.
	if d := v.TotalFreezesDuration - tl.last.TotalFreezesDuration; v.FreezeCount > tl.last.FreezeCount && d > tl.maxFreeze[tl.phase] {
		tl.maxFreeze[tl.phase] = d
	}
	tl.last = v
	if l.Reason == "paused" {
		tl.paused[tl.phase] = true
	}
	if time.Since(tl.lastRow) < time.Second {
		return
	}
	tl.lastRow = time.Now()
	layer := l.Layer
	if layer == "" {
		layer = "—"
	}
	tl.rows = append(tl.rows, fmt.Sprintf("| %5.1f | %-22s | %6d | %-5s | %-9s | %4dx%-4d | %5.1f | %d / %.2f s |",
		time.Since(tl.start).Seconds(), tl.phase, l.Estimate/1000, layer, l.Reason, v.FrameWidth, v.FrameHeight,
		v.FramesPerSecond, v.FreezeCount, v.TotalFreezesDuration))
}

// freeWatch records, from when it is started, what a room on an unlimited
// link receives at every sample: how long the server held it below the top
// layer for its link (reason "bandwidth" or "paused"), how long it decoded
// less than 1280x720 while the server sent it the top layer, and how long
// the hub's Chromium itself sent no top layer (reason "best" on a lower
// one: a starved browser drops its 720p layer, and no room can have it).
type freeWatch struct {
	mu                sync.Mutex
	on                bool
	samples, small    int            // samples, and those decoding less than 1280x720
	heldBack          int            // samples held below the top layer by the server
	held              map[string]int // samples below the top layer, by the server's layer and reason
	heldRun, smallRun run
	lastSample        time.Time
	gap               time.Duration // the longest time between two samples: the test's own starvation
}

// run measures the longest stretch of consecutive samples with a property.
type run struct {
	since   time.Time
	longest time.Duration
}

func (r *run) add(yes bool, now time.Time) {
	switch {
	case !yes:
		r.since = time.Time{}
	case r.since.IsZero():
		r.since = now
	default:
		r.longest = max(r.longest, now.Sub(r.since))
	}
}

func (w *freeWatch) start() {
	w.mu.Lock()
	w.on, w.held = true, map[string]int{}
	w.mu.Unlock()
}

func (w *freeWatch) add(v inboundStat, l layerInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on {
		return
	}
	now := time.Now()
	if !w.lastSample.IsZero() {
		w.gap = max(w.gap, now.Sub(w.lastSample))
	}
	w.lastSample = now
	w.samples++
	top := l.Layer == "f"
	if v.FrameWidth != 1280 {
		w.small++
	}
	if !top {
		w.held[l.Layer+" "+l.Reason]++
	}
	if !top && l.Reason != "best" {
		w.heldBack++
	}
	w.heldRun.add(!top && l.Reason != "best", now)
	w.smallRun.add(top && v.FrameWidth != 1280, now)
}

func (w *freeWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d samples (at most %.1f s apart), decoding less than 1280x720 in %d, below the top layer %v; "+
		"held back by the server in %d (%.1f s at most in one stretch), below 1280x720 while sent the top layer for %.1f s at most",
		w.samples, w.gap.Seconds(), w.small, w.held, w.heldBack, w.heldRun.longest.Seconds(), w.smallRun.longest.Seconds())
}

// check fails t when the server held the room below the top layer for its
// link, or the room decoded less than 1280x720 for over a second while
// being sent the top layer. A hold-back is only logged when the test's own
// sampling stalled for over a second: a machine that starved sees its
// browsers' packets late, and the server cannot tell that delay from a
// congested link's (GCC reads it as overuse).
func (w *freeWatch) check(t *testing.T, id string) {
	t.Helper()
	w.mu.Lock()
	heldBack, held, small, gap, samples := w.heldBack, w.heldRun, w.smallRun, w.gap, w.samples
	w.mu.Unlock()
	if samples < 20 {
		t.Errorf("room %s on an unlimited link: %d samples, too few to tell", id, samples)
	}
	switch {
	case heldBack == 0:
	case gap > time.Second:
		t.Logf("room %s on an unlimited link was held back by the server for %.1f s, on a machine that starved this test for %.1f s: not counted",
			id, held.longest.Seconds(), gap.Seconds())
	default:
		t.Errorf("room %s on an unlimited link was held below the top layer by the server (%v)", id, w)
	}
	if small.longest > time.Second {
		t.Errorf("room %s on an unlimited link decoded less than 1280x720 for %.1f s while sent the top layer (%v)", id, small.longest.Seconds(), w)
	}
}

func (tl *timeline) longestFreeze(phase string) float64 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.maxFreeze[phase]
}

func (tl *timeline) pausedIn(phase string) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.paused[phase]
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return "| t (s) | link | estimate (kbps) | layer | reason | decoded | fps | freezes (count / total) |\n" +
		"|---|---|---|---|---|---|---|---|\n" + strings.Join(tl.rows, "\n") + "\n"
}

// TestBrowserLayerFollowsBandwidth: the hub's Chromium sends 720p in three
// layers; one room's Chromium sits behind a veth in its own namespace whose
// downlink the test limits with tbf, another room is on an unlimited
// link. The limited room follows its link: 1280x720 with no limit, a
// smaller layer within 10 s of a 600 kbit limit without freezing for more
// than a second, video paused (audio flowing) at 150 kbit, and back to
// 1280x720 within 30 s of the limit being lifted. The other room stays at
// 1280x720 throughout, sampled four times a second (see freeWatch.check).
// The timeline goes to the test log (and test-artifacts/layer-timeline.md).
func TestBrowserLayerFollowsBandwidth(t *testing.T) {
	requireMediaPass(t) // not parallel: it needs the machine's CPU to itself
	link := newNetLink(t)
	ts := startTestServerOn(t, link)
	// One room on an unlimited link beside the limited one: two Chromium
	// processes sending and decoding 720p are what a 2-core machine carries
	// without the browsers themselves stalling.
	free := []string{"commune-001"}
	const limited = "zone-03"

	browser := newBrowser(t)
	host := openTab(t, browser, "host", ts.base+"/host#t="+ts.demo.HostToken)
	tabs := []*tab{host}
	freeTabs := map[string]*tab{}
	for _, id := range free {
		freeTabs[id] = openTab(t, browser, id, ts.terminalLink(t, id))
		tabs = append(tabs, freeTabs[id])
	}
	roomBrowser := newBrowserIn(t, link)
	room := openTab(t, roomBrowser, limited, ts.terminalLink(t, limited))
	tabs = append(tabs, room)
	saveScreenshotsOnFailure(t, tabs...)

	tl := &timeline{start: time.Now(), phase: "unlimited", maxFreeze: map[string]float64{}, paused: map[string]bool{}}
	watch := map[string]*freeWatch{}
	for _, id := range free {
		watch[id] = &freeWatch{}
	}
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				stats, err1 := inbound(room)
				l, err2 := hubLayer(room)
				if err1 == nil && err2 == nil {
					v, _ := find(stats, "hub", "video")
					tl.add(v, l)
				}
				for id, tb := range freeTabs {
					stats, err1 := inbound(tb)
					l, err2 := hubLayer(tb)
					if err1 == nil && err2 == nil {
						v, _ := find(stats, "hub", "video")
						watch[id].add(v, l)
					}
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		sampler.Wait()
		t.Logf("layer timeline of %s:\n%s", limited, tl)
		for id, w := range watch {
			t.Logf("room %s on an unlimited link, from the first 1280x720 on: %s", id, w)
		}
		writeArtifact(t, "layer-timeline.md", tl.String())
	})

	roomVideo := func(tb *tab) (inboundStat, string) {
		stats, err := inbound(tb)
		if err != nil {
			return inboundStat{}, err.Error()
		}
		v, _ := find(stats, "hub", "video")
		return v, fmt.Sprintf("%+v", v)
	}
	// No limit: every room at 1280x720.
	for _, tb := range append([]*tab{room}, freeTabs[free[0]]) {
		waitUntil(t, 90*time.Second, tb.name+" decoding the hub at 1280x720", func() (bool, string) {
			v, seen := roomVideo(tb)
			return v.FrameWidth == 1280 && v.FramesDecoded > 0, seen
		})
	}
	for _, w := range watch {
		w.start()
	}
	// 600 kbit: a smaller layer within 10 s, no freeze over a second.
	tl.setPhase("tbf 600 kbit")
	before, _ := roomVideo(room)
	link.SetRate(t, 600)
	t.Logf("600 kbit limit from %s", time.Now().UTC().Format("15:04:05.000"))
	waitUntil(t, 10*time.Second, limited+" at 320x180 or 640x360 after the 600 kbit limit", func() (bool, string) {
		v, seen := roomVideo(room)
		return (v.FrameWidth == 320 || v.FrameWidth == 640) && v.FramesDecoded > before.FramesDecoded, seen
	})
	// Watch it settle for a few seconds.
	settle := time.Now()
	waitUntil(t, 10*time.Second, "five seconds at 600 kbit", func() (bool, string) {
		return time.Since(settle) > 5*time.Second, ""
	})
	after, _ := roomVideo(room)
	if n := link.qdiscSentBytes(t); n < 100_000 {
		t.Fatalf("the rate limit saw %d bytes: the room's media does not cross its veth", n)
	}
	// Issue 3's bound: no freeze over 1 s. Longest freezes measured with the
	// NACK loss signal and the one-switch drain (session 15): 0.00-0.75 s
	// in 42 runs, 12 of them beside busy loops; before them, 0.00-1.05 s
	// with one run in 31 over 1 s (GCC's detection taking up to a second,
	// or two switches on the way down). See bench/RESULTS.md.
	const freezeBound = 1.0
	longest := tl.longestFreeze("tbf 600 kbit")
	t.Logf("at 600 kbit: longest freeze %.2f s (%d freezes, %.2f s in all)",
		longest, after.FreezeCount-before.FreezeCount, after.TotalFreezesDuration-before.TotalFreezesDuration)
	if longest > freezeBound {
		t.Errorf("at 600 kbit the picture froze for %.2f s at once: want under %.0f s", longest, freezeBound)
	}
	if after.FrameWidth != 320 && after.FrameWidth != 640 {
		t.Errorf("at 600 kbit the room settled at %dx%d", after.FrameWidth, after.FrameHeight)
	}
	// 600 kbit carries the smallest layer: the picture must go on.
	if tl.pausedIn("tbf 600 kbit") {
		t.Error("at 600 kbit the server paused the room's video (the smallest layer fits)")
	}
	waitUntil(t, 3*time.Second, limited+" still decoding at 600 kbit", func() (bool, string) {
		v, seen := roomVideo(room)
		return v.FramesDecoded > after.FramesDecoded+5, seen
	})

	// 150 kbit: video paused, audio goes on, and the page says why.
	tl.setPhase("tbf 150 kbit")
	link.SetRate(t, 150)
	waitUntil(t, 15*time.Second, limited+" told its video is paused", func() (bool, string) {
		l, err := hubLayer(room)
		if err != nil {
			return false, err.Error()
		}
		return l.Reason == "paused", fmt.Sprintf("%+v", l)
	})
	audioCount := func() int {
		stats, _ := inbound(room)
		a, _ := find(stats, "hub", "audio")
		return a.PacketsReceived
	}
	a0, v0 := audioCount(), func() int { v, _ := roomVideo(room); return v.FramesDecoded }()
	waitUntil(t, 10*time.Second, "audio arriving while the video is paused", func() (bool, string) {
		a := audioCount()
		return a > a0+50, fmt.Sprintf("audio packets %d -> %d", a0, a)
	})
	if v, _ := roomVideo(room); v.FramesDecoded > v0+15 {
		l, _ := hubLayer(room)
		if l.Reason == "paused" {
			t.Errorf("video kept decoding (%d -> %d frames) while the server says paused", v0, v.FramesDecoded)
		}
	}
	notice, _ := eval[string](room, `document.getElementById("quality").textContent`)
	if notice == "" {
		t.Error("the room page shows nothing about the paused video")
	}

	// Lifted: back to 1280x720 within 30 s (13-17 s in every run since the
	// estimate falls only on a congestion signal; see bench/RESULTS.md).
	tl.setPhase("no limit")
	link.ClearRate(t)
	lifted := time.Now()
	waitUntil(t, 30*time.Second, limited+" back at 1280x720 after the limit is lifted", func() (bool, string) {
		v, seen := roomVideo(room)
		return v.FrameWidth == 1280, seen
	})
	t.Logf("back at 1280x720 %.1f s after the limit was lifted", time.Since(lifted).Seconds())
	// The other rooms, throughout: at 1280x720 unless the hub's Chromium
	// itself stopped sending it.
	for id, w := range watch {
		w.check(t, id)
	}
	for _, tb := range tabs {
		if errs, err := eval[[]map[string]any](tb, `citybridge.errors`); err != nil || len(errs) != 0 {
			t.Errorf("%s reported errors %v (%v)", tb.name, errs, err)
		}
	}
	st := ts.media.Stats()
	t.Logf("SFU: %d probes (%d failed), %d layer changes, %d retransmitted, NACKs declined: %d stale, %d over budget",
		st.Probes, st.FailedProbes, st.LayerChanges, st.Retransmitted, st.StaleNACKs, st.UnaffordableNACKs)
}

// writeArtifact saves a file next to the screenshots (test-artifacts/ or
// CITYBRIDGE_ARTIFACTS).
func writeArtifact(t *testing.T, name, content string) {
	dir := os.Getenv("CITYBRIDGE_ARTIFACTS")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
}
