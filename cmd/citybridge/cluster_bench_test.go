package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/deploy"
	"citybridge/signaling/terminal"
)

// The cluster's figures (bench/RESULTS.md, "Cluster"): run by hand, e.g.
//
//	go test -run '^$' -bench 'BenchmarkFailover' -benchtime 10x ./cmd/citybridge
//	go test -run '^$' -bench 'BenchmarkClusterMeeting' -benchtime 1x ./cmd/citybridge

// BenchmarkFailover kills the node serving a conference (SIGKILL) once per
// iteration, with a synthetic hub and 40 synthetic rooms in it, and
// measures how long until every room receives the hub's video again from
// another node; the killed node is started again between kills. It
// reports the median and the worst.
func BenchmarkFailover(b *testing.B) {
	// The framework calls a benchmark more than once (b.N = 1 first): the
	// meeting is made once and kept until the benchmark's end.
	m := failoverMeeting
	if m == nil {
		m = newMeeting(b, "bench-failover", controlplane.DefaultLeaseTTL, 40)
		m.startHub(b)
		failoverMeeting = m
		b.Cleanup(func() { failoverMeeting = nil })
	}
	waitUntil(b, 60*time.Second, "every room receiving the hub", func() (bool, string) {
		miss := m.fleet.NotReceiving(time.Second)
		return len(miss) == 0, fmt.Sprint(miss)
	})
	var times []time.Duration
	b.ResetTimer()
	for i := range b.N {
		owner := m.owner(b)
		if owner == nil {
			b.Fatal("nobody serves the conference")
		}
		killed := owner.kill(b)
		m.handOver(b, owner, watchGaps(m.fleet.Terminals), killed)
		d := time.Since(killed)
		times = append(times, d)
		b.Logf("kill %d: %s killed; every room receiving the hub again %v later", i+1, owner.name, d.Round(10*time.Millisecond))
		// The node comes back, as systemd or Kubernetes would start it.
		for j, n := range m.nodes {
			if n == owner {
				m.nodes[j] = m.pc.start(owner.name, owner.port, "")
			}
		}
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2].Seconds(), "s-median")
	b.ReportMetric(times[len(times)-1].Seconds(), "s-worst")
}

var failoverMeeting *meeting

// BenchmarkClusterMeeting runs a meeting of a synthetic hub and 168
// synthetic rooms on node-1 of a three-node cluster for 30 s, then the same
// meeting on one server with bbolt, and reports the etcd writes per
// second the meeting caused and the CPU the serving node used in each.
func BenchmarkClusterMeeting(b *testing.B) {
	for range b.N {
		m := newMeeting(b, "bench-168", controlplane.DefaultLeaseTTL, 0)
		cluster := meet168(b, m.nodes[0], m.demo, rooms168(b, m.st), func() int64 { return m.pc.revision(b) })
		// The same meeting on one server with bbolt, seeded before it starts.
		data := b.TempDir()
		st, err := openStore(data)
		if err != nil {
			b.Fatal(err)
		}
		demo, _, err := st.SeedDemo(deploy.SampleBridges, "Alone")
		if err != nil {
			b.Fatal(err)
		}
		tokens := rooms168(b, st)
		st.Close()
		single := startSingle(b, data)
		alone := meet168(b, single, demo, tokens, nil)
		b.ReportMetric(cluster.writes, "etcd-writes/s")
		b.ReportMetric(cluster.cpu, "cpu-cluster")
		b.ReportMetric(alone.cpu, "cpu-single")
		b.Logf("168 rooms for 30 s: %.1f etcd writes/s; the serving node used %.2f CPU (cores) in the cluster, %.2f alone on bbolt",
			cluster.writes, cluster.cpu, alone.cpu)
	}
}

type meetingFigures struct {
	writes float64 // etcd writes per second
	cpu    float64 // the serving node's CPU, in cores
}

// rooms168 issues room tokens for 168 bridges of the registry.
func rooms168(b *testing.B, st *controlplane.Store) []string {
	b.Helper()
	bridges, err := st.Bridges()
	if err != nil {
		b.Fatal(err)
	}
	var tokens []string
	for _, br := range bridges {
		if br.Kind == controlplane.KindHub || len(tokens) == 168 {
			continue
		}
		tok, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: br.ID})
		if err != nil {
			b.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	return tokens
}

// startSingle starts one server process on the data directory, alone.
func startSingle(b *testing.B, data string) *procNode {
	b.Helper()
	pc := &procCluster{t: b}
	return pc.start("single", 0, "", "env", "CITYBRIDGE_ETCD=", "CITYBRIDGE_NODE=", "CITYBRIDGE_ADVERTISE=", "CITYBRIDGE_DATA="+data)
}

// meet168 joins a synthetic hub and the rooms at n and measures 30 s of
// the meeting once every room receives the hub.
func meet168(b *testing.B, n *procNode, demo controlplane.Demo, tokens []string, revision func() int64) meetingFigures {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := terminal.StartFleet(n.base, demo.Conference.ID, []string{demo.HostToken}, []string{"q", "h", "f"}, log)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Stop()
	rooms, err := terminal.StartFleet(n.base, demo.Conference.ID, tokens, []string{"q"}, log)
	if err != nil {
		b.Fatal(err)
	}
	defer rooms.Stop()
	waitUntil(b, 120*time.Second, "the rooms receiving the hub", func() (bool, string) {
		r := rooms.Receiving(2 * time.Second)
		return r == len(tokens), fmt.Sprintf("%d of %d", r, len(tokens))
	})
	pid := strconv.Itoa(n.cmd.Process.Pid)
	cpu0, _ := procCPU(pid)
	var rev0 int64
	if revision != nil {
		rev0 = revision()
	}
	start := time.Now()
	waitUntil(b, 40*time.Second, "30 s of the meeting", func() (bool, string) { return time.Since(start) >= 30*time.Second, "" })
	cpu1, _ := procCPU(pid)
	el := time.Since(start).Seconds()
	f := meetingFigures{cpu: (cpu1 - cpu0) / el}
	if revision != nil {
		f.writes = float64(revision()-rev0) / el
	}
	return f
}

// procCPU reads a process's user+system CPU seconds.
func procCPU(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil
}
