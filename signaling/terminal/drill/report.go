package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"citybridge/signaling/terminal"
)

// Fault is one cut line or rebooted terminal, what the terminal made of
// it, and what the server's event log says of the same bridge.
type Fault struct {
	Kind     string // "cut" (its line) or "reboot" (its PC)
	Bridge   string
	Cut      time.Time // when the line went down (the reboot began)
	Restored time.Time // when it came back (the new terminal started)
	// Detected: how long after the cut the terminal noticed (0: it did
	// not, the cut was shorter than its stall detection; a reboot has none).
	Detected time.Duration
	// Recovered: how long after the restore the hub's video flowed again
	// (0: it did not within --recovery-timeout).
	Recovered time.Duration
	// ServerNoticed: how long after the cut the server logged the bridge's
	// connection lost (a drop event); ServerBack: how long after the
	// restore it logged the bridge back (a reconnect or join event).
	// Negative: no such event.
	ServerNoticed, ServerBack time.Duration
}

// Down is the line's true cut length.
func (f Fault) Down() time.Duration { return f.Restored.Sub(f.Cut) }

// HubDrop is the hub-drop scenario's result.
type HubDrop struct {
	Cut, Restored time.Time
	Detected      time.Duration   // the hub's terminal noticed after
	Rooms         int             // rooms simulated
	Waits         []time.Duration // the rooms that got the hub back: after its line returned, sorted
	Back          time.Time       // when the drill stopped waiting for the rooms
	ServerNoticed time.Duration   // the server's drop event for the hub, after the cut (negative: none)
	ServerBack    time.Duration   // its reconnect or join event, after the restore (negative: none)
}

// Report is a drill's outcome.
type Report struct {
	Steady       bool
	Terminals    int
	Receiving    int // receiving the hub when the script started
	Start, End   time.Time
	Faults       []Fault // by cut time
	HubDrop      *HubDrop
	Outages      []Outage       // terminals with no fault scripted that lost the conference
	Reconnects   map[string]int // their reconnections, by bridge
	ServerLogErr string         // why the server's event log could not be read
	recoveryMax  time.Duration
}

// report gathers the faults of the drill.
func (r *run) report(start, end time.Time, receiving int, outages []Outage, reconnects map[string]int) *Report {
	rep := &Report{Steady: r.o.steady, Terminals: len(r.fleet.Links), Receiving: receiving, Start: start, End: end,
		Outages: outages, Reconnects: reconnects, recoveryMax: r.o.recoveryTimeout}
	for i, l := range r.fleet.Links {
		b := r.ids[i]
		for _, f := range l.Faults() {
			rep.Faults = append(rep.Faults, Fault{Kind: "cut", Bridge: b, Cut: f.Cut, Restored: f.Restored,
				Detected: f.Detected, Recovered: f.Recovered, ServerNoticed: -1, ServerBack: -1})
		}
	}
	r.mu.Lock()
	for _, f := range r.reboots {
		f.ServerNoticed, f.ServerBack = -1, -1
		rep.Faults = append(rep.Faults, f)
	}
	if r.hubDrop != nil {
		hd := *r.hubDrop
		hd.ServerNoticed, hd.ServerBack = -1, -1
		rep.HubDrop = &hd
	}
	r.mu.Unlock()
	sort.Slice(rep.Faults, func(i, j int) bool { return rep.Faults[i].Cut.Before(rep.Faults[j].Cut) })
	return rep
}

// event is one line of the server's link event log (GET /api/events).
type event struct {
	At     time.Time
	Bridge string
	Kind   string
	Cause  string
}

