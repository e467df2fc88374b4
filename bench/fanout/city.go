package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"citybridge/signaling/terminal"
)

// cityResult is the city session's JSON line.
type cityResult struct {
	Profile          string  `json:"profile"`
	Rooms            int     `json:"rooms"`
	WindowS          float64 `json:"window_s"`
	ForwardedPPS     float64 `json:"forwarded_pps"` // every copy the SFU wrote, from its own counter
	ReceivingRooms   int     `json:"rooms_receiving_the_hub"`
	ServerCores      float64 `json:"server_cpu_cores"`
	USPerPacket      float64 `json:"server_us_per_forwarded_packet"`
	FanoutP50Ms      float64 `json:"server_fanout_p50_ms"` // a packet's arrival to its last copy written, every upstream layer
	FanoutP99Ms      float64 `json:"server_fanout_p99_ms"`
	ServerRSSMB      float64 `json:"server_rss_mb"`
	GenCores         float64 `json:"generator_cpu_cores"`
	GenCPUs          int     `json:"generator_cpus"`
	GeneratorLimited bool    `json:"generator_limited"`
}

// citySession runs one city meeting on the server: a synthetic hub
// publishing three layers and watching every room small on its wall, and
// rooms synthetic terminals publishing two layers each and receiving the
// hub, all over the WebSocket protocol (signaling/terminal), as the
// drills do. It measures the server over window.
func citySession(s *server, rooms int, warmup, window time.Duration, profile string) (cityResult, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ids, err := s.bridgeIDs(rooms)
	if err != nil {
		return cityResult{}, err
	}
	var tokens []string
	for _, id := range ids {
		tok, err := s.terminalLink(id)
		if err != nil {
			return cityResult{}, err
		}
		tokens = append(tokens, tok)
	}
	hub, err := terminal.StartFleet(s.base, "c1", []string{s.hostToken}, []string{"q", "h", "f"}, log)
	if err != nil {
		return cityResult{}, err
	}
	defer hub.Stop()
	fleet, err := terminal.StartFleet(s.base, "c1", tokens, []string{"q", "h"}, log)
	if err != nil {
		return cityResult{}, err
	}
	defer fleet.Stop()
	for deadline := time.Now().Add(90 * time.Second); fleet.Receiving(2*time.Second) < len(ids); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			return cityResult{}, fmt.Errorf("%d of %d rooms receive the hub after 90 s", fleet.Receiving(2*time.Second), len(ids))
		}
	}
	time.Sleep(warmup)
	pid := strconv.Itoa(s.pid())
	fwd0, err := s.forwarded()
	if err != nil {
		return cityResult{}, err
	}
	srv0, _ := cpuSeconds(pid)
	gen0, _ := cpuSeconds("self")
	fan0, err := s.fanoutBuckets()
	if err != nil {
		return cityResult{}, err
	}
	start := time.Now()
	done := make(chan error, 1)
	if profile != "" {
		go func() { done <- s.profile("profile", fmt.Sprintf("%s-city-%d.pprof", profile, rooms), window) }()
	} else {
		done <- nil
	}
	time.Sleep(window)
	elapsed := time.Since(start).Seconds()
	srv1, _ := cpuSeconds(pid)
	gen1, _ := cpuSeconds("self")
	fwd1, err := s.forwarded()
	if err != nil {
		return cityResult{}, err
	}
	fan1, err := s.fanoutBuckets()
	if err != nil {
		return cityResult{}, err
	}
	if err := <-done; err != nil {
		return cityResult{}, err
	}
	r := cityResult{
		Profile:        "city",
		Rooms:          len(ids),
		WindowS:        round(elapsed, 1),
		ForwardedPPS:   round(float64(fwd1-fwd0)/elapsed, 0),
		ReceivingRooms: fleet.Receiving(2 * time.Second),
		ServerCores:    round((srv1-srv0)/elapsed, 3),
		ServerRSSMB:    round(float64(s.rss())/1e6, 1),
		GenCores:       round((gen1-gen0)/elapsed, 3),
		GenCPUs:        runtime.GOMAXPROCS(0),
		FanoutP50Ms:    round(quantileMs(fan0, fan1, 0.50), 3),
		FanoutP99Ms:    round(quantileMs(fan0, fan1, 0.99), 3),
	}
	if fwd1 > fwd0 {
		r.USPerPacket = round((srv1-srv0)*1e6/float64(fwd1-fwd0), 2)
	}
	r.GeneratorLimited = r.GenCores > 0.9*float64(r.GenCPUs)
	return r, nil
}

