// Package drill is the room simulator and the drills technicians run
// (cmd/roomsim, and `citybridge drill`): it runs N synthetic room terminals in one process against a
// citybridge server: each joins as its bridge, publishes the 180p and 360p
// test clips (simulcast) and the audio clip, receives the hub, and follows
// the same reconnection rules as the room page. Fault scripts cut their
// lines; the report says, per bridge and overall, how long each terminal
// took to notice and to recover.
//
//	roomsim --url https://10.20.0.5:8443 --token TECHNICIAN_TOKEN --conference c1 \
//	        --bridges 116 --flap 10%:5s:15s --duration 2m
//
// The technician token provisions a terminal link for each simulated
// bridge (POST /api/bridges/{id}/terminal-links). --hub-token adds a
// synthetic hub when no real host is chairing. Exit status 1 if a fault did
// not recover.
package drill

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"citybridge/signaling/terminal"
)

type options struct {
	url, token, hubToken, conference string
	bridges                          int
	layers                           string
	flap, scenario                   string
	duration                         time.Duration
	drops                            []string
	jsonOut                          bool
	hubDrop                          time.Duration
	dropShare                        int           // percent of the bridges cut at once
	reboot                           int           // terminals to restart
	dropFor                          time.Duration // for so long
	logLevel                         string
}

// Main runs the simulator with command-line args; it returns the exit
// status (0 all recovered, 1 a fault did not, 2 bad usage).
func Main(name string, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "the server, https://host:port (required)")
	fs.StringVar(&o.token, "token", os.Getenv("CITYBRIDGE_TECH_TOKEN"), "a technician's link token, to provision the terminals (or CITYBRIDGE_TECH_TOKEN)")
	fs.StringVar(&o.hubToken, "hub-token", "", "a host link token: also run a synthetic hub publishing q, h and f")
	fs.StringVar(&o.conference, "conference", "", "the conference (required)")
	fs.IntVar(&o.bridges, "bridges", 0, "how many of the invited bridges to simulate (default: all)")
	fs.StringVar(&o.layers, "layers", "q,h", "simulcast layers each terminal publishes (q = 180p, h = 360p)")
	fs.StringVar(&o.flap, "flap", "", "flap a share of the lines: PERCENT:DOWN:UP, e.g. 10%:5s:15s")
	fs.StringVar(&o.scenario, "scenario", "", "a named drill: "+strings.Join(scenarioNames(), ", "))
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long the fault script runs")
	fs.IntVar(&o.reboot, "reboot", 0, "restart this many terminals, one after another, as rooms whose PC reboots, and time their return")
	fs.Func("drop", "cut one bridge's line once: BRIDGE:DURATION, e.g. commune-001:20s (repeatable)", func(s string) error {
		o.drops = append(o.drops, s)
		return nil
	})
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.scenario != "" {
		sc, ok := scenarios[o.scenario]
		if !ok {
			fmt.Fprintf(stderr, name+": no scenario %q (%s)\n", o.scenario, strings.Join(scenarioNames(), ", "))
			return 2
		}
		sc.apply(&o)
	}
	if o.url == "" || o.conference == "" || o.token == "" {
		fmt.Fprintln(stderr, name+": --url, --conference and --token are required")
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := simulate(ctx, o, log, stdout); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	return 0
}

// api is a small client for the server's JSON API with a bearer token.
type api struct {
	base, token string
	client      *http.Client
}