// serverEvents reads the server's event log since the drill started and
// matches each fault with the bridge's drop (its connection lost) and the
// reconnect or join that followed. The times compare two clocks: run the
// drill on the server's machine, or keep both on NTP.
func (rep *Report) serverEvents(a api, conference string, since time.Time) {
	if len(rep.Faults) == 0 && rep.HubDrop == nil {
		return
	}
	var evs []event
	q := url.Values{"conference": {conference}, "from": {since.Add(-time.Second).Format(time.RFC3339Nano)}, "limit": {"100000"}}
	if err := a.call("GET", "/api/events?"+q.Encode(), &evs); err != nil {
		rep.ServerLogErr = err.Error()
		return
	}
	byBridge := map[string][]event{}
	for _, e := range evs {
		byBridge[e.Bridge] = append(byBridge[e.Bridge], e)
	}
	for i := range rep.Faults {
		f := &rep.Faults[i]
		next := time.Time{} // the bridge's next fault: its events are that one's
		for _, g := range rep.Faults[i+1:] {
			if g.Bridge == f.Bridge {
				next = g.Cut
				break
			}
		}
		f.ServerNoticed, f.ServerBack = match(byBridge[f.Bridge], f.Cut, f.Restored, next, rep.recoveryMax)
		if f.Kind == "reboot" && f.ServerNoticed < 0 {
			f.ServerBack = replaced(byBridge[f.Bridge], f.Restored, next, rep.recoveryMax)
		}
	}
	if hd := rep.HubDrop; hd != nil {
		hd.ServerNoticed, hd.ServerBack = match(byBridge["hub"], hd.Cut, hd.Restored, time.Time{}, rep.recoveryMax)
	}
}

// match finds, among one bridge's events, the first drop from the cut to
// a second after the restore, and the first reconnect or join after that
// drop, within the recovery time after the restore (and before next, if
// set). It returns them after the cut and after the restore (negative:
// not found).
func match(evs []event, cut, restored, next time.Time, recovery time.Duration) (noticed, back time.Duration) {
	noticed, back = -1, -1
	var dropAt time.Time
	for _, e := range evs {
		if e.Kind == "drop" && !e.At.Before(cut) && !e.At.After(restored.Add(time.Second)) {
			dropAt, noticed = e.At, e.At.Sub(cut)
			break
		}
	}
	if dropAt.IsZero() {
		return noticed, back
	}
	end := restored.Add(recovery + time.Second)
	if !next.IsZero() && next.Before(end) {
		end = next
	}
	for _, e := range evs {
		if (e.Kind == "reconnect" || e.Kind == "join") && e.At.After(dropAt) && e.At.Before(end) {
			return noticed, e.At.Sub(restored)
		}
	}
	return noticed, back
}

// replaced finds a rebooted terminal's return when the server logged no
// drop: the new connection took the place before the server read the old
// one's end (a reboot here is instant), so its log has the join alone. It
// returns the join after the restore (negative: none).
func replaced(evs []event, restored, next time.Time, recovery time.Duration) time.Duration {
	end := restored.Add(recovery + time.Second)
	if !next.IsZero() && next.Before(end) {
		end = next
	}
	for _, e := range evs {
		if e.Kind == "join" && !e.At.Before(restored) && e.At.Before(end) {
			return e.At.Sub(restored)
		}
	}
	return -1
}

// problems lists what did not hold: the reasons for exit status 1.
func (rep *Report) problems() []string {
	var out []string
	notRecovered := 0
	for _, f := range rep.Faults {
		if f.Recovered == 0 {
			notRecovered++
		}
	}
	if notRecovered > 0 {
		out = append(out, fmt.Sprintf("%d of %d faults did not recover within %v", notRecovered, len(rep.Faults), rep.recoveryMax))
	}
	if hd := rep.HubDrop; hd != nil && len(hd.Waits) < hd.Rooms {
		out = append(out, fmt.Sprintf("%d of %d rooms did not get the hub back", hd.Rooms-len(hd.Waits), hd.Rooms))
	}
	if len(rep.Outages) > 0 {
		out = append(out, fmt.Sprintf("%d outages of terminals with no fault on their line", len(rep.Outages)))
	}
	return out
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}

