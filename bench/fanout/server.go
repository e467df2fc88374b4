package main

// The citybridge process under test: built, started pinned to its CPUs,
// measured from /proc, called over HTTPS, profiled, stopped.

import (
	"crypto/tls"
	"encoding/json"
	"errors"
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
	"time"
)

// server is the citybridge process under test.
type server struct {
	cmd       *exec.Cmd
	dir       string
	base      string
	hostToken string
	techToken string
	http      *http.Client
}

func freePort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	hostLink = regexp.MustCompile(`/host#t=([A-Za-z0-9_-]+)`)
	techLink = regexp.MustCompile(`/rooms#t=([A-Za-z0-9_-]+)`)
)

func startServer(bin, cpus string, verbose bool) (*server, error) {
	dir, err := os.MkdirTemp("", "citybridge-bench-")
	if err != nil {
		return nil, err
	}
	if bin == "" {
		bin = filepath.Join(dir, "citybridge")
		build := exec.Command("go", "build", "-o", bin, "./cmd/citybridge")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build the server (run from the repository's root): %w", err)
		}
	}
	tcp, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	udp, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--data", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", tcp),
		"--udp-host", "127.0.0.1", "--udp-port", strconv.Itoa(udp), "--media-allow", "127.0.0.0/8",
		"--turn=false", "--ice-tcp=false", "--max-viewers", "10000", "--log-level", "warn"}
	if verbose {
		args[len(args)-1] = "info"
	}
	name := bin
	if cpus != "" {
		args = append([]string{"-c", cpus, bin}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if verbose {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, dir: dir, base: fmt.Sprintf("https://127.0.0.1:%d", tcp),
		http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the server's own self-signed certificate
			MaxIdleConnsPerHost: 64,
		}}}
	// Standard output is no terminal: the first start writes its links
	// to the data directory.
	first := filepath.Join(dir, "data", "first-start.txt")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		text, _ := os.ReadFile(first)
		host, tech := hostLink.FindSubmatch(text), techLink.FindSubmatch(text)
		if host != nil && tech != nil {
			s.hostToken, s.techToken = string(host[1]), string(tech[1])
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("the server wrote no links to " + first + " within 30 s")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := s.http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("the server is not healthy after 10 s")
		}
	}
	return s, nil
}

func (s *server) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	_ = os.RemoveAll(s.dir)
}

// serverPID is the citybridge process (under taskset, exec keeps the pid).
func (s *server) pid() int { return s.cmd.Process.Pid }

// cpuSeconds reads a process's user+system CPU time from /proc.
func cpuSeconds(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}

func (s *server) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid()))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// post sends an SDP offer with a bearer token and returns the answer and
// the resource's location.
func (s *server) post(path, token, offer string) (string, string, error) {
	req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(offer))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.http.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
	}
	return string(b), resp.Header.Get("Location"), nil
}

// viewerToken issues a viewer link of c1 (the host's link).
func (s *server) viewerToken() (string, error) {
	return s.issueToken("/api/conferences/c1/viewer-links", s.hostToken)
}

// issueToken POSTs to an API route that issues a link and returns its token.
func (s *server) issueToken(path, bearer string) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := s.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var link struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&link); err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("%s: %d %v", path, resp.StatusCode, err)
	}
	return link.Token, nil
}

// profile fetches one of the server's profiles ("profile": CPU, "allocs":
// allocations) over d (allowed from loopback).
func (s *server) profile(kind, path string, d time.Duration) error {
	resp, err := s.http.Get(fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", s.base, kind, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
