package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"citybridge/controlplane/etcdtest"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser tests run a real headless Chromium with a fake camera (a test
// pattern made by ffmpeg, see fakeCamera) against a server started in the
// test process on loopback addresses only. The test command (scripts/test)
// installs Chromium and ffmpeg; a missing tool fails the test.

// testMedia is made once per test binary run and removed by TestMain: the
// tone, and one camera clip per size asked for.
var testMedia struct {
	mu  sync.Mutex
	dir string
	wav string
	y4m map[string]string // size -> clip
	err error
}

func TestMain(m *testing.M) {
	etcdtest.ChildMain() // this process may be the node tests' etcd cluster
	code := m.Run()
	if testMedia.dir != "" {
		_ = os.RemoveAll(testMedia.dir)
	}
	etcdtest.StopShared()
	removeBinary()
	os.Exit(code)
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/test, which installs what the tests need", name)
	}
	return p
}

// fakeCamera returns a Y4M clip of the given size (cameraSize() when
// empty) and a WAV tone for Chromium's fake capture devices (166 MB for 3 s
// of 720p: never committed). The clip is 1280x720 without the race
// detector, as in the media pass, whose tests measure layers and frame
// rates. Under the race detector it is 640x360: there the browser tests
// check what the pages do, not how the media looks, and run two at a time
// beside an instrumented server; eight tabs encoding 720p simulcast starved
// both cores of a CI machine, and terminals whose ICE timed out on the
// starved machine fell into reconnection for a minute.
func fakeCamera(t *testing.T, size string) (y4m, wav string) {
	t.Helper()
	ffmpeg := requireTool(t, "ffmpeg")
	if size == "" {
		size = cameraSize()
	}
	testMedia.mu.Lock()
	defer testMedia.mu.Unlock()
	if testMedia.err != nil {
		t.Fatal(testMedia.err)
	}
	ffmpegRun := func(args ...string) {
		cmd := exec.Command(ffmpeg, append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			testMedia.err = fmt.Errorf("ffmpeg %v: %v: %s", args, err, out)
			t.Fatal(testMedia.err)
		}
	}
	if testMedia.dir == "" {
		dir, err := os.MkdirTemp("", "citybridge-media-")
		if err != nil {
			t.Fatal(err)
		}
		testMedia.dir, testMedia.y4m = dir, map[string]string{}
		testMedia.wav = filepath.Join(dir, "mic.wav")
		ffmpegRun("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "3", testMedia.wav)
	}
	if testMedia.y4m[size] == "" {
		clip := filepath.Join(testMedia.dir, "cam-"+size+".y4m")
		ffmpegRun("-f", "lavfi", "-i", "testsrc2=size="+size+":rate=30", "-t", "3", "-pix_fmt", "yuv420p", clip)
		testMedia.y4m[size] = clip
	}
	return testMedia.y4m[size], testMedia.wav
}

// cameraSize is the fake camera's size (see fakeCamera).
func cameraSize() string {
	if raceEnabled {
		return "640x360"
	}
	return "1280x720"
}

// testServer is a citybridge started inside the test, on loopback only.
type testServer struct {
	*server
	base   string
	client *http.Client
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startTestServer(t *testing.T) *testServer {
	t.Helper()
	return startTestServerWith(t, func(*Config) {})
}

// startTestServerWith starts a test server on loopback after letting edit
// change its configuration.
func startTestServerWith(t *testing.T, edit func(*Config)) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		Listen:     "127.0.0.1:0",
		Data:       t.TempDir(),
		UDPHost:    "127.0.0.1",
		UDPPort:    0,
		MediaAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		LogLevel:   slog.LevelInfo,
	}
	if lvl := os.Getenv("CITYBRIDGE_TEST_LOG_LEVEL"); lvl != "" { // debug: pion's own lines too
		if err := cfg.LogLevel.UnmarshalText([]byte(lvl)); err != nil {
			t.Fatalf("CITYBRIDGE_TEST_LOG_LEVEL: %v", err)
		}
	}
	edit(&cfg)
	s, err := start(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: cfg.LogLevel})))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{
		server: s,
		base:   "https://" + s.addr.String(),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the test's own self-signed certificate
		},
		logs: logs,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
		if t.Failed() || os.Getenv("CITYBRIDGE_SERVER_LOGS") != "" {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return ts
}

// terminalLink provisions a room terminal for bridge through the API, as a
// technician would from the index page.
func (ts *testServer) terminalLink(t *testing.T, bridge string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.base+"/api/bridges/"+bridge+"/terminal-links", nil)
	req.Header.Set("Authorization", "Bearer "+ts.demo.TechnicianToken)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var link struct{ Path string }
	if err := json.NewDecoder(resp.Body).Decode(&link); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("terminal link for %s: status %d, %v", bridge, resp.StatusCode, err)
	}
	return ts.base + link.Path
}