func (rep *Report) writeText(w io.Writer) {
	if len(rep.Faults) > 0 {
		fmt.Fprintln(w, "bridge\tfault\tcut at\tdown for\tnoticed after\trecovered after\tserver: lost after\tserver: back after")
		for _, f := range rep.Faults {
			rec := "NOT RECOVERED"
			if f.Recovered > 0 {
				rec = ms(f.Recovered)
			}
			noticed := "-"
			if f.Detected > 0 {
				noticed = ms(f.Detected)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Bridge, f.Kind, f.Cut.Format("15:04:05.000"), ms(f.Down()),
				noticed, rec, ms(f.ServerNoticed), ms(f.ServerBack))
		}
		rep.summary().WriteWith(w, ms)
	}
	if hd := rep.HubDrop; hd != nil {
		fmt.Fprintf(w, "hub's line down for %v, noticed by the hub after %v; server: lost after %v, back after %v\n",
			ms(hd.Restored.Sub(hd.Cut)), ms(hd.Detected), ms(hd.ServerNoticed), ms(hd.ServerBack))
		fmt.Fprintf(w, "hub back at %d of %d rooms: median %v, worst %v after its line returned; %d rooms without it\n",
			len(hd.Waits), hd.Rooms, ms(terminal.Quantile(hd.Waits, 0.5)), ms(terminal.Quantile(hd.Waits, 1)), hd.Rooms-len(hd.Waits))
	}
	if rep.ServerLogErr != "" {
		fmt.Fprintf(w, "the server's event log could not be read: %s\n", rep.ServerLogErr)
	}
	if rep.Steady {
		fmt.Fprintf(w, "steady for %v: %d terminals, %d receiving the hub at the start\n",
			rep.End.Sub(rep.Start).Round(time.Second), rep.Terminals, rep.Receiving)
	}
	if len(rep.Outages) == 0 {
		fmt.Fprintf(w, "terminals with no fault on their line: none dropped\n")
	}
	// One line a bridge: a soak on a struggling machine has thousands.
	type sum struct {
		n              int
		total, longest time.Duration
		from           time.Time
		open           bool
	}
	byBridge := map[string]*sum{}
	for _, o := range rep.Outages {
		end := o.To
		if end.IsZero() {
			end = rep.End
		}
		s := byBridge[o.Bridge]
		if s == nil {
			s = &sum{}
			byBridge[o.Bridge] = s
		}
		s.n++
		s.total += end.Sub(o.From)
		if end.Sub(o.From) > s.longest {
			s.longest, s.from = end.Sub(o.From), o.From
		}
		s.open = s.open || o.To.IsZero()
	}
	counts := map[string]int{}
	for b, s := range byBridge {
		counts[b] = s.n
	}
	for _, b := range sortedKeys(counts) {
		s := byBridge[b]
		still := ""
		if s.open {
			still = ", still out at the end"
		}
		fmt.Fprintf(w, "DROPPED: %s %d times, %v in all, the longest %v from %s%s; no fault on its line\n",
			b, s.n, ms(s.total), ms(s.longest), s.from.Format("15:04:05.000"), still)
	}
	if len(rep.Outages) > 0 {
		fmt.Fprintf(w, "%d outages of %d terminals with no fault on their line (2 s or more without the hub's video or the connection)\n",
			len(rep.Outages), len(byBridge))
	}
	for _, b := range sortedKeys(rep.Reconnects) {
		fmt.Fprintf(w, "reconnected: %s %d times, no fault on its line\n", b, rep.Reconnects[b])
	}
}

