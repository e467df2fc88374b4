package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	lastAt    time.Time // the last sample
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
	tl.last, tl.lastAt = v, time.Now()
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
// link receives at every sample: when the server held it below the top
// layer for its link, how long it decoded less than 1280x720 while the
// server sent it the top layer, and the stalls of the test's own sampling.
//
// A lower layer the server labels "best" (the hub's Chromium, starved,
// stops sending its 720p layer, and no room can have it) is held back like
// any other once the hub's page has been encoding that layer for
// bestGrace: the label is checked against what the hub sends, not taken
// on trust.
type freeWatch struct {
	mu             sync.Mutex
	on             bool
	samples, small int            // samples, and those decoding less than 1280x720
	held           map[string]int // samples below the top layer, by the server's layer and reason
	heldAt         []time.Time    // samples held below the top layer by the server
	stalls         []stall        // the test's own sampling stalled over stallGap
	smallRun       run
	lastSample     time.Time
	gap            time.Duration // the longest time between two samples
	hubFull        int           // the hub's frames encoded on its full layer, at the last sample
	hubFullSince   time.Time     // since when every sample saw that count rise
	bestWhileSent  int           // samples labelled "best" below the top layer while the hub sent it
}

const (
	// stallGap is a stall of the test's sampling: a machine that starved
	// the test that long starved its browsers too, and the server cannot
	// tell their late packets from a congested link's (GCC reads the
	// delay as overuse).
	stallGap = time.Second
	// stallExcuse is how long after a stall a hold-back is excused: a
	// move back up waits allocHold (3 s) of a steady estimate and a probe
	// (1 s and 0.6 s of grace), twice for q to f; 10 s covers that once
	// the stall is over, not a room held back for the rest of the run.
	stallExcuse = 10 * time.Second
	// bestGrace is how long the hub's page must have been encoding its
	// full layer before a lower layer labelled "best" counts as held back:
	// the server measures a layer that comes back within a quarter second
	// or two, then waits for its keyframe.
	bestGrace = 2 * time.Second
)

// stall is a stretch in which the test took no sample.
type stall struct{ from, to time.Time }

