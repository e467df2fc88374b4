package terminal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"
)

// Fleet is many terminals run together: the room simulator's load, and
// the subject of drills.
type Fleet struct {
	// Terminals are the fleet's terminals; a Reboot replaces one, so
	// while reboots may run read them with Terminal(i).
	Terminals []*Terminal
	Links     []*Link
	slots     sync.RWMutex // guards Terminals' entries against Reboot
	ctx       context.Context
	cancel    context.CancelFunc
	stops     []context.CancelFunc // one per terminal
	done      []chan struct{}      // closed when terminal i's Run returns
	wg        sync.WaitGroup
	errMu     sync.Mutex
	errs      []error
}

// StartFleet starts one terminal per token against the server at base;
// each option may change every terminal's configuration.
func StartFleet(base, conference string, tokens []string, layers []string, log *slog.Logger, opts ...func(*Config)) (*Fleet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{ctx: ctx, cancel: cancel}
	for i, tok := range tokens {
		link := &Link{}
		cfg := Config{Base: base, Token: tok, Conference: conference, Link: link, Layers: layers,
			Logger: log.With("terminal", i)}
		for _, o := range opts {
			o(&cfg)
		}
		t, err := New(cfg)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.Terminals = append(f.Terminals, t)
		f.Links = append(f.Links, link)
	}
	f.stops = make([]context.CancelFunc, len(f.Terminals))
	f.done = make([]chan struct{}, len(f.Terminals))
	for i := range f.Terminals {
		f.start(i)
	}
	return f, nil
}

func (f *Fleet) start(i int) {
	t := f.Terminal(i)
	ctx, stop := context.WithCancel(f.ctx)
	f.stops[i], f.done[i] = stop, make(chan struct{})
	done := f.done[i]
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(done)
		if err := t.Run(ctx); err != nil {
			f.errMu.Lock()
			f.errs = append(f.errs, fmt.Errorf("%s: %w", t.Bridge(), err))
			f.errMu.Unlock()
		}
	}()
}