// summary counts the faults as the fleet's report does (terminal.Report),
// reboots included.
func (rep *Report) summary() terminal.Report {
	var s terminal.Report
	for _, f := range rep.Faults {
		s.Add(f.Bridge, f.Detected, f.Recovered)
	}
	return s
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// msOrNone is a terminal's figure in milliseconds for the JSON report,
// -1 for none (zero: it did not notice, did not recover).
func msOrNone(d time.Duration) int64 {
	if d <= 0 {
		return -1
	}
	return d.Milliseconds()
}

// serverMs is a figure from the server's log in milliseconds, -1 for
// none (negative: no such event; zero is a figure).
func serverMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// JSONReport is the drill's --json report.
type JSONReport struct {
	Steady       bool           `json:"steady"`
	Terminals    int            `json:"terminals"`
	Receiving    int            `json:"receiving_at_start"`
	Seconds      float64        `json:"seconds"`
	Faults       int            `json:"faults"`
	Detected     int            `json:"detected"`
	Recovered    int            `json:"recovered"`
	MedianMs     int64          `json:"median_recovery_ms"`
	WorstMs      int64          `json:"worst_recovery_ms"`
	Unrecovered  []string       `json:"unrecovered"`
	List         []JSONFault    `json:"list"`
	HubDrop      *JSONHubDrop   `json:"hub_drop,omitempty"`
	Dropped      []JSONOutage   `json:"dropped"`
	Reconnects   map[string]int `json:"reconnects"`
	ServerLogErr string         `json:"server_log_error,omitempty"`
}

// JSONFault is one fault of the JSON report (times in UTC).
type JSONFault struct {
	Bridge          string    `json:"bridge"`
	Kind            string    `json:"kind"`
	Cut             time.Time `json:"cut"`
	DownSeconds     float64   `json:"down_seconds"`
	NoticedMs       int64     `json:"noticed_ms"`        // -1: not noticed
	RecoveredMs     int64     `json:"recovered_ms"`      // -1: did not recover
	ServerNoticedMs int64     `json:"server_noticed_ms"` // -1: no drop in the server's log
	ServerBackMs    int64     `json:"server_back_ms"`    // -1: no reconnect in the server's log
}

// JSONHubDrop is the hub-drop scenario in the JSON report.
type JSONHubDrop struct {
	Cut             time.Time `json:"cut"`
	DownSeconds     float64   `json:"down_seconds"`
	NoticedMs       int64     `json:"noticed_ms"`
	Rooms           int       `json:"rooms"`
	RoomsBack       int       `json:"rooms_back"`
	MedianMs        int64     `json:"median_back_ms"`
	WorstMs         int64     `json:"worst_back_ms"`
	ServerNoticedMs int64     `json:"server_noticed_ms"`
	ServerBackMs    int64     `json:"server_back_ms"`
}

// JSONOutage is an outage of a terminal with no fault scripted; To is
// left out while it was still out at the end.
type JSONOutage struct {
	Bridge string    `json:"bridge"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to,omitzero"`
}

func (rep *Report) writeJSON(w io.Writer) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep.jsonReport())
}

// jsonReport is the report as --json gives it.
func (rep *Report) jsonReport() JSONReport {
	s := rep.summary()
	out := JSONReport{Steady: rep.Steady, Terminals: rep.Terminals, Receiving: rep.Receiving, Seconds: rep.End.Sub(rep.Start).Seconds(),
		Faults: s.Faults, Detected: s.Detected, Recovered: s.Recovered, Unrecovered: s.Unrecovered,
		MedianMs: terminal.Quantile(s.Recoveries, 0.5).Milliseconds(), WorstMs: terminal.Quantile(s.Recoveries, 1).Milliseconds(),
		List: []JSONFault{}, Dropped: []JSONOutage{}, Reconnects: rep.Reconnects, ServerLogErr: rep.ServerLogErr}
	for _, f := range rep.Faults {
		out.List = append(out.List, JSONFault{Bridge: f.Bridge, Kind: f.Kind, Cut: f.Cut.UTC(), DownSeconds: f.Down().Seconds(),
			NoticedMs: msOrNone(f.Detected), RecoveredMs: msOrNone(f.Recovered),
			ServerNoticedMs: serverMs(f.ServerNoticed), ServerBackMs: serverMs(f.ServerBack)})
	}
	if hd := rep.HubDrop; hd != nil {
		out.HubDrop = &JSONHubDrop{Cut: hd.Cut.UTC(), DownSeconds: hd.Restored.Sub(hd.Cut).Seconds(), NoticedMs: msOrNone(hd.Detected), Rooms: hd.Rooms,
			RoomsBack: len(hd.Waits), MedianMs: terminal.Quantile(hd.Waits, 0.5).Milliseconds(), WorstMs: terminal.Quantile(hd.Waits, 1).Milliseconds(),
			ServerNoticedMs: serverMs(hd.ServerNoticed), ServerBackMs: serverMs(hd.ServerBack)}
	}
	for _, o := range rep.Outages {
		out.Dropped = append(out.Dropped, JSONOutage{Bridge: o.Bridge, From: o.From.UTC(), To: o.To.UTC()})
	}
	if out.Unrecovered == nil {
		out.Unrecovered = []string{}
	}
	if out.Reconnects == nil {
		out.Reconnects = map[string]int{}
	}
	return out
}