// newBrowser starts a headless Chromium that fakes camera and microphone
// from the test clips and never reaches past this machine.
func newBrowser(t *testing.T, opts ...browserOption) context.Context {
	t.Helper()
	return newBrowserExec(t, requireTool(t, "chromium"), opts...)
}

// browserOption changes how one Chromium starts.
type browserOption func(*browserSetup)

type browserSetup struct {
	camera string // the fake camera's size; "" is cameraSize()
	window [2]int // the window's size; zero: Chromium's default
}

// withWindow opens the browser's window at w x h CSS pixels.
func withWindow(w, h int) browserOption {
	return func(b *browserSetup) { b.window = [2]int{w, h} }
}

// withCamera films at size instead of cameraSize(). A test that measures
// another browser's picture gives this one a small camera, so that its
// encoder leaves the CPU to the picture measured.
func withCamera(size string) browserOption {
	return func(b *browserSetup) { b.camera = size }
}

// browserSlot lets one test at a time run browsers under the race
// detector (see newBrowserExec).
var (
	browserSlot = make(chan struct{}, 1)
	slotHolders sync.Map // *testing.T -> true while it holds the slot
)

// newBrowserExec starts Chromium through exe (Chromium itself, or a wrapper
// that runs it elsewhere, such as in a network namespace).
//
// Under the race detector the browser tests take turns: each runs up to
// four tabs encoding simulcast against a server the detector slows several
// times, and two such tests side by side on a CI machine's two cores
// starved pion's ICE checks past their 4 s transaction lifetime, so rooms
// never connected. The media pass runs its tests one at a time anyway.
func newBrowserExec(t *testing.T, exe string, options ...browserOption) context.Context {
	t.Helper()
	var setup browserSetup
	for _, o := range options {
		o(&setup)
	}
	if raceEnabled {
		if _, holds := slotHolders.LoadOrStore(t, true); !holds { // a second browser of the same test shares its turn
			browserSlot <- struct{}{}
			t.Cleanup(func() {
				slotHolders.Delete(t)
				<-browserSlot
			})
		}
	}
	chromium := exe
	y4m, wav := fakeCamera(t, setup.camera)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-video-capture", y4m),
		chromedp.Flag("use-file-for-fake-audio-capture", wav),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("ignore-certificate-errors", true), // the server's certificate is self-signed
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE 169.254.*"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate"),
	)
	if setup.window != [2]int{} {
		opts = append(opts, chromedp.WindowSize(setup.window[0], setup.window[1]))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// tab is one page in the browser.
type tab struct {
	name    string
	ctx     context.Context
	console *syncBuffer // the page's console errors and warnings, and uncaught exceptions
}

// listenConsole records tb's console errors and warnings and its uncaught
// exceptions, with the time they came, for the failure report.
func listenConsole(tb *tab) {
	tb.console = &syncBuffer{}
	_ = chromedp.Listen(tb.ctx, func(ev any) {
		now := time.Now().UTC().Format("15:04:05.000")
		switch ev := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type != cdpruntime.ConsoleAPICalledTypeError && ev.Type != cdpruntime.ConsoleAPICalledTypeWarning {
				return
			}
			parts := make([]string, 0, len(ev.Args))
			for _, a := range ev.Args {
				switch {
				case len(a.Value) > 0:
					parts = append(parts, string(a.Value))
				case a.Description != "":
					parts = append(parts, a.Description)
				}
			}
			fmt.Fprintf(tb.console, "%s console.%s %s\n", now, ev.Type, strings.Join(parts, " "))
		case *cdpruntime.EventExceptionThrown:
			d := ev.ExceptionDetails
			what := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				what = d.Exception.Description
			}
			fmt.Fprintf(tb.console, "%s exception %s\n", now, what)
		}
	})
}

// pageState is what a failure report says of a page's session: its state,
// each media connection's states and transceivers, and its reconnections.
const pageState = `(() => { const s = window.citybridge && citybridge.session; if (!s) return "no session";
	const pcs = {}; for (const [k, pc] of Object.entries(s.pcs || {})) pcs[k] = {conn: pc.connectionState, ice: pc.iceConnectionState,
	  sig: pc.signalingState, transceivers: pc.getTransceivers().map((t) => (t.mid || "-") + ":" + t.currentDirection).join(" ")};
	return JSON.stringify({state: s.state, ws: s.ws ? s.ws.readyState : -1, reconnects: s.reconnects, node: s.node, attempt: s.attempt, redirects: s.redirects, final: s.final, nodes: s.joined && s.joined.nodes, pcs}); })()`

