// Command fanout is citybridge's fan-out benchmark: it starts the server,
// publishes the test clips to it over WHIP (one 720p layer, or three-layer
// simulcast) with a microphone, adds N WHEP subscribers for each N asked,
// and prints one JSON line per N: what was delivered, lost and how late,
// what the server spent (CPU cores from /proc, RSS), and what the
// generator itself spent.
//
//	go run ./bench/fanout -n 25,50,116,250
//
// The server runs pinned to -server-cpus and this generator to -gen-cpus
// (taskset and sched_setaffinity), so the two do not share a core; the
// output says when the generator, not the server, was the limit. Each
// video packet carries its send time in a trailer after the VP8 payload
// (the SFU forwards payloads as they are), so the added delay is measured
// on one clock: the generator's. See bench/README.md and bench/RESULTS.md.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/webrtc/v4"
	"golang.org/x/sys/unix"
)

// The trailer appended to each video payload: a magic and the send time.
const (
	trailerLen   = 12
	trailerMagic = 0xCB5EED01
)

func main() {
	var (
		counts     = flag.String("n", "116", "subscriber counts to measure, ascending, comma-separated")
		layers     = flag.Int("layers", 1, "1: one 720p layer; 3: 180p/360p/720p simulcast")
		warmup     = flag.Duration("warmup", 8*time.Second, "after the subscribers are added, before measuring")
		window     = flag.Duration("window", 10*time.Second, "how long each point is measured")
		serverBin  = flag.String("server", "", "citybridge binary (default: built from ./cmd/citybridge)")
		serverCPUs = flag.String("server-cpus", "0", "CPUs the server is pinned to (taskset list); empty: no pinning")
		genCPUs    = flag.String("gen-cpus", "1", "CPUs this generator is pinned to; empty: no pinning")
		cpuProfile = flag.String("cpuprofile", "", "write the server's CPU profile of each point's window to FILE-N.pprof")
		allocProf  = flag.String("allocprofile", "", "write the server's allocations during each point's window to FILE-N.pprof")
		genProfile = flag.String("gen-cpuprofile", "", "write the generator's own CPU profile to FILE")
		keep       = flag.Bool("v", false, "print the server's log to stderr")
		city       = flag.Int("city", 0, "instead: the city session, a synthetic hub (3 layers, watching the wall) and this many synthetic rooms (2 layers each) over the WebSocket protocol")
		wall       = flag.Int("wall", 0, "instead: a Chromium host console with this many synthetic rooms (180p): the browser's CPU")
		wallShown  = flag.Int("wall-shown", 0, "with -wall: 0, a window showing every tile; otherwise one showing about 30")
		browser    = flag.String("browser-cpus", "1", "with -wall: CPUs Chromium is pinned to; empty: no pinning")
		chromium   = flag.String("chromium", "chromium", "with -wall: the Chromium binary")
	)
	flag.Parse()
	ns, err := parseCounts(*counts)
	if err != nil {
		log.Fatal(err)
	}
	if *genCPUs != "" {
		if err := pin(*genCPUs); err != nil {
			log.Fatalf("pin the generator to %s: %v", *genCPUs, err)
		}
	}
	if *genProfile != "" {
		f, err := os.Create(*genProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	srv, err := startServer(*serverBin, *serverCPUs, *keep)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.stop()

	if *wall > 0 {
		res, err := wallSession(srv, *wall, *wallShown, *browser, *chromium, *warmup, *window)
		if err != nil {
			srv.stop() // log.Fatalf runs no deferred call
			log.Fatalf("wall session: %v", err)
		}
		line, _ := json.Marshal(res)
		fmt.Println(string(line))
		return
	}
	if *city > 0 {
		res, err := citySession(srv, *city, *warmup, *window, *cpuProfile)
		if err != nil {
			log.Fatalf("city session: %v", err)
		}
		line, _ := json.Marshal(res)
		fmt.Println(string(line))
		return
	}
	b := &bench{srv: srv}
	if err := b.publish(*layers); err != nil {
		log.Fatalf("WHIP publisher: %v", err)
	}
	defer b.close()
	time.Sleep(2 * time.Second) // the server measures the layers' rates
	baseRSS := srv.rss()
	for _, n := range ns {
		if err := b.grow(n); err != nil {
			log.Fatalf("%d subscribers: %v", n, err)
		}
		time.Sleep(*warmup)
		prof := ""
		if *cpuProfile != "" {
			prof = fmt.Sprintf("%s-%d.pprof", strings.TrimSuffix(*cpuProfile, ".pprof"), n)
		}
		aprof := ""
		if *allocProf != "" {
			aprof = fmt.Sprintf("%s-%d.pprof", strings.TrimSuffix(*allocProf, ".pprof"), n)
		}
		res, err := b.measure(*window, prof, aprof)
		if err != nil {
			log.Fatalf("%d subscribers: %v", n, err)
		}
		res.Layers = *layers
		res.MemPerSubMB = round((res.ServerRSSMB*1e6-float64(baseRSS))/1e6/float64(n), 3)
		line, _ := json.Marshal(res)
		fmt.Println(string(line))
	}
}

func parseCounts(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-n: %q is not a count", f)
		}
		ns = append(ns, n)
	}
	if !slices.IsSorted(ns) {
		return nil, errors.New("-n: counts must be ascending (subscribers are added, never removed)")
	}
	return ns, nil
}

