package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
)

// request calls the server with a bearer token ("" for none) and a body
// of contentType ("" for none), and returns the answer and its body.
func request(t *testing.T, ts *testServer, method, path, token, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func get(t *testing.T, ts *testServer, path, token string) (int, string) {
	t.Helper()
	resp, b := request(t, ts, http.MethodGet, path, token, "", "")
	return resp.StatusCode, string(b)
}

// callAs calls the API with a link token.
func callAs(t *testing.T, ts *testServer, method, path, token string) (int, []byte) {
	t.Helper()
	resp, b := request(t, ts, method, path, token, "", "")
	return resp.StatusCode, b
}

func TestHealthzAndMetrics(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	code, body := get(t, ts, "/healthz", "")
	var h map[string]any
	if err := json.Unmarshal([]byte(body), &h); code != http.StatusOK || err != nil || h["status"] != "ok" {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	// One machine: ready whenever healthy (a cluster's node cut from etcd
	// is not: TestNodeLosesEtcd).
	if code, body := get(t, ts, "/readyz", ""); code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	code, body = get(t, ts, "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range []string{"go_goroutines", "citybridge_peers", "citybridge_published_tracks",
		"citybridge_rtp_packets_forwarded_total", "citybridge_rtp_forwarded_bytes_total",
		"citybridge_alerts_active", "citybridge_forward_latency_seconds_count"} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, page := range []string{"/", "/host", "/room", "/rooms", "/static/client.js", "/static/i18n.js"} {
		code, body := get(t, ts, page, "")
		if code != http.StatusOK || len(body) == 0 {
			t.Errorf("%s: %d", page, code)
		}
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s refers to another origin: the pages must load nothing from elsewhere", page)
		}
	}
}

// TestPprofAccess: profiling is open to this machine and to technicians,
// closed to anyone else. Requests are handed to the handler directly with
// a remote address from the documentation range: no traffic leaves.
func TestPprofAccess(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	host := ts.demo.HostToken
	room, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	h := securityHeaders(ts.routes(), nil)
	for _, c := range []struct {
		name, remote, header, query string
		want                        int
	}{
		{"loopback", "127.0.0.1:5000", "", "", http.StatusOK},
		{"remote, no token", "192.0.2.10:5000", "", "", http.StatusForbidden},
		{"remote, room token", "192.0.2.10:5000", room, "", http.StatusForbidden},
		{"remote, host token", "192.0.2.10:5000", host, "", http.StatusForbidden},
		{"remote, wrong token", "192.0.2.10:5000", "nope", "", http.StatusForbidden},
		{"remote, technician header", "192.0.2.10:5000", ts.demo.TechnicianToken, "", http.StatusOK},
		{"remote, technician query", "192.0.2.10:5000", "", ts.demo.TechnicianToken, http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, "/debug/pprof/?token="+c.query, nil)
		req.RemoteAddr = c.remote
		if c.header != "" {
			req.Header.Set("Authorization", "Bearer "+c.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d", c.name, rec.Code, c.want)
		}
	}
}

// TestAPIRoles: each API route checks the caller's token and role.
func TestAPIRoles(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	conf := ts.demo.Conference.ID
	other, err := ts.store.CreateConference(controlplane.Conference{Title: "Other", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	room, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	tech, host := ts.demo.TechnicianToken, ts.demo.HostToken
	for _, c := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"conferences, no token", "GET", "/api/conferences", "", 401},
		{"conferences, bad token", "GET", "/api/conferences", "nope", 401},
		{"conferences, room", "GET", "/api/conferences", room, 403},
		{"conferences, host", "GET", "/api/conferences", host, 200},
		{"conferences, technician", "GET", "/api/conferences", tech, 200},
		{"bridges, host of it", "GET", "/api/conferences/" + conf + "/bridges", host, 200},
		{"bridges, host of another", "GET", "/api/conferences/" + other.ID + "/bridges", host, 403},
		{"bridges, room", "GET", "/api/conferences/" + conf + "/bridges", room, 403},
		{"bridges, unknown conference", "GET", "/api/conferences/c999/bridges", tech, 404},
		{"link, technician", "POST", "/api/bridges/ward-002/terminal-links", tech, 201},
		{"link, host", "POST", "/api/bridges/ward-002/terminal-links", host, 403},
		{"link, room", "POST", "/api/bridges/ward-001/terminal-links", room, 403},
		{"link, unknown bridge", "POST", "/api/bridges/nowhere/terminal-links", tech, 404},
		{"unknown route", "GET", "/api/nothing", tech, 404},
	} {
		req, _ := http.NewRequest(c.method, ts.base+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Code, Message string }
		decodeErr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want >= 400 && (decodeErr != nil || e.Code == "" || e.Message == "") {
			t.Errorf("%s: error body without code and message (%v)", c.name, decodeErr)
		}
	}
	// Technicians see the 116 invited bridges with their presence.
	_, body := get(t, ts, "/api/conferences/"+conf+"/bridges", tech)
	var bridges []struct{ ID, State string }
	if err := json.Unmarshal([]byte(body), &bridges); err != nil || len(bridges) != 116 || bridges[0].State != "absent" {
		t.Fatalf("bridges: %d, first %+v, err %v", len(bridges), bridges, err)
	}
}

// TestServeSeedsOnce runs the serve command twice on one data directory,
// its standard output not a terminal (as under systemd): the first start
// seeds the demo and writes the links and the administrator's password to
// DATA/first-start.txt, mode 0600, printing and logging nothing secret;
// the second finds the store and writes none; each run shuts down when
// told to.
func TestServeSeedsOnce(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	cfg := Config{
		Listen: "127.0.0.1:0", Data: data, UDPHost: "127.0.0.1",
		MediaAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, LogLevel: slog.LevelInfo,
	}
	run := func() (stdout, log string) {
		ctx, cancel := context.WithCancel(context.Background())
		var out, logs bytes.Buffer
		done := make(chan error, 1)
		// serve starts completely before it looks at ctx, so cancelling at
		// once still runs a whole start and a graceful shutdown.
		cancel()
		go func() { done <- serve(ctx, cfg, &out, &logs) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve: %v\n%s", err, logs.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not stop after its context ended")
		}
		return out.String(), logs.String()
	}
	file := filepath.Join(data, "first-start.txt")
	out, log := run()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("first start: %v\nstdout:\n%s", err, out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, %v; want 0600", file, fi.Mode(), err)
	}
	secrets := regexp.MustCompile(`/(?:host|rooms)#t=([A-Za-z0-9_-]+)|password ([A-Za-z0-9_-]+)\)`).FindAllStringSubmatch(string(text), -1)
	if len(secrets) != 3 || !strings.Contains(string(text), `login "admin"`) {
		t.Fatalf("%s holds %d of the host link, the technicians' link and the password:\n%s", file, len(secrets), text)
	}
	for _, m := range secrets {
		secret := m[1] + m[2]
		if strings.Contains(out, secret) || strings.Contains(log, secret) {
			t.Errorf("a secret of the first start (%.6s…) is on standard output or in the log:\n%s\n%s", secret, out, log)
		}
	}
	if !strings.Contains(log, file) {
		t.Errorf("the log does not say where the first start's links are:\n%s", log)
	}
	out, log = run()
	if again, _ := os.ReadFile(file); string(again) != string(text) || strings.Contains(out+log, "#t=") || strings.Contains(log, "first-start") {
		t.Fatalf("the second start wrote links again:\n%s\n%s", out, log)
	}
}

func TestParseServeFlags(t *testing.T) {
	env := map[string]string{
		"CITYBRIDGE_LISTEN":    ":9443",
		"CITYBRIDGE_PUBLIC_IP": "10.1.2.3,192.168.1.5",
		"CITYBRIDGE_DATA":      "/var/lib/citybridge",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseServeFlags([]string{"--data", "/srv/cb", "--udp-port", "10000"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":9443" || cfg.Data != "/srv/cb" || cfg.UDPPort != 10000 {
		t.Errorf("got %+v: want listen from the environment, data and port from flags", cfg)
	}
	if c, err := parseServeFlags([]string{"--video-codec", "H264"}, getenv, io.Discard); err != nil || c.VideoCodec != "H264" {
		t.Errorf("--video-codec H264: %q, %v", c.VideoCodec, err)
	}
	if strings.Join(cfg.PublicIPs, " ") != "10.1.2.3 192.168.1.5" {
		t.Errorf("public IPs %v", cfg.PublicIPs)
	}
	cfg, err = parseServeFlags([]string{"--public-ip", "10.9.9.9", "--public-ip", "10.8.8.8"}, getenv, io.Discard)
	if err != nil || strings.Join(cfg.PublicIPs, " ") != "10.9.9.9 10.8.8.8" {
		t.Errorf("flags should replace the environment's list: %v %v", cfg.PublicIPs, err)
	}
	for _, bad := range [][]string{
		{"--public-ip", "not-an-ip"},
		{"--udp-port", "70000"},
		{"--tls-cert", "a.pem"},
		{"--media-allow", "10.0.0.0/99"},
		{"--log-level", "loud"},
		{"--video-codec", "av1"},
		{"extra"},
	} {
		if _, err := parseServeFlags(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parseServeFlags(nil, func(k string) string {
		if k == "CITYBRIDGE_UDP_PORT" {
			return "many"
		}
		return ""
	}, io.Discard); err == nil {
		t.Error("a bad CITYBRIDGE_UDP_PORT was accepted")
	}
}

// TestConfigFileLayers: the TOML file is read first, the environment
// overrides it, the command line overrides both (lists replaced whole);
// unknown keys and bad values are refused with the file's name.
func TestConfigFileLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "citybridge.toml")
	writeFile := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(`
listen = ":443"
udp-port = 9000
public-ip = ["10.20.0.5", "192.168.1.5"]
ice-tcp = false
turn-ttl = "2h"
reconnect-grace = "45s"
`)
	env := map[string]string{"CITYBRIDGE_UDP_PORT": "9100"}
	cfg, err := parseServeFlags([]string{"--config", path, "--reconnect-grace", "20s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":443" || cfg.UDPPort != 9100 || cfg.ICETCP || cfg.TURNTTL != 2*time.Hour ||
		cfg.ReconnectGrace != 20*time.Second || strings.Join(cfg.PublicIPs, " ") != "10.20.0.5 192.168.1.5" {
		t.Errorf("got %+v: want listen, ice-tcp, turn-ttl, public-ip from the file, udp-port from the environment, grace from the flag", cfg)
	}
	env["CITYBRIDGE_PUBLIC_IP"] = "10.30.0.1"
	cfg, err = parseServeFlags([]string{"--config=" + path}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || strings.Join(cfg.PublicIPs, " ") != "10.30.0.1" {
		t.Errorf("the environment's list should replace the file's: %v %v", cfg.PublicIPs, err)
	}
	env["CITYBRIDGE_CONFIG"] = path
	cfg, err = parseServeFlags([]string{"--public-ip", "10.40.0.1"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.Listen != ":443" || strings.Join(cfg.PublicIPs, " ") != "10.40.0.1" {
		t.Errorf("CITYBRIDGE_CONFIG file, flag list: %+v %v", cfg, err)
	}
	for _, bad := range []string{
		"listn = \":443\"\n",                 // misspelt
		"udp-port = \"many\"\n",              // bad value
		"config = \"other.toml\"\n",          // no nesting
		"[turn]\nport = 1\n",                 // tables are not settings
		"listen = \n",                        // not TOML
		"turn-url = [\"http://x\"]\n",        // not a TURN URL
		"turn-url = [\"turn:10.0.0.9\"]\n",   // without its secret
		"public-ip = [\"10.0.0.1\", 5.5]\n",  // not an address
		"media-allow = [[\"10.0.0.0/8\"]]\n", // nested list
	} {
		writeFile(bad)
		if _, err := parseServeFlags([]string{"--config", path}, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("file %q accepted", bad)
		}
	}
	if _, err := parseServeFlags([]string{"--config", filepath.Join(dir, "missing.toml")}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("a missing file was accepted")
	}
}

// TestDeployConfigSample: deploy/citybridge.toml is valid, loads, and
// mentions every flag of `citybridge serve`, so the sample cannot fall
// behind the flags.
func TestDeployConfigSample(t *testing.T) {
	sample := filepath.Join("..", "..", "deploy", "citybridge.toml")
	text, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseServeFlags([]string{"--config", sample}, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatalf("the sample does not load: %v", err)
	}
	var names []string
	helpOut := &strings.Builder{}
	_, _ = parseServeFlags([]string{"-h"}, func(string) string { return "" }, helpOut)
	for _, line := range strings.Split(helpOut.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "-") {
			names = append(names, strings.Fields(strings.TrimPrefix(line, "-"))[0])
		}
	}
	if len(names) < 15 {
		t.Fatalf("read only %d flags from the help: %v", len(names), names)
	}
	for _, n := range names {
		if n == "config" {
			continue
		}
		if !regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(n) + `\s*=`).Match(text) {
			t.Errorf("deploy/citybridge.toml does not mention %q", n)
		}
	}
}
