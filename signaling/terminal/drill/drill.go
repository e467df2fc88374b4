// Package drill is the room simulator and the drills technicians run
// (cmd/roomsim, and `citybridge drill`): it runs N synthetic room terminals in one process against a
// citybridge server: each joins as its bridge, publishes the 180p and 360p
// test clips (simulcast) and the audio clip, receives the hub, and follows
// the same reconnection rules as the room page. Fault scripts cut their
// lines; the report says, per cut, how long the line was down, how long
// the terminal took to notice and to recover, and when the server's own
// event log saw the bridge go and come back. The steady mode keeps the
// terminals connected with no fault and reports any that dropped (a soak,
// a demo, a load for the wall).
//
//	roomsim --url https://10.20.0.5:8443 --token TECHNICIAN_TOKEN --conference c1 \
//	        --bridges 116 --flap 10%:5s:15s --duration 2m
//
// The technician token provisions a terminal link for each simulated
// bridge (POST /api/bridges/{id}/terminal-links) and reads the server's
// event log (GET /api/events). --hub-token adds a synthetic hub when no
// real host is chairing. Exit status 1 if something did not hold (a fault
// not recovered within --recovery-timeout, a terminal that dropped with no
// fault on its line), 2 for bad usage.
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
)

type options struct {
	url, token, hubToken, conference string
	bridges                          int
	layers                           []string
	flap                             string
	flapShare                        int // percent of the bridges flapping
	flapDown, flapUp                 time.Duration
	scenario                         string
	duration                         time.Duration
	recoveryTimeout                  time.Duration
	drops                            []drop
	jsonOut                          bool
	steady                           bool
	hubDrop                          time.Duration
	dropShare                        int           // percent of the bridges cut at once
	dropFor                          time.Duration // for so long
	reboot                           int           // terminals to restart
	logLevel                         string
}

// drop is one --drop: a bridge's line cut once, for so long.
type drop struct {
	bridge string
	down   time.Duration
}

// faults reports whether the options script any fault.
func (o *options) faults() bool {
	return len(o.drops) > 0 || o.flap != "" || o.reboot > 0 || o.dropShare > 0 || o.hubDrop > 0
}

// errUsage marks an error in what the user asked for (exit status 2).
var errUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// Main runs the simulator with command-line args; it returns the exit
// status (0 all held, 1 something did not, 2 bad usage).
func Main(name string, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(name, args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlag): // the flag package said why
		return 2
	case err != nil:
		fmt.Fprintln(stderr, name+":", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(o.logLevel)) // checked
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := stdout
	if o.jsonOut {
		progress = stderr
	}
	err = simulate(ctx, o, log, stdout, progress)
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, name+":", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	case err != nil:
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	return 0
}

// errFlag wraps the flag package's own errors, which it has printed.
var errFlag = errors.New("bad flag")

// parse reads the flags as Main does, printing nothing (for tests).
func parse(args []string) (options, error) { return parseArgs("roomsim", args, io.Discard) }

func parseArgs(name string, args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "the server, https://host:port (required)")
	fs.StringVar(&o.token, "token", os.Getenv("CITYBRIDGE_TECH_TOKEN"), "a technician's link token, to provision the terminals and read the server's event log (or CITYBRIDGE_TECH_TOKEN)")
	fs.StringVar(&o.hubToken, "hub-token", "", "a host link token: also run a synthetic hub publishing q, h and f")
	fs.StringVar(&o.conference, "conference", "", "the conference (required)")
	fs.IntVar(&o.bridges, "bridges", 0, "how many of the invited bridges to simulate (default: all)")
	layers := fs.String("layers", "q,h", "simulcast layers each terminal publishes (q = 180p, h = 360p, f = 720p)")
	fs.StringVar(&o.flap, "flap", "", "flap a share of the lines for --duration: PERCENT:DOWN:UP, e.g. 10%:5s:15s")
	fs.StringVar(&o.scenario, "scenario", "", "a named drill: "+strings.Join(scenarioNames(), ", ")+"; flags given as well override its values")
	fs.DurationVar(&o.duration, "duration", 0, "how long the drill runs from its first fault, at least (0: until the last fault has recovered); --flap and --steady need it")
	fs.DurationVar(&o.recoveryTimeout, "recovery-timeout", 30*time.Second, "a fault not recovered this long after its line came back counts as NOT RECOVERED")
	fs.IntVar(&o.reboot, "reboot", 0, "restart this many terminals, one after another, as rooms whose PC reboots, and time their return")
	fs.Func("drop", "cut one bridge's line once, at the start: BRIDGE:DURATION, e.g. commune-001:20s (repeatable, one per bridge)", func(s string) error {
		d, err := parseDrop(s)
		if err == nil {
			o.drops = append(o.drops, d)
		}
		return err
	})
	fs.BoolVar(&o.steady, "steady", false, "no fault: keep the terminals connected for --duration and report any that dropped")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON on standard output (progress goes to standard error)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v", errFlag, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.layers = strings.Split(*layers, ",")
	return o, o.check(fs.Args(), set)
}