// bridgeIDs lists the first n rooms of the registry (a technician's link).
func (s *server) bridgeIDs(n int) ([]string, error) {
	var bs []struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	}
	if err := s.getJSON("/api/bridges", &bs); err != nil {
		return nil, err
	}
	var ids []string
	for _, b := range bs {
		if b.Kind != "hub" && len(ids) < n {
			ids = append(ids, b.ID)
		}
	}
	if len(ids) < n {
		return nil, fmt.Errorf("the registry has %d rooms, %d asked", len(ids), n)
	}
	return ids, nil
}

func (s *server) getJSON(path string, v any) error {
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.techToken)
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// terminalLink issues a room terminal's token (a technician's link).
func (s *server) terminalLink(bridge string) (string, error) {
	return s.issueToken("/api/bridges/"+bridge+"/terminal-links", s.techToken)
}

var bucketLine = regexp.MustCompile(`(?m)^citybridge_forward_latency_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$`)

// fanoutBuckets reads the SFU's histogram of the time from an upstream
// packet's arrival to its last copy written: cumulative counts by upper
// bound in seconds, ascending, +Inf last.
func (s *server) fanoutBuckets() ([]bucket, error) {
	resp, err := s.http.Get(s.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []bucket
	for _, m := range bucketLine.FindAllSubmatch(b, -1) {
		le, err1 := strconv.ParseFloat(string(m[1]), 64) // "+Inf" parses as +Inf
		n, err2 := strconv.ParseFloat(string(m[2]), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad bucket line %q", m[0])
		}
		out = append(out, bucket{le, n})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no citybridge_forward_latency_seconds buckets in /metrics")
	}
	return out, nil
}

// bucket is one cumulative histogram bucket.
type bucket struct{ le, count float64 }

// quantileMs is quantile q (0-1) in milliseconds of the observations made
// between two readings of the same histogram, interpolated linearly within
// its bucket as Prometheus's histogram_quantile does; 0 when nothing was
// observed, the last finite bound when q falls beyond it.
func quantileMs(before, after []bucket, q float64) float64 {
	if len(before) != len(after) || len(after) == 0 {
		return 0
	}
	total := after[len(after)-1].count - before[len(before)-1].count
	if total <= 0 {
		return 0
	}
	rank, lo, prev := q*total, 0.0, 0.0
	for i := range after {
		c := after[i].count - before[i].count
		if c >= rank {
			if math.IsInf(after[i].le, 1) {
				return lo * 1e3
			}
			f := 1.0
			if c > prev {
				f = (rank - prev) / (c - prev)
			}
			return (lo + (after[i].le-lo)*f) * 1e3
		}
		lo, prev = after[i].le, c
	}
	return lo * 1e3
}

var forwardedLine = regexp.MustCompile(`(?m)^citybridge_rtp_packets_forwarded_total ([0-9.e+]+)$`)

// forwarded reads the SFU's count of packets written to subscribers from
// its metrics (allowed from this machine).
func (s *server) forwarded() (int64, error) {
	resp, err := s.http.Get(s.base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := forwardedLine.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no citybridge_rtp_packets_forwarded_total in /metrics")
	}
	f, err := strconv.ParseFloat(string(m[1]), 64)
	return int64(f), err
}