func (a api) call(method, path string, out any) error {
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func simulate(ctx context.Context, o options, log *slog.Logger, stdout io.Writer) error {
	a := api{base: strings.TrimRight(o.url, "/"), token: o.token, client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the city's own, often self-signed
	}}
	var invited []struct{ ID, Kind string }
	if err := a.call("GET", "/api/conferences/"+o.conference+"/bridges", &invited); err != nil {
		return err
	}
	if o.bridges > 0 && o.bridges < len(invited) {
		invited = invited[:o.bridges]
	}
	tokens := make([]string, 0, len(invited))
	for _, b := range invited {
		var link struct{ Token string }
		if err := a.call("POST", "/api/bridges/"+b.ID+"/terminal-links", &link); err != nil {
			return err
		}
		tokens = append(tokens, link.Token)
	}
	layers := strings.Split(o.layers, ",")
	var hub *terminal.Fleet
	if o.hubToken != "" {
		var err error
		if hub, err = terminal.StartFleet(a.base, o.conference, []string{o.hubToken}, []string{"q", "h", "f"}, log.With("role", "hub")); err != nil {
			return err
		}
		defer hub.Stop()
	}
	fleet, err := terminal.StartFleet(a.base, o.conference, tokens, layers, log)
	if err != nil {
		return err
	}
	defer fleet.Stop()
	fmt.Fprintf(stdout, "%d terminals started; waiting for the hub's video at each\n", len(tokens))
	deadline := time.Now().Add(90 * time.Second)
	for fleet.Receiving(2*time.Second) < len(tokens) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(stdout, "%d of %d terminals receiving the hub\n", fleet.Receiving(2*time.Second), len(tokens))

	byBridge := map[string]int{}
	for i, t := range fleet.Terminals {
		byBridge[t.Bridge()] = i
	}
	scriptCtx, cancel := context.WithTimeout(ctx, o.duration+time.Minute)
	defer cancel()
	done := make(chan struct{})
	rebootFailures := 0
	go func() {
		defer close(done)
		for _, d := range o.drops {
			b, dur, ok := strings.Cut(d, ":")
			i, known := byBridge[b]
			t, err := time.ParseDuration(dur)
			if !ok || !known || err != nil {
				log.Error("bad --drop", "value", d)
				continue
			}
			fleet.Links[i].Cut()
			fmt.Fprintf(stdout, "cut %s for %v\n", b, t)
			go func() {
				time.Sleep(t)
				fleet.Links[i].Restore()
			}()
		}
		for k, i := range fleet.Pick(o.reboot) {
			b := fleet.Terminals[i].Bridge()
			took, err := fleet.Reboot(i, 30*time.Second)
			if err != nil {
				fmt.Fprintf(stdout, "reboot %d: %s NOT back: %v\n", k+1, b, err)
				rebootFailures++
				continue
			}
			fmt.Fprintf(stdout, "reboot %d: %s receiving the hub %v after starting again\n", k+1, b, took.Round(time.Millisecond))
		}
		if o.dropShare > 0 {
			idx := fleet.Pick(max(1, len(tokens)*o.dropShare/100))
			fmt.Fprintf(stdout, "cutting %d lines at once for %v\n", len(idx), o.dropFor)
			for _, i := range idx {
				fleet.Links[i].Cut()
			}
			time.Sleep(o.dropFor)
			for _, i := range idx {
				fleet.Links[i].Restore()
			}
		}
		if o.hubDrop > 0 {
			if hub == nil {
				log.Error("the hub-drop scenario needs --hub-token (a synthetic hub to cut)")
				return
			}
			hubDrop(stdout, fleet, hub, o.hubDrop)
		}
		if o.flap != "" {
			pct, down, up, err := parseFlap(o.flap)
			if err != nil {
				log.Error("bad --flap", "err", err)
				return
			}
			n := max(1, len(tokens)*pct/100)
			fmt.Fprintf(stdout, "flapping %d lines (%v down, %v up) for %v\n", n, down, up, o.duration)
			fleet.Flap(scriptCtx, fleet.Pick(n), down, up, o.duration)
		}
	}()
	<-done
	// Let the last restores recover (or be counted as not recovering).
	settle := time.Now().Add(30 * time.Second)
	for fleet.Receiving(2*time.Second) < len(tokens) && time.Now().Before(settle) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	rep := fleet.Report()
	if o.jsonOut {
		writeJSON(stdout, rep)
	} else {
		writeText(stdout, rep)
	}
	if len(rep.Unrecovered) > 0 || rebootFailures > 0 {
		return fmt.Errorf("%d faults and %d reboots did not recover", len(rep.Unrecovered), rebootFailures)
	}
	return nil
}

func parseFlap(s string) (pct int, down, up time.Duration, err error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("want PERCENT:DOWN:UP, got %q", s)
	}
	if pct, err = strconv.Atoi(strings.TrimSuffix(parts[0], "%")); err != nil || pct <= 0 || pct > 100 {
		return 0, 0, 0, fmt.Errorf("percent %q", parts[0])
	}
	if down, err = time.ParseDuration(parts[1]); err != nil {
		return 0, 0, 0, err
	}
	if up, err = time.ParseDuration(parts[2]); err != nil {
		return 0, 0, 0, err
	}
	return pct, down, up, nil
}

