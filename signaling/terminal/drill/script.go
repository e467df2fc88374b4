package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"citybridge/signaling/terminal"
)

// startWait bounds the wait for every terminal to receive the hub before
// the script starts.
const startWait = 90 * time.Second

// run is one drill under way.
type run struct {
	o        options
	log      *slog.Logger
	progress io.Writer
	fleet    *terminal.Fleet
	hub      *terminal.Fleet // nil without --hub-token
	byBridge map[string]int
	ids      []string // terminal i's bridge (it may not have joined yet)

	mu       sync.Mutex
	scripted map[int]bool // terminals a fault was scripted on
	reboots  []Fault
	hubDrop  *HubDrop
}

func (r *run) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.progress, format+"\n", args...)
}

func simulate(ctx context.Context, o options, log *slog.Logger, stdout, progress io.Writer) error {
	a := newAPI(o.url, o.token)
	var invited []struct{ ID, Kind string }
	if err := a.call("GET", "/api/conferences/"+o.conference+"/bridges", &invited); err != nil {
		return err
	}
	if o.bridges > 0 && o.bridges < len(invited) {
		invited = invited[:o.bridges]
	}
	known := map[string]bool{}
	for _, b := range invited {
		known[b.ID] = true
	}
	for _, d := range o.drops {
		if !known[d.bridge] {
			return usagef("--drop %s: not among the %d bridges simulated", d.bridge, len(invited))
		}
	}
	if o.reboot > len(invited)-len(o.drops) {
		return usagef("--reboot %d: only %d bridges simulated without a --drop", o.reboot, len(invited)-len(o.drops))
	}
	tokens := make([]string, 0, len(invited))
	for _, b := range invited {
		var link struct{ Token string }
		if err := a.call("POST", "/api/bridges/"+b.ID+"/terminal-links", &link); err != nil {
			return err
		}
		tokens = append(tokens, link.Token)
	}
	r := &run{o: o, log: log, progress: progress, byBridge: map[string]int{}, scripted: map[int]bool{}}
	if o.hubToken != "" {
		var err error
		if r.hub, err = terminal.StartFleet(a.base, o.conference, []string{o.hubToken}, []string{"q", "h", "f"}, log.With("role", "hub")); err != nil {
			return err
		}
		defer r.hub.Stop()
	}
	fleet, err := terminal.StartFleet(a.base, o.conference, tokens, o.layers, log)
	if err != nil {
		return err
	}
	defer fleet.Stop()
	r.fleet = fleet
	r.say("%d terminals started; waiting for the hub's video at each", len(tokens))
	waitFor(ctx, startWait, func() bool { return fleet.Receiving(2*time.Second) == len(tokens) })
	receiving := fleet.Receiving(2 * time.Second)
	r.say("%d of %d terminals receiving the hub", receiving, len(tokens))
	if receiving == 0 && o.faults() {
		return errors.New("no terminal receives the hub's video: a drill needs a hub in the conference (a host console, or --hub-token)")
	}
	for i, b := range invited { // the terminals join as their bridges, in this order
		r.byBridge[b.ID] = i
		r.ids = append(r.ids, b.ID)
	}

	w := startWatch(fleet, r.ids, r.isScripted)
	start := time.Now()
	r.script(ctx)
	if end := start.Add(o.duration); time.Now().Before(end) {
		if o.steady {
			r.say("steady: keeping %d terminals connected for %v", len(tokens), o.duration)
		} else {
			r.say("faults done; running until %v has passed", o.duration)
		}
		waitFor(ctx, time.Until(end), func() bool { return false })
	}
	r.waitRecovered(ctx)
	outages, reconnects := w.stop()
	rep := r.report(start, time.Now(), receiving, outages, reconnects)
	rep.serverEvents(a, o.conference, start)
	if o.jsonOut {
		rep.writeJSON(stdout)
	} else {
		rep.writeText(stdout)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if problems := rep.problems(); len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// script runs the faults: every --drop at once at the start (each
// restored after its time), and beside them, one after another, the
// reboots, the bridges-drop, the hub-drop and the flap (for --duration).
func (r *run) script(ctx context.Context) {
	var wg sync.WaitGroup
	for _, d := range r.o.drops {
		i := r.byBridge[d.bridge]
		r.mark(i)
		wg.Go(func() {
			link := r.fleet.Links[i]
			link.Cut()
			r.say("cut %s for %v", d.bridge, d.down)
			defer link.Restore()
			waitFor(ctx, d.down, func() bool { return false })
		})
	}
	wg.Go(func() {
		for k, i := range r.pick(r.o.reboot) {
			b := r.ids[i]
			at := time.Now()
			took, err := r.fleet.Reboot(i, r.o.recoveryTimeout)
			f := Fault{Kind: "reboot", Bridge: b, Cut: at, Restored: at, Recovered: took}
			if err != nil {
				r.say("reboot %d: %s NOT back: %v", k+1, b, err)
				f.Recovered = 0
			} else {
				r.say("reboot %d: %s receiving the hub %v after starting again", k+1, b, took.Round(time.Millisecond))
			}
			r.mu.Lock()
			r.reboots = append(r.reboots, f)
			r.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
		}
		if r.o.dropShare > 0 && ctx.Err() == nil {
			idx := r.pick(max(1, len(r.fleet.Links)*r.o.dropShare/100))
			r.say("cutting %d lines at once for %v", len(idx), r.o.dropFor)
			for _, i := range idx {
				r.fleet.Links[i].Cut()
			}
			waitFor(ctx, r.o.dropFor, func() bool { return false })
			for _, i := range idx {
				r.fleet.Links[i].Restore()
			}
		}
		if r.o.hubDrop > 0 && ctx.Err() == nil {
			r.runHubDrop(ctx)
		}
		if r.o.flap != "" && ctx.Err() == nil {
			n := max(1, len(r.fleet.Links)*r.o.flapShare/100)
			idx := r.pick(n)
			r.say("flapping %d lines (%v down, %v up) for %v", len(idx), r.o.flapDown, r.o.flapUp, r.o.duration)
			r.fleet.Flap(ctx, idx, r.o.flapDown, r.o.flapUp, r.o.duration)
		}
	})
	wg.Wait()
}

// mark records that a fault is scripted on terminal i.
func (r *run) mark(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scripted[i] = true
}

func (r *run) isScripted(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scripted[i] || r.hubDrop != nil && r.hubDrop.Back.IsZero()
}

// pick chooses up to n terminals no fault was scripted on yet, and marks
// them.
func (r *run) pick(n int) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var free []int
	for i := range r.fleet.Links {
		if !r.scripted[i] {
			free = append(free, i)
		}
	}
	rand.Shuffle(len(free), func(a, b int) { free[a], free[b] = free[b], free[a] })
	free = free[:min(n, len(free))]
	sort.Ints(free)
	for _, i := range free {
		r.scripted[i] = true
	}
	return free
}

// runHubDrop cuts the synthetic hub's line and times each room's return
// to the hub's video after the line came back.
func (r *run) runHubDrop(ctx context.Context) {
	hd := &HubDrop{}
	r.mu.Lock()
	r.hubDrop = hd // the rooms' loss of the hub's video is scripted until all have it back
	r.mu.Unlock()
	link := r.hub.Links[0]
	r.say("cutting the hub's line for %v", r.o.hubDrop)
	link.Cut()
	waitFor(ctx, r.o.hubDrop, func() bool { return false })
	link.Restore()
	back := time.Now()
	rooms := len(r.fleet.Links)
	waits := make([]time.Duration, rooms)
	waitFor(ctx, r.o.recoveryTimeout, func() bool {
		left := 0
		for i := range waits {
			if waits[i] == 0 {
				if last := r.fleet.Terminal(i).LastHub(); last.After(back) {
					waits[i] = last.Sub(back)
				} else {
					left++
				}
			}
		}
		return left == 0
	})
	f := link.Faults()[len(link.Faults())-1]
	r.mu.Lock()
	defer r.mu.Unlock()
	hd.Cut, hd.Restored, hd.Detected, hd.Rooms, hd.Back = f.Cut, f.Restored, f.Detected, rooms, time.Now()
	for _, w := range waits {
		if w > 0 {
			hd.Waits = append(hd.Waits, w)
		}
	}
	sort.Slice(hd.Waits, func(i, j int) bool { return hd.Waits[i] < hd.Waits[j] })
}

// waitRecovered waits until every cut line's terminal has the hub's video
// again, or --recovery-timeout has passed since the line came back.
func (r *run) waitRecovered(ctx context.Context) {
	pending := func() bool {
		for _, l := range r.fleet.Links {
			for _, f := range l.Faults() {
				if f.Restored.IsZero() || f.Recovered == 0 && time.Since(f.Restored) < r.o.recoveryTimeout {
					return true
				}
			}
		}
		return false
	}
	if pending() {
		r.say("waiting for the last lines to recover (at most %v each)", r.o.recoveryTimeout)
		waitFor(ctx, r.o.recoveryTimeout+time.Second, func() bool { return !pending() })
	}
}

// waitFor polls done every 50 ms until it holds, d has passed or ctx
// ends; it reports whether done held.
func waitFor(ctx context.Context, d time.Duration, done func() bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if done() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return done()
		case <-tick.C:
		}
	}
}
