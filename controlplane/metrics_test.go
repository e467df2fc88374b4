package controlplane

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// fakeRegistry has every source set: two bridges in different states, and
// a forward-latency histogram.
func fakeRegistry() RegistryOptions {
	return RegistryOptions{
		Media: func() MediaFigures {
			return MediaFigures{Peers: 3, PacketsForwarded: 10, BytesForwarded: 12000,
				ForwardLatency: HistogramFigures{Bounds: []float64{0.00001, 0.001}, Counts: []uint64{5, 3, 1}, Sum: 0.004}}
		},
		Sessions: func() SessionFigures { return SessionFigures{RoleHost: 1, RoleRoom: 2} },
		Links: func() []BridgeLink {
			return []BridgeLink{
				{Conference: "c1", Bridge: "ward-001", Score: 92, State: QualityGood, Sample: LinkSample{
					RTTMs: 40, LossDown: 0.01, LossUp: 0.02, JitterDownMs: 5, JitterUpMs: 8,
					SentBps: 1_600_000, RecvBps: 800_000, EstimateBps: 2_400_000, Layer: LayerHigh}},
				{Conference: "c1", Bridge: "commune-007", Score: 0, State: QualityLost, Sample: LinkSample{
					Silent: 5 * time.Second, Layer: LayerNone}},
			}
		},
		AlertsActive: func() int { return 1 },
		Reconnects:   func() uint64 { return 4 },
		Shed:         func() ShedFigures { return ShedFigures{Full: 1, Source: 936, Timeout: 64} },
		Cluster:      func() ClusterFigures { return ClusterFigures{EtcdUp: false, LeaseHeld: true, JoinsRefused: 7} },
	}
}

