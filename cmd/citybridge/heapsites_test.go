package main

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/pion/transport/v4/packetio"
)

// heapSites is the live heap at the last collection, by allocation site:
// the first function on the stack outside the runtime (and outside
// bytes/bufio's growing helpers), bytes scaled from the sampled profile as
// pprof scales them.
type heapSites map[string]int64

// boundedGrowth names the buffers that grow to the worst lag seen and stay
// there, within a bound: pion's packetio buffers (each SRTP/SRTCP read
// stream's, up to 1 MB) are sized by how far the server ever fell behind
// its sockets, which on a loaded machine the drill's reconnections push
// further (seen: 506 to 793 MB of heap in a CI-like run, every goroutine
// gone as it should). They are a level, not a leak: a leak grows without a
// bound, and shows at its own site.
var boundedGrowth = []string{"github.com/pion/transport/v4/packetio.(*Buffer)"}

func liveHeapSites() heapSites {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	out := heapSites{}
	for _, r := range recs {
		objs, bytes := r.InUseObjects(), r.InUseBytes()
		if objs <= 0 || bytes <= 0 {
			continue
		}
		scale := 1.0
		if rate > 1 {
			avg := float64(bytes) / float64(objs)
			scale = 1 / (1 - math.Exp(-avg/rate))
		}
		out[allocSite(r.Stack())] += int64(float64(bytes) * scale)
	}
	return out
}

// allocSite is the first frame that is not the runtime's own (nor a
// growing buffer's helper), with bounded-growth sites named as such.
func allocSite(stack []uintptr) string {
	frames := runtime.CallersFrames(stack)
	site := ""
	for {
		f, more := frames.Next()
		for _, b := range boundedGrowth {
			if strings.HasPrefix(f.Function, b) {
				return b
			}
		}
		if site == "" && !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "bytes.") &&
			!strings.HasPrefix(f.Function, "bufio.") && !strings.HasPrefix(f.Function, "internal/") {
			site = f.Function
		}
		if !more {
			break
		}
	}
	if site == "" {
		site = "runtime"
	}
	return site
}

// bounded is what the sites in boundedGrowth hold.
func (h heapSites) bounded() int64 {
	var n int64
	for _, b := range boundedGrowth {
		n += h[b]
	}
	return n
}

// growth lists the sites that grew most from before to h.
func (h heapSites) growth(before heapSites, top int) string {
	type site struct {
		name string
		d    int64
	}
	var all []site
	for name, n := range h {
		if d := n - before[name]; d > 0 {
			all = append(all, site{name, d})
		}
	}
	slices.SortFunc(all, func(a, b site) int { return cmp.Compare(b.d, a.d) })
	var b strings.Builder
	for i, s := range all {
		if i == top {
			break
		}
		fmt.Fprintf(&b, "\n\t%+.1f MB  %s", float64(s.d)/1e6, s.name)
	}
	return b.String()
}

var heldForSites [][]byte

//go:noinline
func holdForSites(n int) { heldForSites = append(heldForSites, make([]byte, n)) }

// TestLiveHeapSites: the drill's heap check finds an allocation at its
// site, and counts pion's packetio buffers as bounded growth.
func TestLiveHeapSites(t *testing.T) {
	// Every allocation sampled while the test makes its own: a single
	// 512 KB buffer is otherwise seen with a probability of 63 %.
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	holdForSites(64 << 20)
	buf := packetio.NewBuffer()
	packet := make([]byte, 1200)
	for i := 0; i < 400; i++ { // 480 KB unread: the buffer grows
		if _, err := buf.Write(packet); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC() // the profile is as of the collection before the last
	runtime.GC()
	sites := liveHeapSites()
	if got := sites["citybridge/cmd/citybridge.holdForSites"]; got < 60<<20 || got > 70<<20 {
		t.Errorf("holdForSites holds %.1f MB, want about 64; sites: %s", float64(got)/1e6, sites.growth(nil, 5))
	}
	if got := sites.bounded(); got < 400<<10 {
		t.Errorf("packetio buffers: %d bytes, want at least 400 KB", got)
	}
	runtime.KeepAlive(buf)
	heldForSites = nil
}
