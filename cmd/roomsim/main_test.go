package main

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"citybridge/signaling/terminal/drill"
)

// TestRoomsimDrill runs the real server binary and roomsim against it: four
// terminals and a synthetic hub, half the lines flapping. Every fault is
// reported, noticed and recovered, and the command exits 0.
func TestRoomsimDrill(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "citybridge")
	if out, err := exec.Command("go", "build", "-o", bin, "../citybridge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := exec.Command(bin, "serve", "--listen", addr, "--data", filepath.Join(dir, "data"), "--udp-host", "127.0.0.1",
		"--udp-port", "0", "--media-allow", "127.0.0.0/8", "--turn-port", "0")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	// Its standard output is no terminal: the first start's links are in
	// the data directory's first-start.txt.
	link := func(path string) string {
		re := regexp.MustCompile(regexp.QuoteMeta(path) + `#t=([A-Za-z0-9_-]+)`)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "data", "first-start.txt"))
			if m := re.FindStringSubmatch(string(b)); m != nil {
				return m[1]
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no %s link in first-start.txt", path)
		return ""
	}
	tech, host := link("/rooms"), link("/host")
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := client.Get("https://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server not healthy")
		}
		time.Sleep(100 * time.Millisecond)
	}

	var stdout, stderr bytes.Buffer
	code := drill.Main("roomsim", []string{"--url", "https://" + addr, "--token", tech, "--hub-token", host, "--conference", "c1",
		"--bridges", "4", "--layers", "q", "--flap", "50%:3s:4s", "--duration", "15s"}, &stdout, &stderr)
	t.Logf("roomsim output:\n%s", stdout.String())
	if code != 0 {
		t.Fatalf("roomsim exit %d: %s", code, stderr.String())
	}
	rep := stdout.String()
	m := regexp.MustCompile(`faults (\d+), detected by the terminal (\d+), recovered (\d+)`).FindStringSubmatch(rep)
	if m == nil || m[1] == "0" || m[1] != m[3] || m[1] != m[2] {
		t.Fatalf("report %q: want every fault noticed and recovered", m)
	}
	if !strings.Contains(rep, "4 of 4 terminals receiving the hub") {
		t.Errorf("not every terminal received the hub before the drill")
	}

	// The named drill for the hub: its line drops for 5 s; every room gets
	// the hub's picture back.
	stdout.Reset()
	code = drill.Main("roomsim", []string{"--url", "https://" + addr, "--token", tech, "--hub-token", host, "--conference", "c1",
		"--bridges", "3", "--layers", "q", "--scenario", "hub-drop"}, &stdout, &stderr)
	t.Logf("roomsim output:\n%s", stdout.String())
	if code != 0 || !strings.Contains(stdout.String(), "hub back at 3 of 3 rooms") {
		t.Fatalf("hub-drop scenario: exit %d, %s", code, stderr.String())
	}

	// Rooms whose PC restarts: a new terminal with the same link, no
	// goodbye from the old one, back on the hub.
	stdout.Reset()
	code = drill.Main("roomsim", []string{"--url", "https://" + addr, "--token", tech, "--hub-token", host, "--conference", "c1",
		"--bridges", "3", "--layers", "q", "--reboot", "2"}, &stdout, &stderr)
	t.Logf("roomsim output:\n%s", stdout.String())
	if code != 0 || strings.Count(stdout.String(), "receiving the hub") < 3 || !strings.Contains(stdout.String(), "reboot 2:") {
		t.Fatalf("reboots: exit %d, %s", code, stderr.String())
	}
}