// pin binds this process to cpus and sizes the Go scheduler to them.
func pin(cpus string) error {
	var set unix.CPUSet
	n := 0
	for _, f := range strings.Split(cpus, ",") {
		lo, hi, _ := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return err
		}
		b := a
		if hi != "" {
			if b, err = strconv.Atoi(hi); err != nil {
				return err
			}
		}
		for c := a; c <= b; c++ {
			set.Set(c)
			n++
		}
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return err
	}
	runtime.GOMAXPROCS(n)
	return nil
}

// bench is the publisher and the subscribers.
type bench struct {
	srv  *server
	api  *webrtc.API
	pub  *sfutest.Publisher
	subs []*subscriber
}

// subscriber is one WHEP client's receive counters.
type subscriber struct {
	pc       *webrtc.PeerConnection
	video    atomic.Int64
	audio    atomic.Int64
	bytes    atomic.Int64
	highest  atomic.Int64 // extended highest video sequence number
	mu       sync.Mutex
	delays   []int64 // ns, in the current window
	sampling atomic.Bool
}

func gathered(pc *webrtc.PeerConnection, offer webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return "", errors.New("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP, nil
}

func (b *bench) publish(layers int) error {
	var err error
	if b.api, err = sfutest.ClientAPI(true); err != nil {
		return err
	}
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	rids := []string{"f"}
	if layers == 3 {
		rids = []string{"q", "h", "f"}
	}
	if b.pub, err = sfutest.NewPublisher(pc, "hub", rids, true); err != nil {
		return err
	}
	b.pub.Stamp = func(p []byte) []byte {
		var t [trailerLen]byte
		binary.BigEndian.PutUint32(t[:4], trailerMagic)
		binary.BigEndian.PutUint64(t[4:], uint64(time.Now().UnixNano()))
		return append(p, t[:]...)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	sdp, err := gathered(pc, offer)
	if err != nil {
		return err
	}
	answer, _, err := b.srv.post("/whip/c1", b.srv.hostToken, sdp)
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return err
	}
	b.pub.Start()
	return nil
}

// close ends the subscribers and the publisher (its connection first: its
// RTCP readers return only then).
func (b *bench) close() {
	for _, s := range b.subs {
		_ = s.pc.Close()
	}
	_ = b.pub.PC.Close()
	b.pub.Stop()
}

// grow adds WHEP subscribers until there are n, ten at a time.
func (b *bench) grow(n int) error {
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for i := len(b.subs); i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := b.subscribe()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			b.subs = append(b.subs, s)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	// Every subscriber receiving video.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		waiting := 0
		states := map[string]int{}
		for _, s := range b.subs {
			if s.video.Load() == 0 {
				waiting++
				states[s.pc.ConnectionState().String()]++
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d subscribers receive no video after 60 s (their connections: %v)", waiting, len(b.subs), states)
		}
	}
}

func (b *bench) subscribe() (*subscriber, error) {
	tok, err := b.srv.viewerToken()
	if err != nil {
		return nil, err
	}
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, err
		}
	}
	s := &subscriber{pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		video := tr.Kind() == webrtc.RTPCodecTypeVideo
		var cycles, last int64 = 0, -1
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if !video {
				s.audio.Add(1)
				continue
			}
			now := time.Now().UnixNano()
			s.video.Add(1)
			s.bytes.Add(int64(len(p.Payload)))
			seq := int64(p.SequenceNumber)
			if last >= 0 && seq < last && last-seq > 1<<15 {
				cycles += 1 << 16
			}
			if last < 0 || seq > last || last-seq > 1<<15 {
				last = seq
				s.highest.Store(cycles + seq)
			}
			if n := len(p.Payload); n >= trailerLen && s.sampling.Load() &&
				binary.BigEndian.Uint32(p.Payload[n-trailerLen:]) == trailerMagic {
				sent := int64(binary.BigEndian.Uint64(p.Payload[n-8:]))
				s.mu.Lock()
				s.delays = append(s.delays, now-sent)
				s.mu.Unlock()
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	sdp, err := gathered(pc, offer)
	if err != nil {
		return nil, err
	}
	answer, _, err := b.srv.post("/whep/c1", tok, sdp)
	if err != nil {
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return nil, err
	}
	return s, nil
}

// result is one JSON line.
type result struct {
	Subscribers   int     `json:"subscribers"`
	Layers        int     `json:"layers"`
	WindowS       float64 `json:"window_s"`
	DeliveredPPS  float64 `json:"delivered_pps"`  // video packets/s summed over subscribers
	DeliveredMbps float64 `json:"delivered_mbps"` // video payload
	Loss          float64 `json:"loss"`           // video packets missing at the subscribers, fraction
	DelayP50Ms    float64 `json:"delay_p50_ms"`
	DelayP99Ms    float64 `json:"delay_p99_ms"`
	// In the server: an upstream packet's arrival to its last copy
	// written, over the window (its histogram, interpolated in buckets).
	FanoutP50Ms      float64 `json:"server_fanout_p50_ms"`
	FanoutP99Ms      float64 `json:"server_fanout_p99_ms"`
	ServerCores      float64 `json:"server_cpu_cores"`
	CoresPer100      float64 `json:"server_cores_per_100_subscribers"`
	USPerPacket      float64 `json:"server_us_per_forwarded_packet"`
	ServerRSSMB      float64 `json:"server_rss_mb"`
	MemPerSubMB      float64 `json:"server_mb_per_subscriber"`
	GenCores         float64 `json:"generator_cpu_cores"`
	GenCPUs          int     `json:"generator_cpus"`
	GeneratorLimited bool    `json:"generator_limited"`
}

func (b *bench) measure(window time.Duration, profile, allocs string) (result, error) {
	type mark struct{ video, bytes, highest int64 }
	marks := make([]mark, len(b.subs))
	for i, s := range b.subs {
		s.mu.Lock()
		s.delays = s.delays[:0]
		s.mu.Unlock()
		s.sampling.Store(true)
		marks[i] = mark{s.video.Load(), s.bytes.Load(), s.highest.Load()}
	}
	pid := strconv.Itoa(b.srv.pid())
	srv0, err := cpuSeconds(pid)
	if err != nil {
		return result{}, err
	}
	gen0, _ := cpuSeconds("self")
	fan0, err := b.srv.fanoutBuckets()
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	var profErr error
	var profs sync.WaitGroup
	for kind, path := range map[string]string{"profile": profile, "allocs": allocs} {
		if path == "" {
			continue
		}
		profs.Add(1)
		go func() {
			defer profs.Done()
			if err := b.srv.profile(kind, path, window); err != nil {
				profErr = err
			}
		}()
	}
	time.Sleep(window)
	elapsed := time.Since(start).Seconds()
	srv1, _ := cpuSeconds(pid)
	gen1, _ := cpuSeconds("self")
	fan1, err := b.srv.fanoutBuckets()
	if err != nil {
		return result{}, err
	}
	var packets, bytes, expected int64
	var delays []int64
	for i, s := range b.subs {
		s.sampling.Store(false)
		packets += s.video.Load() - marks[i].video
		bytes += s.bytes.Load() - marks[i].bytes
		expected += s.highest.Load() - marks[i].highest
		s.mu.Lock()
		delays = append(delays, s.delays...)
		s.mu.Unlock()
	}
	profs.Wait()
	if profErr != nil {
		log.Printf("server profile: %v", profErr)
	}
	slices.Sort(delays)
	q := func(f float64) float64 {
		if len(delays) == 0 {
			return 0
		}
		return float64(delays[min(len(delays)-1, int(f*float64(len(delays))))]) / 1e6
	}
	r := result{
		Subscribers:   len(b.subs),
		WindowS:       round(elapsed, 1),
		DeliveredPPS:  round(float64(packets)/elapsed, 0),
		DeliveredMbps: round(float64(bytes)*8/elapsed/1e6, 1),
		DelayP50Ms:    round(q(0.50), 2),
		DelayP99Ms:    round(q(0.99), 2),
		FanoutP50Ms:   round(quantileMs(fan0, fan1, 0.50), 3),
		FanoutP99Ms:   round(quantileMs(fan0, fan1, 0.99), 3),
		ServerCores:   round((srv1-srv0)/elapsed, 3),
		ServerRSSMB:   round(float64(b.srv.rss())/1e6, 1),
		GenCores:      round((gen1-gen0)/elapsed, 3),
		GenCPUs:       runtime.GOMAXPROCS(0),
	}
	if expected > 0 {
		r.Loss = round(max(0, float64(expected-packets)/float64(expected)), 4)
	}
	r.CoresPer100 = round(r.ServerCores*100/float64(r.Subscribers), 3)
	if packets > 0 {
		r.USPerPacket = round((srv1-srv0)*1e6/float64(packets), 2)
	}
	r.GeneratorLimited = r.GenCores > 0.9*float64(r.GenCPUs)
	return r, nil
}

func round(f float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(f*p+0.5)) / p
}
