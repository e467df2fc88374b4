package main

// The host page's cost (issue 24): a headless Chromium host console,
// pinned to its own CPUs, with a wall of synthetic rooms, every tile on
// screen or about 30 of them; the browser's processes' CPU time over the
// window, and the frame rates its tiles decode at.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"citybridge/signaling/terminal"

	"github.com/chromedp/chromedp"
)

// wallResult is the -wall session's JSON line.
type wallResult struct {
	Profile        string  `json:"profile"`
	Rooms          int     `json:"rooms"`
	TilesShown     int     `json:"tiles_shown"` // what the console told the server it shows
	TilesDecoding  int     `json:"tiles_decoding"`
	WindowS        float64 `json:"window_s"`
	BrowserCores   float64 `json:"browser_cpu_cores"` // every Chromium process of the console, CPU time over the window
	BrowserCPUs    string  `json:"browser_cpus"`
	FPSMedian      float64 `json:"tile_fps_median"` // over the tiles shown
	FPSP10         float64 `json:"tile_fps_p10"`
	FreezeSeconds  float64 `json:"freeze_seconds"` // summed over the tiles shown
	ServerCores    float64 `json:"server_cpu_cores"`
	GeneratorCores float64 `json:"generator_cpu_cores"`
	LoadAverage    string  `json:"load_average"` // /proc/loadavg at the end: other work on the machine
}

var adminPassword = regexp.MustCompile(`login "admin", password (\S+)\)`)

// wallSession runs rooms synthetic rooms (180p only, as the drills) and a
// Chromium host console whose window shows every tile (shown 0) or about
// shown of them, and measures the browser over window.
func wallSession(s *server, rooms, shown int, browserCPUs, chromium string, warmup, window time.Duration) (wallResult, error) {
	if err := s.ensureRooms(rooms); err != nil {
		return wallResult{}, err
	}
	ids, err := s.bridgeIDs(rooms)
	if err != nil {
		return wallResult{}, err
	}
	var tokens []string
	for _, id := range ids {
		tok, err := s.terminalLink(id)
		if err != nil {
			return wallResult{}, err
		}
		tokens = append(tokens, tok)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fleet, err := terminal.StartFleet(s.base, "c1", tokens, []string{"q"}, log)
	if err != nil {
		return wallResult{}, err
	}
	defer fleet.Stop()

	profile, err := os.MkdirTemp("", "citybridge-wall-browser-")
	if err != nil {
		return wallResult{}, err
	}
	defer os.RemoveAll(profile)
	exe := chromium
	if browserCPUs != "" {
		exe = filepath.Join(profile, "chromium-pinned")
		script := "#!/bin/sh\nexec taskset -c " + browserCPUs + " " + chromium + " \"$@\"\n"
		if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
			return wallResult{}, err
		}
	}
	w, h := 1280, 900 // the smallest tiles: about 28 on screen
	if shown == 0 {
		h = 300 + 215*(rooms/7+1) // seven columns of the smallest tiles, every row on screen
	}
	userData := filepath.Join(profile, "data")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.UserDataDir(userData), chromedp.WindowSize(w, h),
		chromedp.Flag("headless", "new"), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true), chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true), chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns,Translate"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.base+"/host#t="+s.hostToken)); err != nil {
		return wallResult{}, fmt.Errorf("open the host console: %w", err)
	}
	eval := func(expr string, v any) error {
		c, stop := context.WithTimeout(ctx, 20*time.Second)
		defer stop()
		raw, err := chromedp.Run(c, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, v)
	}
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(time.Second) {
		var joined int
		_ = eval(`window.citybridge && citybridge.state === "connected" && citybridge.counts ? citybridge.counts.joined : 0`, &joined)
		if joined == rooms {
			break
		}
		if time.Now().After(deadline) {
			return wallResult{}, fmt.Errorf("the console shows %d of %d rooms joined after 120 s", joined, rooms)
		}
	}
	var ok bool
	if err := eval(`(() => { const d = document.getElementById("density"); d.value = "110"; d.dispatchEvent(new Event("change")); return true; })()`, &ok); err != nil {
		return wallResult{}, err
	}
	time.Sleep(warmup)

	frames := func() (map[string]float64, map[string]float64, error) {
		var stats []struct {
			Kind          string  `json:"kind"`
			Stream        string  `json:"stream"`
			FramesDecoded float64 `json:"framesDecoded"`
			Freezes       float64 `json:"totalFreezesDuration"`
		}
		if err := eval(`citybridge.inbound()`, &stats); err != nil {
			return nil, nil, err
		}
		f, z := map[string]float64{}, map[string]float64{}
		for _, st := range stats {
			if st.Kind == "video" {
				f[st.Stream], z[st.Stream] = st.FramesDecoded, st.Freezes
			}
		}
		return f, z, nil
	}
	pids := browserPIDs(userData)
	if len(pids) == 0 {
		return wallResult{}, errors.New("no Chromium process found")
	}
	srvPID := strconv.Itoa(s.pid())
	b0, srv0, gen0 := pidsCPU(pids), cpuOf(srvPID), cpuOf("self")
	f0, z0, err := frames()
	if err != nil {
		return wallResult{}, err
	}
	start := time.Now()
	time.Sleep(window)
	f1, z1, err := frames()
	if err != nil {
		return wallResult{}, err
	}
	elapsed := time.Since(start).Seconds()
	b1, srv1, gen1 := pidsCPU(pids), cpuOf(srvPID), cpuOf("self")
	var view struct {
		Tiles []struct {
			Bridge string `json:"bridge"`
		} `json:"tiles"`
	}
	if err := eval(`citybridge.wall || {tiles: []}`, &view); err != nil {
		return wallResult{}, err
	}
	if len(view.Tiles) == 0 { // a console that does not say (before issue 24): every room it receives
		for id := range f1 {
			view.Tiles = append(view.Tiles, struct {
				Bridge string `json:"bridge"`
			}{id})
		}
	}
	var fps []float64
	freeze := 0.0
	decoding := 0
	for _, t := range view.Tiles {
		r := (f1[t.Bridge] - f0[t.Bridge]) / elapsed
		fps = append(fps, r)
		freeze += z1[t.Bridge] - z0[t.Bridge]
		if r > 0 {
			decoding++
		}
	}
	sort.Float64s(fps)
	load, _ := os.ReadFile("/proc/loadavg")
	res := wallResult{
		Profile: "wall", Rooms: rooms, TilesShown: len(view.Tiles), TilesDecoding: decoding, WindowS: round(elapsed, 1),
		BrowserCores: round((b1-b0)/elapsed, 3), BrowserCPUs: browserCPUs,
		FreezeSeconds: round(freeze, 1), ServerCores: round((srv1-srv0)/elapsed, 3), GeneratorCores: round((gen1-gen0)/elapsed, 3),
		LoadAverage: strings.Join(strings.Fields(string(load))[:3], " "),
	}
	if len(fps) > 0 {
		res.FPSMedian, res.FPSP10 = round(fps[len(fps)/2], 1), round(fps[len(fps)/10], 1)
	}
	return res, nil
}