// Reboot turns terminal i off and on again, as a room's PC restarting:
// its connections end without a goodbye and a new terminal with the same
// credential and line, knowing nothing of the old one, starts. It returns
// how long the new one took to receive the hub's video (or an error after
// timeout).
func (f *Fleet) Reboot(i int, timeout time.Duration) (time.Duration, error) {
	old := f.Terminal(i)
	old.crash.Store(true) // no goodbye: the power went
	f.stops[i]()
	<-f.done[i]
	t, err := New(old.cfg)
	if err != nil {
		return 0, err
	}
	t.bridge.Store(old.Bridge()) // the same room, known by its bridge until it joins
	f.slots.Lock()
	f.Terminals[i] = t
	f.slots.Unlock()
	start := time.Now()
	f.start(i)
	for time.Since(start) < timeout {
		if t.LastHub().After(start) {
			return time.Since(start), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("terminal %d not receiving the hub %v after its restart", i, timeout)
}

// Terminal returns terminal i (the new one after a Reboot).
func (f *Fleet) Terminal(i int) *Terminal {
	f.slots.RLock()
	defer f.slots.RUnlock()
	return f.Terminals[i]
}

// Errors are the terminals that stopped for good (refused).
func (f *Fleet) Errors() []error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return slices.Clone(f.errs)
}

// Stop ends every terminal (they say goodbye) and waits for them.
func (f *Fleet) Stop() {
	f.cancel()
	f.wg.Wait()
}

// Receiving reports how many terminals have had the hub's video within
// the last window.
func (f *Fleet) Receiving(window time.Duration) int {
	return len(f.Terminals) - len(f.NotReceiving(window))
}

// NotReceiving describes the terminals that have not had the hub's video
// within the last window: bridge, state, and how many of the hub's video
// packets they ever received.
func (f *Fleet) NotReceiving(window time.Duration) []string {
	var out []string
	for i := range f.Links {
		t := f.Terminal(i)
		if last := t.LastHub(); last.IsZero() || time.Since(last) >= window {
			out = append(out, fmt.Sprintf("%s (%s, %d hub packets)", t.Bridge(), t.State(), t.HubPackets()))
		}
	}
	return out
}

// Flap cuts the lines of the terminals at indexes every cycle: down for
// down, up for up, until total has passed (or ctx ends). The cuts are
// staggered over the first cycle so they do not all fall at once.
func (f *Fleet) Flap(ctx context.Context, indexes []int, down, up, total time.Duration) {
	var wg sync.WaitGroup
	end := time.Now().Add(total)
	cycle := down + up
	for k, i := range indexes {
		link := f.Links[i]
		offset := time.Duration(int64(cycle) * int64(k) / int64(max(len(indexes), 1)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleep(ctx, offset) {
				return
			}
			for time.Now().Add(down).Before(end) {
				link.Cut()
				ok := sleep(ctx, down)
				link.Restore()
				if !ok || !sleep(ctx, up) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Pick returns n distinct random indexes of the fleet.
func (f *Fleet) Pick(n int) []int {
	idx := rand.Perm(len(f.Terminals))[:min(n, len(f.Terminals))]
	sort.Ints(idx)
	return idx
}

// Report sums up the faults of a drill.
type Report struct {
	Faults      int
	Detected    int
	Recovered   int
	Recoveries  []time.Duration // sorted
	Detections  []time.Duration // sorted
	Unrecovered []string        // bridges with a fault that did not recover
	PerBridge   map[string][]Fault
}

// Report collects every fault so far; a fault counts as recovered once the
// hub's video flowed again after its restore.
func (f *Fleet) Report() Report {
	r := Report{PerBridge: map[string][]Fault{}}
	for i, l := range f.Links {
		faults := l.Faults()
		if len(faults) == 0 {
			continue
		}
		b := f.Terminal(i).Bridge()
		r.PerBridge[b] = faults
		for _, ft := range faults {
			if ft.Restored.IsZero() {
				continue // still cut
			}
			r.Add(b, ft.Detected, ft.Recovered)
		}
	}
	return r
}

// Add counts one fault of bridge: detected, how long after the cut its
// terminal noticed (0: it did not); recovered, how long after the restore
// the hub's video flowed again (0: it did not). The drill's report counts
// its faults (reboots too) with it.
func (r *Report) Add(bridge string, detected, recovered time.Duration) {
	r.Faults++
	if detected > 0 {
		r.Detected++
		r.Detections = insertSorted(r.Detections, detected)
	}
	if recovered > 0 {
		r.Recovered++
		r.Recoveries = insertSorted(r.Recoveries, recovered)
	} else {
		r.Unrecovered = append(r.Unrecovered, bridge)
	}
}

func insertSorted(s []time.Duration, d time.Duration) []time.Duration {
	i, _ := slices.BinarySearch(s, d)
	return slices.Insert(s, i, d)
}

// Quantile returns the q-quantile (0..1) of sorted durations.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Write prints the report: totals, the recovery distribution, and the
// bridges that did not recover.
func (r Report) Write(w io.Writer) { r.WriteWith(w, time.Duration.String) }

// WriteWith is Write with the durations formatted by format.
func (r Report) WriteWith(w io.Writer, format func(time.Duration) string) {
	fmt.Fprintf(w, "faults %d, detected by the terminal %d, recovered %d\n", r.Faults, r.Detected, r.Recovered)
	fmt.Fprintf(w, "recovery after the line came back: min %v, median %v, p90 %v, max %v\n",
		format(Quantile(r.Recoveries, 0)), format(Quantile(r.Recoveries, 0.5)), format(Quantile(r.Recoveries, 0.9)), format(Quantile(r.Recoveries, 1)))
	fmt.Fprintf(w, "detection after the cut: median %v, max %v\n", format(Quantile(r.Detections, 0.5)), format(Quantile(r.Detections, 1)))
	if len(r.Unrecovered) > 0 {
		fmt.Fprintf(w, "NOT recovered: %v\n", r.Unrecovered)
	}
}