// check applies the scenario (under the flags given) and refuses what
// cannot run.
func (o *options) check(rest []string, set map[string]bool) error {
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	if o.scenario != "" {
		sc, ok := scenarios[o.scenario]
		if !ok {
			return usagef("no scenario %q (%s)", o.scenario, strings.Join(scenarioNames(), ", "))
		}
		sc.apply(o, set)
	}
	if o.url == "" || o.conference == "" || o.token == "" {
		return usagef("--url, --conference and --token are required")
	}
	if !strings.HasPrefix(o.url, "https://") && !strings.HasPrefix(o.url, "http://") {
		return usagef("--url %q: want https://host:port", o.url)
	}
	if o.bridges < 0 || o.reboot < 0 {
		return usagef("--bridges and --reboot cannot be negative")
	}
	if o.duration < 0 || o.recoveryTimeout <= 0 {
		return usagef("--duration cannot be negative, --recovery-timeout must be positive")
	}
	seenLayer := map[string]bool{}
	for _, l := range o.layers {
		if l != "q" && l != "h" && l != "f" || seenLayer[l] {
			return usagef("--layers %q: each layer once, q, h or f", strings.Join(o.layers, ","))
		}
		seenLayer[l] = true
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	seen := map[string]bool{}
	for _, d := range o.drops {
		if seen[d.bridge] {
			return usagef("--drop %s given twice", d.bridge)
		}
		seen[d.bridge] = true
	}
	if o.flap != "" {
		var err error
		if o.flapShare, o.flapDown, o.flapUp, err = parseFlap(o.flap); err != nil {
			return usagef("--flap: %v", err)
		}
		if o.duration < o.flapDown {
			return usagef("--flap needs a --duration of at least one cut (%v)", o.flapDown)
		}
	}
	if o.steady {
		if o.faults() {
			return usagef("--steady runs no fault: leave out --drop, --flap, --reboot and fault scenarios")
		}
		if o.duration <= 0 {
			return usagef("--steady needs --duration")
		}
	}
	if o.hubDrop > 0 && o.hubToken == "" {
		return usagef("the hub-drop scenario needs --hub-token (a synthetic hub to cut)")
	}
	if !o.faults() && !o.steady {
		return usagef("nothing to do: give a fault (--drop, --flap, --reboot, --scenario) or --steady")
	}
	return nil
}

func parseDrop(s string) (drop, error) {
	b, dur, ok := strings.Cut(s, ":")
	if !ok || b == "" {
		return drop{}, fmt.Errorf("want BRIDGE:DURATION, got %q", s)
	}
	d, err := time.ParseDuration(dur)
	if err != nil || d <= 0 {
		return drop{}, fmt.Errorf("%q: want a positive duration such as 20s", dur)
	}
	return drop{bridge: b, down: d}, nil
}

func parseFlap(s string) (pct int, down, up time.Duration, err error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("want PERCENT:DOWN:UP, got %q", s)
	}
	if pct, err = strconv.Atoi(strings.TrimSuffix(parts[0], "%")); err != nil || pct <= 0 || pct > 100 {
		return 0, 0, 0, fmt.Errorf("percent %q: want 1%% to 100%%", parts[0])
	}
	if down, err = time.ParseDuration(parts[1]); err != nil || down <= 0 {
		return 0, 0, 0, fmt.Errorf("down %q: want a positive duration", parts[1])
	}
	if up, err = time.ParseDuration(parts[2]); err != nil || up <= 0 {
		return 0, 0, 0, fmt.Errorf("up %q: want a positive duration", parts[2])
	}
	return pct, down, up, nil
}

// A scenario is a named drill: what the city rehearses before a meeting.
// apply sets its values for the flags the user did not give.
type scenario struct {
	about string
	apply func(o *options, set map[string]bool)
}

var scenarios = map[string]scenario{
	"bridges-drop": {"10% of the bridges lose their line for 20 s, at once", func(o *options, _ map[string]bool) {
		o.dropShare, o.dropFor = 10, 20*time.Second
	}},
	"flap": {"10% of the bridges flap (5 s down, 15 s up) for 2 minutes", func(o *options, set map[string]bool) {
		if !set["flap"] {
			o.flap = "10%:5s:15s"
		}
		if !set["duration"] {
			o.duration = 2 * time.Minute
		}
	}},
	"hub-drop": {"the hub's line drops for 5 s (needs --hub-token)", func(o *options, _ map[string]bool) {
		o.hubDrop = 5 * time.Second
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

// api is a small client for the server's JSON API with a bearer token.
type api struct {
	base, token string
	client      *http.Client
}

func newAPI(base, token string) api {
	return api{base: strings.TrimRight(base, "/"), token: token, client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the city's own, often self-signed
	}}
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