// openTab opens url in a new tab and waits for the page's script to run
// (window.citybridge). Once in several hundred CI page loads a fresh
// Chromium on a loaded machine left the host page blank with its modules
// never run; then the tab logs which resources it loaded and reloads once,
// so the log says whether the server or the browser stalled.
func openTab(t *testing.T, browser context.Context, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	// Chromium aborts a load with ERR_NETWORK_CHANGED when interfaces come
	// and go on the machine, which the impaired-link tests running beside
	// this one do as they build their namespaces: load again.
	for attempt := 1; ; attempt++ {
		err := chromedp.Do(ctx, chromedp.Navigate(url))
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			t.Fatalf("%s: navigate: %v", name, err)
		}
		t.Logf("%s: navigate: %v; loading again", name, err)
		time.Sleep(200 * time.Millisecond)
	}
	tb := &tab{name: name, ctx: ctx}
	listenConsole(tb)
	ran := func(within time.Duration) bool {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if ok, err := eval[bool](tb, `!!window.citybridge`); err == nil && ok {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	const diagnose = `JSON.stringify({ready: document.readyState, resources: performance.getEntriesByType("resource").map((e) => [e.name, Math.round(e.duration), e.transferSize, e.responseStatus])})`
	if !ran(20 * time.Second) {
		what, err := eval[string](tb, diagnose)
		t.Logf("%s: the page's script has not run 20 s after loading (%v): %s; reloading once", name, err, what)
		if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
			t.Fatalf("%s: reload: %v", name, err)
		}
		if !ran(20 * time.Second) {
			what, err := eval[string](tb, diagnose)
			t.Fatalf("%s: the page's script did not run after a reload either (%v): %s", name, err, what)
		}
	}
	return tb
}

// eval runs a JavaScript expression (awaiting a promise) and decodes its
// value into T.
func eval[T any](tb *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// inboundStat mirrors what the pages' Session.inbound() returns.
type inboundStat struct {
	Kind            string  `json:"kind"`
	Stream          string  `json:"stream"`
	Codec           string  `json:"codec"` // the MIME type, e.g. video/VP8
	PacketsReceived int     `json:"packetsReceived"`
	FramesDecoded   int     `json:"framesDecoded"`
	FrameWidth      int     `json:"frameWidth"`
	FrameHeight     int     `json:"frameHeight"`
	FramesPerSecond float64 `json:"framesPerSecond"`
	FreezeCount     int     `json:"freezeCount"`
	// TotalFreezesDuration is in seconds.
	TotalFreezesDuration float64 `json:"totalFreezesDuration"`
	NackCount            int     `json:"nackCount"`
	PacketsLost          int     `json:"packetsLost"`
	Retransmitted        int     `json:"retransmittedPacketsReceived"`
	FramesDropped        int     `json:"framesDropped"`
	KeyFramesDecoded     int     `json:"keyFramesDecoded"`
	PLICount             int     `json:"pliCount"`
	// JitterBufferDelay is in seconds, summed over
	// JitterBufferEmittedCount frames.
	JitterBufferDelay        float64 `json:"jitterBufferDelay"`
	JitterBufferEmittedCount int     `json:"jitterBufferEmittedCount"`
	PacketsDiscarded         int     `json:"packetsDiscarded"`
}

func inbound(tb *tab) ([]inboundStat, error) {
	return eval[[]inboundStat](tb, `window.citybridge && citybridge.inbound ? citybridge.inbound() : []`)
}

// find returns the stat of kind from stream.
func find(stats []inboundStat, stream, kind string) (inboundStat, bool) {
	for _, s := range stats {
		if s.Stream == stream && s.Kind == kind {
			return s, true
		}
	}
	return inboundStat{}, false
}

// waitUntil polls check until it returns true or the deadline passes;
// check's last description of what it saw goes into the failure.
func waitUntil(t testing.TB, d time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, seen := check()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", d, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// saveScreenshotsOnFailure writes a PNG of each tab into the artifacts
// directory (CITYBRIDGE_ARTIFACTS, default test-artifacts/ at the
// repository root) if the test fails, or always with
// CITYBRIDGE_SCREENSHOTS=always.
func saveScreenshotsOnFailure(t *testing.T, tabs ...*tab) {
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CITYBRIDGE_SCREENSHOTS") != "always" {
			return
		}
		dir := os.Getenv("CITYBRIDGE_ARTIFACTS")
		if dir == "" {
			_, file, _, _ := runtime.Caller(0)
			dir = filepath.Join(filepath.Dir(file), "..", "..", "test-artifacts")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Logf("artifacts: %v", err)
			return
		}
		for _, tb := range tabs {
			ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			cancel()
			if err != nil {
				t.Logf("screenshot of %s: %v", tb.name, err)
				continue
			}
			name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+tb.name+".png")
			if err := os.WriteFile(name, png, 0o644); err != nil {
				t.Logf("screenshot of %s: %v", tb.name, err)
				continue
			}
			t.Logf("screenshot of %s saved to %s", tb.name, name)
		}
		for _, tb := range tabs {
			state, err := eval[string](tb, pageState)
			t.Logf("%s: page state %s (%v); console:\n%s", tb.name, state, err, tb.console)
		}
	})
}