// browserPIDs lists the processes of the Chromium that uses userData.
func browserPIDs(userData string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmd), userData) && strings.Contains(string(cmd), "chromium") {
			out = append(out, e.Name())
		}
	}
	// Renderers and utilities name the profile only through their parent:
	// take the browser process's children too.
	for _, parent := range append([]string(nil), out...) {
		kids, _ := os.ReadFile("/proc/" + parent + "/task/" + parent + "/children")
		for _, k := range strings.Fields(string(kids)) {
			out = appendNew(out, k)
			grand, _ := os.ReadFile("/proc/" + k + "/task/" + k + "/children")
			for _, g := range strings.Fields(string(grand)) {
				out = appendNew(out, g)
			}
		}
	}
	return out
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func pidsCPU(pids []string) float64 {
	total := 0.0
	for _, p := range pids {
		total += cpuOf(p)
	}
	return total
}

func cpuOf(pid string) float64 {
	v, _ := cpuSeconds(pid)
	return v
}

// ensureRooms adds synthetic bridges to the registry (as the
// administrator, through the API) until it has n rooms: the demo seeds
// 116, a large city has 168.
func (s *server) ensureRooms(n int) error {
	var bs []struct {
		ID string `json:"id"`
	}
	if err := s.getJSON("/api/bridges", &bs); err != nil {
		return err
	}
	if len(bs) >= n {
		return nil
	}
	text, err := os.ReadFile(filepath.Join(s.dir, "data", "first-start.txt"))
	if err != nil {
		return err
	}
	m := adminPassword.FindSubmatch(text)
	if m == nil {
		return errors.New("no administrator password in first-start.txt")
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: s.http.Transport, Timeout: 30 * time.Second}
	do := func(path, ctype, body string) error {
		req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Origin", s.base)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %s %s", path, resp.Status, b)
		}
		return nil
	}
	login, _ := json.Marshal(map[string]string{"name": "admin", "password": string(m[1])})
	if err := do("/api/login", "application/json", string(login)); err != nil {
		return err
	}
	var csv strings.Builder
	csv.WriteString("id,name,kind,area,contact\n")
	for i := len(bs); i < n; i++ {
		fmt.Fprintf(&csv, "bench-%03d,Bench %03d,commune,bench,\n", i, i)
	}
	return do("/api/bridges/import", "text/csv", csv.String())
}