// excuses reports whether a hold-back seen at at is excused by the stall:
// from a second before it (the sample before a stall already saw the
// starving machine) to stallExcuse after it.
func (s stall) excuses(at time.Time) bool {
	return !at.Before(s.from.Add(-time.Second)) && !at.After(s.to.Add(stallExcuse))
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

// add records one sample taken at now: the room's inbound video, the server's layer
// message, and hubFull, the frames the hub's page has encoded on its full
// layer (-1 when it could not be read).
func (w *freeWatch) add(now time.Time, v inboundStat, l layerInfo, hubFull int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on {
		return
	}
	if !w.lastSample.IsZero() {
		gap := now.Sub(w.lastSample)
		w.gap = max(w.gap, gap)
		if gap > stallGap {
			w.stalls = append(w.stalls, stall{w.lastSample, now})
		}
	}
	w.lastSample = now
	switch {
	case hubFull < 0 || hubFull <= w.hubFull:
		w.hubFullSince = time.Time{}
	case w.hubFullSince.IsZero():
		w.hubFullSince = now
	}
	w.hubFull = max(w.hubFull, hubFull)
	hubSends := !w.hubFullSince.IsZero() && now.Sub(w.hubFullSince) >= bestGrace
	w.samples++
	top := l.Layer == "f"
	if v.FrameWidth != 1280 {
		w.small++
	}
	if !top {
		w.held[l.Layer+" "+l.Reason]++
	}
	if !top && l.Reason == "best" && hubSends {
		w.bestWhileSent++
	}
	if !top && (l.Reason != "best" || hubSends) {
		w.heldAt = append(w.heldAt, now)
	}
	w.smallRun.add(top && v.FrameWidth != 1280, now)
}

// heldBack splits the hold-backs into those a stall of the sampling
// excuses and those it does not, and returns the longest stretch of the
// latter (consecutive samples at most stallGap apart).
func (w *freeWatch) heldBack() (counted, excused int, longest time.Duration) {
	var from, last time.Time
	for _, at := range w.heldAt {
		if slices.ContainsFunc(w.stalls, func(s stall) bool { return s.excuses(at) }) {
			excused++
			continue
		}
		counted++
		if last.IsZero() || at.Sub(last) > stallGap {
			from = at
		}
		last = at
		longest = max(longest, at.Sub(from))
	}
	return counted, excused, longest
}

func (w *freeWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	counted, excused, longest := w.heldBack()
	return fmt.Sprintf("%d samples (at most %.1f s apart, %d stalls over %v), decoding less than 1280x720 in %d, below the top layer %v "+
		"(\"best\" while the hub had sent its full layer for %v: %d); held back by the server in %d (%.1f s at most in one stretch), "+
		"%d more excused by a stall; below 1280x720 while sent the top layer for %.1f s at most",
		w.samples, w.gap.Seconds(), len(w.stalls), stallGap, w.small, w.held, bestGrace, w.bestWhileSent,
		counted, longest.Seconds(), excused, w.smallRun.longest.Seconds())
}

// check fails t when the server held the room below the top layer for its
// link (a lower layer labelled "best" while the hub sends the top one
// included), or the room decoded less than 1280x720 for over a second
// while being sent the top layer. A stall of the test's own sampling
// excuses the hold-backs from a second before it to stallExcuse after it,
// and only those.
func (w *freeWatch) check(t *testing.T, id string) {
	t.Helper()
	w.mu.Lock()
	counted, excused, _ := w.heldBack()
	small, samples := w.smallRun, w.samples
	w.mu.Unlock()
	if samples < 20 {
		t.Errorf("room %s on an unlimited link: %d samples, too few to tell", id, samples)
	}
	if excused > 0 {
		t.Logf("room %s on an unlimited link: %d samples held back by the server around stalls of this test's sampling, not counted", id, excused)
	}
	if counted > 0 {
		t.Errorf("room %s on an unlimited link was held below the top layer by the server (%v)", id, w)
	}
	if small.longest > time.Second {
		t.Errorf("room %s on an unlimited link decoded less than 1280x720 for %.1f s while sent the top layer (%v)", id, small.longest.Seconds(), w)
	}
}

// waitSample waits for the sampler's next read.
func (tl *timeline) waitSample(t *testing.T) {
	t.Helper()
	from := time.Now()
	waitUntil(t, 10*time.Second, "the sampler's next read", func() (bool, string) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return tl.lastAt.After(from), ""
	})
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
// than a second (freezes that end after the phase's last read included),
// video paused (audio flowing) at 150 kbit with the page's quality line
// saying so, and back to 1280x720 within 30 s of the limit being lifted.
// The other room stays at 1280x720 throughout, sampled four times a
// second (see freeWatch.check).
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
				hubFull, err := hubFullFrames(host)
				if err != nil {
					hubFull = -1
				}
				for id, tb := range freeTabs {
					stats, err1 := inbound(tb)
					l, err2 := hubLayer(tb)
					if err1 == nil && err2 == nil {
						v, _ := find(stats, "hub", "video")
						watch[id].add(time.Now(), v, l, hubFull)
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
	if after.FrameWidth != 320 && after.FrameWidth != 640 {
		t.Errorf("at 600 kbit the room settled at %dx%d", after.FrameWidth, after.FrameHeight)
	}
	// 600 kbit carries the smallest layer: the picture must go on. The
	// frames after the read also end any freeze in progress at it: a
	// freeze is recorded when it ends, so the sampler's first read after
	// them holds every freeze of this phase.
	waitUntil(t, 3*time.Second, limited+" still decoding at 600 kbit", func() (bool, string) {
		v, seen := roomVideo(room)
		return v.FramesDecoded > after.FramesDecoded+5, seen
	})
	tl.waitSample(t)
	final, _ := roomVideo(room)
	if tl.pausedIn("tbf 600 kbit") {
		t.Error("at 600 kbit the server paused the room's video (the smallest layer fits)")
	}
	// Issue 3's bound: no freeze over 1 s. Longest freezes measured with the
	// NACK loss signal and the one-switch drain (session 15): 0.00-0.75 s
	// in 42 runs, 12 of them beside busy loops; before them, 0.00-1.05 s
	// with one run in 31 over 1 s (GCC's detection taking up to a second,
	// or two switches on the way down). See bench/RESULTS.md.
	const freezeBound = 1.0
	longest := tl.longestFreeze("tbf 600 kbit")
	t.Logf("at 600 kbit: longest freeze %.2f s (%d freezes, %.2f s in all)",
		longest, final.FreezeCount-before.FreezeCount, final.TotalFreezesDuration-before.TotalFreezesDuration)
	if longest > freezeBound {
		t.Errorf("at 600 kbit the picture froze for %.2f s at once: want under %.0f s", longest, freezeBound)
	}

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
	// The page says why, in its own language: its quality line shows the
	// paused notice (not a stale line about the last layer), and shows it.
	waitUntil(t, 5*time.Second, limited+"'s page saying its video is paused", func() (bool, string) {
		q, err := eval[struct {
			Text  string `json:"text"`
			Want  string `json:"want"`
			Shown bool   `json:"shown"`
		}](room, `(async () => {
			const q = document.getElementById("quality");
			const { t } = await import("/static/i18n.js");
			return { text: q.textContent, want: t("layer_paused"), shown: q.checkVisibility() };
		})()`)
		if err != nil {
			return false, err.Error()
		}
		return q.Want != "" && q.Text == q.Want && q.Shown, fmt.Sprintf("quality line %q (shown: %v), want %q", q.Text, q.Shown, q.Want)
	})

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

// hubFullFrames returns how many frames the hub's page has encoded on its
// full simulcast layer (hubEncoded, for a goroutine).
func hubFullFrames(host *tab) (int, error) {
	return eval[int](host, `(async () => {
		let n = 0;
		(await citybridge.session.pcs.pub.getStats()).forEach((s) => {
			if (s.type === "outbound-rtp" && s.kind === "video" && s.rid === "f") n = s.framesEncoded || 0;
		});
		return n;
	})()`)
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
