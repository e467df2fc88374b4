package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryServeAndSIGTERM builds the real binary, starts it configured
// only through the environment, waits for /healthz, sends SIGTERM and
// expects a clean exit, the first start's links in DATA/first-start.txt.
func TestBinaryServeAndSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "citybridge")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// A free TCP port on loopback for HTTPS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"CITYBRIDGE_LISTEN="+addr,
		"CITYBRIDGE_DATA="+filepath.Join(dir, "data"),
		"CITYBRIDGE_UDP_HOST=127.0.0.1",
		"CITYBRIDGE_UDP_PORT=0",
		"CITYBRIDGE_MEDIA_ALLOW=127.0.0.0/8",
		"CITYBRIDGE_TURN_PORT=0", // TURN on the HTTPS port only: no fixed port to collide on
		"CITYBRIDGE_LOG_FORMAT=json",
	)
	// Read only after Wait, when exec's copying goroutines are done.
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // its own self-signed certificate
	}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("https://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy /healthz within 20 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after SIGTERM")
	}
	// Standard output is no terminal: the links are in the data
	// directory's file, not on it.
	first, err := os.ReadFile(filepath.Join(dir, "data", firstStartFile))
	if err != nil || !strings.Contains(string(first), "/host#t=") {
		t.Errorf("first start wrote no host link: %v\n%s", err, first)
	}
	if strings.Contains(stdout.String()+stderr.String(), "#t=") {
		t.Errorf("first start put a link on standard output or in the log:\n%s\n%s", stdout.String(), stderr.String())
	}
	logs := stderr.String()
	if !strings.Contains(logs, `"msg":"stopped"`) || !strings.Contains(logs, `"level":"INFO"`) {
		t.Errorf("no structured JSON log of a clean stop:\n%s", logs)
	}
}
