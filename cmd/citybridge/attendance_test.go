package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

// binary builds the citybridge binary once per test run.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "citybridge-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "citybridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}
	return bin, nil
})

// process is a citybridge binary running on a data directory.
type process struct {
	cmd    *exec.Cmd
	exited chan error // its Wait's result, once it ended (put back after reading)
	base   string
	data   string
	client *http.Client
}

// startBinary runs `citybridge serve` on data and waits for /healthz.
func startBinary(t *testing.T, data string) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return startBinaryOn(t, data, addr, 0)
}

// freeUDPPort returns a loopback UDP port free right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startBinaryOn runs `citybridge serve` on data with the HTTPS address and
// media port given (a restart keeps them), and waits for /healthz.
func startBinaryOn(t *testing.T, data, addr string, udpPort int, extra ...string) *process {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{base: "https://" + addr, data: data, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // its own self-signed certificate
	}}}
	p.cmd = exec.Command(bin, "serve", "--listen", addr, "--data", data, "--udp-host", "127.0.0.1",
		"--udp-port", strconv.Itoa(udpPort), "--media-allow", "127.0.0.0/8", "--reconnect-grace", "1s",
		"--turn=false")
	p.cmd.Args = append(p.cmd.Args, extra...)
	out := &syncBuffer{} // what it says, for when it does not come up
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	p.exited = exited
	go func() { exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	})
	healthy := func() bool {
		resp, err := p.client.Get(p.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for deadline := time.Now().Add(20 * time.Second); !healthy(); {
		select {
		case err := <-exited:
			exited <- err // (for the cleanup)
			t.Fatalf("citybridge serve on %s exited before it was healthy (%v); it said:\n%s", addr, err, tail(out.String(), 4000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("citybridge serve on %s not healthy after 20 s; it said:\n%s", addr, tail(out.String(), 4000))
		}
	}
	return p
}

// wait waits until the process has ended (after a kill).
func (p *process) wait() {
	err := <-p.exited
	p.exited <- err
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// freeTCPUDPPort returns a port number free on 127.0.0.1 for both TCP and
// UDP a moment ago: the media port takes both (ICE over UDP and TCP), and
// a number free for one protocol may be another test's for the other.
func freeTCPUDPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP in 50 tries")
	return 0
}

// firstStart returns what the first start wrote to the data directory's
// first-start.txt (standard output is no terminal here).
func (p *process) firstStart(t *testing.T, what string, re *regexp.Regexp) string {
	t.Helper()
	var found string
	waitFor(t, 5*time.Second, what+" in "+firstStartFile, func() bool {
		text, _ := os.ReadFile(filepath.Join(p.data, firstStartFile))
		if m := re.FindSubmatch(text); m != nil {
			found = string(m[1])
		}
		return found != ""
	})
	return found
}

// link returns the token of a link the first start gave ("/host#t=").
func (p *process) link(t *testing.T, path string) string {
	t.Helper()
	return p.firstStart(t, "the "+path+" link", regexp.MustCompile(regexp.QuoteMeta(path)+`#t=([A-Za-z0-9_-]+)`))
}

// api calls the JSON API with a bearer token and decodes the answer.
func (p *process) api(t *testing.T, method, path, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, p.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// joinSignal opens a signaling connection and joins with token (no media:
// the attendance record is about the join), returning once joined.
func (p *process) joinSignal(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	hdr := http.Header{"Origin": {p.base}}
	conn, _, err := d.Dial("wss"+strings.TrimPrefix(p.base, "https")+"/signal", hdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b, _ := wire.Encode(wire.Join{Token: token})
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		m, err := wire.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *wire.Joined:
			_ = conn.SetReadDeadline(time.Time{})
			go func() { // keep reading so the server's queue never fills
				for {
					if _, _, err := conn.ReadMessage(); err != nil {
						return
					}
				}
			}()
			return conn
		case *wire.Error:
			t.Fatalf("join refused: %s %s", m.Code, m.Message)
		}
	}
}

type attendanceAnswer struct {
	Bridges []controlplane.BridgeAttendance `json:"bridges"`
}

func (a attendanceAnswer) of(bridge string) controlplane.BridgeAttendance {
	for _, b := range a.Bridges {
		if b.Bridge == bridge {
			return b
		}
	}
	return controlplane.BridgeAttendance{}
}

// TestAttendanceSurvivesRestart: bridges join, one drops and rejoins, the
// server is killed (SIGKILL: no clean stop) and started again on the same
// data directory; the attendance record still shows every interval the
// server acknowledged before the kill, the open ones closed at its last
// heartbeat, and the bridges can join again.
func TestAttendanceSurvivesRestart(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	p := startBinary(t, data)
	tech := p.link(t, "/rooms")
	host := p.link(t, "/host")
	rooms := map[string]string{}
	for _, b := range []string{"commune-001", "commune-002", "ward-001"} {
		var link struct{ Token string }
		if code := p.api(t, "POST", "/api/bridges/"+b+"/terminal-links", tech, &link); code != http.StatusCreated {
			t.Fatalf("terminal link for %s: %d", b, code)
		}
		rooms[b] = link.Token
	}
	conf := "c1"
	record := func(p *process) attendanceAnswer {
		var a attendanceAnswer
		if code := p.api(t, "GET", "/api/conferences/"+conf+"/attendance", host, &a); code != http.StatusOK {
			t.Fatalf("attendance: %d", code)
		}
		return a
	}

	p.joinSignal(t, rooms["commune-001"])
	dropper := p.joinSignal(t, rooms["commune-002"])
	p.joinSignal(t, rooms["ward-001"])
	dropper.Close() // lost without a goodbye
	waitFor(t, 5*time.Second, "commune-002's first interval closed as dropped", func() bool {
		iv := record(p).of("commune-002").Intervals
		return len(iv) == 1 && iv[0].Cause == controlplane.EndDropped
	})
	p.joinSignal(t, rooms["commune-002"])
	before := record(p)
	if got := len(before.of("commune-002").Intervals); got != 2 {
		t.Fatalf("commune-002 has %d intervals before the kill, want 2", got)
	}
	killedAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait()

	q := startBinary(t, data)
	after := record(q)
	want := map[string][]string{
		"commune-001": {controlplane.EndServerStopped},
		"commune-002": {controlplane.EndDropped, controlplane.EndServerStopped},
		"ward-001":    {controlplane.EndServerStopped},
	}
	for bridge, causes := range want {
		got := after.of(bridge)
		if len(got.Intervals) != len(causes) {
			t.Errorf("%s after the restart: %d intervals, want %d: %+v", bridge, len(got.Intervals), len(causes), got)
			continue
		}
		for i, iv := range got.Intervals {
			if iv.Cause != causes[i] || iv.Leave.IsZero() || iv.Leave.Before(iv.Join) || iv.Leave.After(killedAt.Add(time.Second)) {
				t.Errorf("%s interval %d: %+v, want cause %s, closed by the kill", bridge, i, iv, causes[i])
			}
			if !iv.Join.Equal(before.of(bridge).Intervals[i].Join) {
				t.Errorf("%s interval %d joined at %v after the restart, %v before", bridge, i, iv.Join, before.of(bridge).Intervals[i].Join)
			}
		}
		if bridge == "commune-002" && got.Drops != 1 {
			t.Errorf("commune-002 drops = %d, want 1", got.Drops)
		}
	}
	if iv := after.of("ward-002").Intervals; len(iv) != 0 {
		t.Errorf("ward-002 never joined but has %+v", iv)
	}
	// The terminals come back: a new interval, not a changed old one.
	q.joinSignal(t, rooms["commune-001"])
	if iv := record(q).of("commune-001").Intervals; len(iv) != 2 || !iv[1].Leave.IsZero() {
		t.Fatalf("commune-001 after rejoining: %+v", iv)
	}
	var csv strings.Builder
	req, _ := http.NewRequest("GET", q.base+"/api/conferences/"+conf+"/attendance?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+host)
	resp, err := q.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&csv, resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(csv.String(), "bridge,name,join,leave,cause") || !strings.Contains(csv.String(), "commune-002") ||
		strings.Count(csv.String(), controlplane.EndServerStopped) != 3 {
		t.Errorf("attendance CSV:\n%s", csv.String())
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, d, what, func() (bool, string) { return cond(), "" })
}