func TestMetricsLint(t *testing.T) {
	reg := NewRegistry(fakeRegistry())
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	const want = `
# HELP citybridge_peers Participants with media connections in the SFU.
# TYPE citybridge_peers gauge
citybridge_peers 3
# HELP citybridge_rtp_packets_forwarded_total RTP packets written to subscribers (one per copy).
# TYPE citybridge_rtp_packets_forwarded_total counter
citybridge_rtp_packets_forwarded_total 10
# HELP citybridge_signaling_sessions Joined signaling sessions by role.
# TYPE citybridge_signaling_sessions gauge
citybridge_signaling_sessions{role="host"} 1
citybridge_signaling_sessions{role="room"} 2
# HELP citybridge_alerts_active Alerts raised and not yet cleared: bridges lost or poor, and this node cut from etcd.
# TYPE citybridge_alerts_active gauge
citybridge_alerts_active 1
# HELP citybridge_reconnects_total Participants that came back within their reconnection grace period.
# TYPE citybridge_reconnects_total counter
citybridge_reconnects_total 4
# HELP citybridge_frontdoor_shed_connections_total Connections the shared TCP port closed before they reached a server: reason=full when every classification place was taken, reason=source when the sender's address had all its places, reason=timeout when one sent nothing within the first-byte deadline or was not through within the classification deadline.
# TYPE citybridge_frontdoor_shed_connections_total counter
citybridge_frontdoor_shed_connections_total{reason="full"} 1
citybridge_frontdoor_shed_connections_total{reason="source"} 936
citybridge_frontdoor_shed_connections_total{reason="timeout"} 64
# HELP citybridge_cluster_etcd_up 1 while etcd answers this node, 0 while it does not: it refuses joins, and gives its conferences up when its lease ends.
# TYPE citybridge_cluster_etcd_up gauge
citybridge_cluster_etcd_up 0
# HELP citybridge_cluster_lease_held 1 while this node's lease surely holds by its own clock (it may serve conferences), 0 otherwise.
# TYPE citybridge_cluster_lease_held gauge
citybridge_cluster_lease_held 1
# HELP citybridge_cluster_joins_refused_total Joins, WHIP and WHEP requests refused because this node could not reach etcd.
# TYPE citybridge_cluster_joins_refused_total counter
citybridge_cluster_joins_refused_total 7
# HELP citybridge_forward_latency_seconds Time from an upstream RTP packet entering the forwarding loop to its last copy written to a subscriber.
# TYPE citybridge_forward_latency_seconds histogram
citybridge_forward_latency_seconds_bucket{le="1e-05"} 5
citybridge_forward_latency_seconds_bucket{le="0.001"} 8
citybridge_forward_latency_seconds_bucket{le="+Inf"} 9
citybridge_forward_latency_seconds_sum 0.004
citybridge_forward_latency_seconds_count 9
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"citybridge_peers", "citybridge_rtp_packets_forwarded_total", "citybridge_signaling_sessions",
		"citybridge_alerts_active", "citybridge_reconnects_total", "citybridge_frontdoor_shed_connections_total",
		"citybridge_cluster_etcd_up", "citybridge_cluster_lease_held", "citybridge_cluster_joins_refused_total",
		"citybridge_forward_latency_seconds"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg, "go_goroutines")
	if err != nil || n != 1 {
		t.Fatalf("go_goroutines: %d series, err %v", n, err)
	}

	// Per bridge: every gauge with the fake sample's values, in base units.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "citybridge_bridge_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			got[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	const g, l = "bridge=ward-001,conference=c1", "bridge=commune-007,conference=c1" // labels sorted by name
	wantLinks := map[string]float64{
		"citybridge_bridge_link_score{" + g + "}":                            92,
		"citybridge_bridge_link_state{" + g + ",state=good}":                 1,
		"citybridge_bridge_link_state{" + g + ",state=fair}":                 0,
		"citybridge_bridge_link_state{" + g + ",state=poor}":                 0,
		"citybridge_bridge_link_state{" + g + ",state=lost}":                 0,
		"citybridge_bridge_rtt_seconds{" + g + "}":                           0.04,
		"citybridge_bridge_loss_ratio{" + g + ",direction=down}":             0.01,
		"citybridge_bridge_loss_ratio{" + g + ",direction=up}":               0.02,
		"citybridge_bridge_jitter_seconds{" + g + ",direction=down}":         0.005,
		"citybridge_bridge_jitter_seconds{" + g + ",direction=up}":           0.008,
		"citybridge_bridge_media_bytes_per_second{" + g + ",direction=down}": 200_000,
		"citybridge_bridge_media_bytes_per_second{" + g + ",direction=up}":   100_000,
		"citybridge_bridge_estimate_bytes_per_second{" + g + "}":             300_000,
		"citybridge_bridge_layer{" + g + "}":                                 2,
		"citybridge_bridge_link_score{" + l + "}":                            0,
		"citybridge_bridge_link_state{" + l + ",state=good}":                 0,
		"citybridge_bridge_link_state{" + l + ",state=fair}":                 0,
		"citybridge_bridge_link_state{" + l + ",state=poor}":                 0,
		"citybridge_bridge_link_state{" + l + ",state=lost}":                 1,
		"citybridge_bridge_rtt_seconds{" + l + "}":                           0,
		"citybridge_bridge_loss_ratio{" + l + ",direction=down}":             0,
		"citybridge_bridge_loss_ratio{" + l + ",direction=up}":               0,
		"citybridge_bridge_jitter_seconds{" + l + ",direction=down}":         0,
		"citybridge_bridge_jitter_seconds{" + l + ",direction=up}":           0,
		"citybridge_bridge_media_bytes_per_second{" + l + ",direction=down}": 0,
		"citybridge_bridge_media_bytes_per_second{" + l + ",direction=up}":   0,
		"citybridge_bridge_estimate_bytes_per_second{" + l + "}":             0,
		"citybridge_bridge_layer{" + l + "}":                                 -1,
	}
	for k, v := range wantLinks {
		if gv, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		} else if gv != v {
			t.Errorf("%s = %v, want %v", k, gv, v)
		}
	}
	for k := range got {
		if _, ok := wantLinks[k]; !ok {
			t.Errorf("unexpected %s", k)
		}
	}
}

// TestMetricNames: MetricNames lists exactly the citybridge_* series a
// registry with every source emits, so the deploy files checked against it
// cannot name a metric that does not exist.
func TestMetricNames(t *testing.T) {
	mfs, err := NewRegistry(fakeRegistry()).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		switch name := mf.GetName(); {
		case !strings.HasPrefix(name, "citybridge_"):
		case mf.GetType() == dto.MetricType_HISTOGRAM:
			got = append(got, name+"_bucket", name+"_sum", name+"_count")
		default:
			got = append(got, name)
		}
	}
	slices.Sort(got)
	if want := MetricNames(); !slices.Equal(got, want) {
		t.Fatalf("gathered %v\nMetricNames %v", got, want)
	}
}

// TestMetricsNilSources: a registry without sources still gathers, and
// leaves their metrics out.
func TestMetricsNilSources(t *testing.T) {
	reg := NewRegistry(RegistryOptions{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "citybridge_") {
			t.Errorf("%s emitted without a source", mf.GetName())
		}
	}
}

// TestMetricsNodeLabel: a cluster node's registry puts node="NAME" on
// every series, Go's and the process's too; one machine's puts none.
func TestMetricsNodeLabel(t *testing.T) {
	for _, node := range []string{"hub-a", ""} {
		o := fakeRegistry()
		o.Node = node
		mfs, err := NewRegistry(o).Gather()
		if err != nil {
			t.Fatal(err)
		}
		series := 0
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				series++
				got := ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "node" {
						got = l.GetValue()
					}
				}
				if got != node {
					t.Errorf("node %q: %s has node=%q", node, mf.GetName(), got)
				}
			}
		}
		if series < 40 {
			t.Errorf("node %q: only %d series gathered", node, series)
		}
	}
}