func writeText(w io.Writer, rep terminal.Report) {
	bridges := make([]string, 0, len(rep.PerBridge))
	for b := range rep.PerBridge {
		bridges = append(bridges, b)
	}
	sort.Strings(bridges)
	fmt.Fprintln(w, "bridge\tcut at\tdown for\tnoticed after\trecovered after")
	for _, b := range bridges {
		for _, f := range rep.PerBridge[b] {
			rec := "NOT RECOVERED"
			if f.Recovered > 0 {
				rec = f.Recovered.Round(time.Millisecond).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%v\t%v\t%s\n", b, f.Cut.Format("15:04:05"), f.Restored.Sub(f.Cut).Round(100*time.Millisecond),
				f.Detected.Round(time.Millisecond), rec)
		}
	}
	rep.Write(w)
}

func writeJSON(w io.Writer, rep terminal.Report) {
	type fault struct {
		Bridge      string  `json:"bridge"`
		Cut         string  `json:"cut"`
		DownSeconds float64 `json:"down_seconds"`
		NoticedMs   int64   `json:"noticed_ms"`
		RecoveredMs int64   `json:"recovered_ms"` // -1: did not recover
	}
	out := struct {
		Faults      int      `json:"faults"`
		Recovered   int      `json:"recovered"`
		MedianMs    int64    `json:"median_recovery_ms"`
		WorstMs     int64    `json:"worst_recovery_ms"`
		Unrecovered []string `json:"unrecovered"`
		List        []fault  `json:"list"`
	}{Faults: rep.Faults, Recovered: rep.Recovered, Unrecovered: rep.Unrecovered,
		MedianMs: terminal.Quantile(rep.Recoveries, 0.5).Milliseconds(), WorstMs: terminal.Quantile(rep.Recoveries, 1).Milliseconds()}
	for b, fs := range rep.PerBridge {
		for _, f := range fs {
			rec := int64(-1)
			if f.Recovered > 0 {
				rec = f.Recovered.Milliseconds()
			}
			out.List = append(out.List, fault{Bridge: b, Cut: f.Cut.UTC().Format(time.RFC3339), DownSeconds: f.Restored.Sub(f.Cut).Seconds(),
				NoticedMs: f.Detected.Milliseconds(), RecoveredMs: rec})
		}
	}
	sort.Slice(out.List, func(i, j int) bool { return out.List[i].Cut < out.List[j].Cut })
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// A scenario is a named drill: what the city rehearses before a meeting.
type scenario struct {
	about string
	apply func(*options)
}

var scenarios = map[string]scenario{
	"bridges-drop": {"10% of the bridges lose their line for 20 s, at once", func(o *options) {
		o.dropShare, o.dropFor = 10, 20*time.Second
	}},
	"flap": {"10% of the bridges flap (5 s down, 15 s up) for 2 minutes", func(o *options) {
		o.flap, o.duration = "10%:5s:15s", 2*time.Minute
	}},
	"hub-drop": {"the hub's line drops for 5 s (needs --hub-token)", func(o *options) {
		o.hubDrop, o.duration = 5*time.Second, 0
	}},
}

func scenarioNames() []string {
	var out []string
	for name, sc := range scenarios {
		out = append(out, name+" ("+sc.about+")")
	}
	sort.Strings(out)
	return out
}

// hubDrop cuts the synthetic hub's line for d and reports how long after
// it came back each room received the hub's video again.
func hubDrop(w io.Writer, rooms, hub *terminal.Fleet, d time.Duration) {
	fmt.Fprintf(w, "cutting the hub's line for %v\n", d)
	hub.Links[0].Cut()
	time.Sleep(d)
	hub.Links[0].Restore()
	back := time.Now()
	waits := make([]time.Duration, len(rooms.Terminals))
	deadline := back.Add(30 * time.Second)
	for left := len(waits); left > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		left = 0
		for i, t := range rooms.Terminals {
			if waits[i] == 0 {
				if t.LastHub().After(back) {
					waits[i] = time.Since(back)
				} else {
					left++
				}
			}
		}
	}
	var got []time.Duration
	missing := 0
	for _, w := range waits {
		if w > 0 {
			got = append(got, w)
		} else {
			missing++
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	fmt.Fprintf(w, "hub back at %d of %d rooms: median %v, worst %v after its line returned; %d rooms without it\n",
		len(got), len(waits), terminal.Quantile(got, 0.5).Round(time.Millisecond), terminal.Quantile(got, 1).Round(time.Millisecond), missing)
}
