package drill

import (
	"time"

	"citybridge/signaling/terminal"
)

// outageAfter is how long a terminal must be without the hub's video, or
// out of the connected state, to count as dropped: the page calls a
// picture frozen after 2 s.
const outageAfter = 2 * time.Second

// Outage is a terminal that lost the conference with no fault on its line.
type Outage struct {
	Bridge string
	From   time.Time
	To     time.Time // zero: still out when the drill ended
}

// watch looks at every terminal no fault was scripted on, five times a
// second, for outages: the hub's video missing (for a terminal that had
// it) or the terminal not connected, for outageAfter or longer. It also
// counts each terminal's reconnections (fresh and resumed joins).
type watch struct {
	fleet    *terminal.Fleet
	ids      []string // terminal i's bridge
	scripted func(i int) bool
	quit     chan struct{}
	done     chan struct{}

	joins0  []int64
	open    map[int]*Outage
	outages []Outage
}

func startWatch(f *terminal.Fleet, ids []string, scripted func(int) bool) *watch {
	w := &watch{fleet: f, ids: ids, scripted: scripted, quit: make(chan struct{}), done: make(chan struct{}), open: map[int]*Outage{}}
	for i := range f.Links {
		t := f.Terminal(i)
		w.joins0 = append(w.joins0, t.Joins()+t.Resumes())
	}
	go w.loop()
	return w
}

func (w *watch) loop() {
	defer close(w.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.quit:
			return
		case now := <-tick.C:
			w.look(now)
		}
	}
}

func (w *watch) look(now time.Time) {
	for i := range w.fleet.Links {
		if w.scripted(i) {
			delete(w.open, i)
			continue
		}
		t := w.fleet.Terminal(i)
		var out bool
		var from time.Time
		if last := t.LastHub(); !last.IsZero() && now.Sub(last) >= outageAfter {
			out, from = true, last
		} else if t.State() != terminal.StateConnected {
			out, from = true, now
		}
		switch o := w.open[i]; {
		case out && o == nil:
			w.open[i] = &Outage{Bridge: w.ids[i], From: from}
		case !out && o != nil:
			o.To = now
			if o.To.Sub(o.From) >= outageAfter {
				w.outages = append(w.outages, *o)
			}
			delete(w.open, i)
		}
	}
}

// stop ends the watch: the outages seen (those still open end at zero if
// they have lasted outageAfter), and the reconnections of terminals no
// fault was scripted on, by bridge.
func (w *watch) stop() ([]Outage, map[string]int) {
	close(w.quit)
	<-w.done
	now := time.Now()
	for _, o := range w.open {
		if now.Sub(o.From) >= outageAfter {
			w.outages = append(w.outages, *o)
		}
	}
	reconnects := map[string]int{}
	for i := range w.fleet.Links {
		t := w.fleet.Terminal(i)
		if n := t.Joins() + t.Resumes() - w.joins0[i]; n > 0 && !w.scripted(i) {
			reconnects[w.ids[i]] = int(n)
		}
	}
	return w.outages, reconnects
}
