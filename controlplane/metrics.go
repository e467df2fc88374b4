package controlplane

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// MediaFigures is what the media plane reports at scrape time. The control
// plane does not know where the figures come from; cmd wires the SFU in.
type MediaFigures struct {
	Peers            int64
	PublishedTracks  int64
	DownTracks       int64
	PacketsReceived  uint64
	PacketsForwarded uint64
	BytesForwarded   uint64
	KeyframeRequests uint64
	MalformedPackets uint64
	// KeyframesFromCache: subscribers started from a cached keyframe
	// instead of a keyframe request.
	KeyframesFromCache uint64
	// OffersRepeated: offers to subscribers that went unanswered and
	// were made again.
	OffersRepeated uint64

	Retransmitted           uint64 // packets sent again on subscribers' NACKs
	RetransmittedTwice      uint64 // of those, sent a second time unasked (links not congested)
	StaleNACKs              uint64 // NACKs not answered: the packet's picture was left behind
	UnaffordableNACKs       uint64 // NACKs not answered: over the subscriber's retransmission budget
	RetransmissionsReceived uint64 // publishers' retransmissions received
	LateRetransmissions     uint64 // of those, dropped as too late to help
	Probes                  uint64 // bandwidth probes before moving a room up a layer
	FailedProbes            uint64
	LayerChanges            uint64 // subscribers' layer changes, pauses and resumes
	ThinnedPackets          uint64 // packets of upper temporal layers left out for the host's wall
	HiddenDownTracks        int64  // video copies whose subscriber does not show them: nothing forwarded

	ForwardLatency HistogramFigures // upstream packet in to last copy out
}

// HistogramFigures is a histogram of durations in seconds: Counts[i]
// observations no longer than Bounds[i] (and longer than Bounds[i-1]);
// Counts has one more element, for those beyond the last bound.
type HistogramFigures struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
}

// ShedFigures counts the connections the shared TCP port closed before
// they reached a server, to keep itself open to everyone else.
type ShedFigures struct {
	Full    uint64 // every classification place was taken
	Source  uint64 // the sender's address had all its places
	Timeout uint64 // silent past the first-byte deadline, or not through within the classification deadline
}

// ClusterFigures are a cluster node's link to etcd.
type ClusterFigures struct {
	EtcdUp       bool   // etcd answers the node
	LeaseHeld    bool   // its lease surely holds, by its own clock
	JoinsRefused uint64 // joins, WHIP and WHEP requests refused for want of etcd
}

// SessionFigures counts signaling sessions by role.
type SessionFigures map[Role]int

// RegistryOptions are where the metrics come from, each read when scraped;
// a nil func leaves its metrics out.
type RegistryOptions struct {
	Media        func() MediaFigures
	Sessions     func() SessionFigures
	Links        func() []BridgeLink // Monitor.Links
	AlertsActive func() int          // alerts raised and not cleared
	Reconnects   func() uint64       // participants back within their reconnection grace
	Shed         func() ShedFigures  // the shared TCP port's closed connections
	// Node is the cluster node's name, put on every series as the label
	// node; empty on one machine, where the series carry no such label
	// (Prometheus's instance already says which server it is, and a
	// single server's series stay as they were).
	Node string
	// Cluster is the node's link to etcd (nil on one machine).
	Cluster func() ClusterFigures
}

// NewRegistry builds the server's own Prometheus registry: Go runtime and
// process collectors plus citybridge's figures, read when scraped.
func NewRegistry(o RegistryOptions) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	NodeRegisterer(reg, o.Node).MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&figuresCollector{o: o},
	)
	return reg
}

// NodeRegisterer registers on reg with the label node="NAME" added to
// every series, so that a cluster's nodes can be told apart whatever
// else is registered (the metrics handler's own figures too); reg itself
// when name is empty.
func NodeRegisterer(reg *prometheus.Registry, name string) prometheus.Registerer {
	if name == "" {
		return reg
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"node": name}, reg)
}

// metricNames are the names of citybridge's own series, in the order
// their families are declared.
var metricNames []string

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	metricNames = append(metricNames, name)
	return prometheus.NewDesc(name, help, labels, nil)
}

func newHistogramDesc(name, help string, labels ...string) *prometheus.Desc {
	metricNames = append(metricNames, name+"_bucket", name+"_sum", name+"_count")
	return prometheus.NewDesc(name, help, labels, nil)
}

// MetricNames returns the name of every citybridge_* series the registry
// can emit, as PromQL sees them: a histogram as its _bucket, _sum and
// _count series.
func MetricNames() []string {
	out := append([]string(nil), metricNames...)
	sort.Strings(out)
	return out
}

var (
	descPeers = newDesc("citybridge_peers",
		"Participants with media connections in the SFU.")
	descTracks = newDesc("citybridge_published_tracks",
		"Tracks being published (a simulcast camera counts once).")
	descDownTracks = newDesc("citybridge_down_tracks",
		"Per-subscriber copies of published tracks.")
	descReceived = newDesc("citybridge_rtp_packets_received_total",
		"RTP packets received from publishers.")
	descForwarded = newDesc("citybridge_rtp_packets_forwarded_total",
		"RTP packets written to subscribers (one per copy).")
	descBytes = newDesc("citybridge_rtp_forwarded_bytes_total",
		"RTP payload bytes written to subscribers.")
	descKeyframes = newDesc("citybridge_keyframe_requests_total",
		"Keyframe requests (PLI) sent to publishers after throttling.")
	descCachedKeyframes = newDesc("citybridge_keyframes_from_cache_total",
		"Subscribers started on a layer from the packet cache's newest keyframe instead of a keyframe request.")
	descOffersRepeated = newDesc("citybridge_subscriber_offers_repeated_total",
		"Offers on subscribing connections left unanswered for the answer timeout and made again.")
	descMalformed = newDesc("citybridge_rtp_malformed_packets_total",
		"Received RTP packets that did not parse and were dropped.")
	descRetransmitted = newDesc("citybridge_rtp_retransmitted_packets_total",
		"Packets sent again to subscribers on their NACKs, from the shared packet cache.")
	descRetransmittedTwice = newDesc("citybridge_rtp_retransmitted_twice_packets_total",
		"Retransmissions sent a second time unasked, to subscribers whose link is not congested, so that one lost copy does not cost the frame.")
	descNACKsDeclined = newDesc("citybridge_rtp_nacks_declined_total",
		"Subscribers' NACKs not answered: reason=stale for packets of a picture the subscriber has left (a layer switched away from), reason=budget for retransmissions beyond its bandwidth estimate.", "reason")
	descRtxReceived = newDesc("citybridge_rtp_publisher_retransmissions_total",
		"Retransmissions received from publishers.")
	descRtxLate = newDesc("citybridge_rtp_late_retransmissions_total",
		"Publishers' retransmissions dropped because they arrived too late to help.")
	descProbes = newDesc("citybridge_bandwidth_probes_total",
		"Bandwidth probes sent before moving a subscriber up a layer.")
	descFailedProbes = newDesc("citybridge_bandwidth_probes_failed_total",
		"Bandwidth probes that met congestion.")
	descThinned = newDesc("citybridge_rtp_thinned_packets_total",
		"VP8 packets of upper temporal layers left out for subscribers that show the video as a thumbnail (the host's wall).")
	descHidden = newDesc("citybridge_down_tracks_hidden",
		"Video copies whose subscriber does not show them (a wall tile off screen): nothing of them is forwarded.")
	descLayerChanges = newDesc("citybridge_layer_changes_total",
		"Subscribers' simulcast layer changes, pauses and resumes.")
	descForwardLatency = newHistogramDesc("citybridge_forward_latency_seconds",
		"Time from an upstream RTP packet entering the forwarding loop to its last copy written to a subscriber.")
	descSessions = newDesc("citybridge_signaling_sessions",
		"Joined signaling sessions by role.", "role")
	descAlertsActive = newDesc("citybridge_alerts_active",
		"Alerts raised and not yet cleared: bridges lost or poor, and this node cut from etcd.")
	descReconnects = newDesc("citybridge_reconnects_total",
		"Participants that came back within their reconnection grace period.")
	descShed = newDesc("citybridge_frontdoor_shed_connections_total",
		"Connections the shared TCP port closed before they reached a server: reason=full when every classification place was taken, reason=source when the sender's address had all its places, reason=timeout when one sent nothing within the first-byte deadline or was not through within the classification deadline.", "reason")

	// A node of a cluster.
	descEtcdUp = newDesc("citybridge_cluster_etcd_up",
		"1 while etcd answers this node, 0 while it does not: it refuses joins, and gives its conferences up when its lease ends.")
	descLeaseHeld = newDesc("citybridge_cluster_lease_held",
		"1 while this node's lease surely holds by its own clock (it may serve conferences), 0 otherwise.")
	descJoinsRefused = newDesc("citybridge_cluster_joins_refused_total",
		"Joins, WHIP and WHEP requests refused because this node could not reach etcd.")

	// Per bridge, from the link monitor's latest sample.
	descLinkScore = newDesc("citybridge_bridge_link_score",
		"Bridge link score from 0 to 100 (good from 80, fair from 60, poor below).", "conference", "bridge")
	descLinkState = newDesc("citybridge_bridge_link_state",
		"Bridge link state: 1 for the current one of good, fair, poor and lost, 0 for the others.",
		"conference", "bridge", "state")
	descRTT = newDesc("citybridge_bridge_rtt_seconds",
		"Bridge round-trip time.", "conference", "bridge")
	descLoss = newDesc("citybridge_bridge_loss_ratio",
		"Fraction of packets lost towards the room (down) and from it (up).", "conference", "bridge", "direction")
	descJitter = newDesc("citybridge_bridge_jitter_seconds",
		"Interarrival jitter at the room (down) and at the server (up).", "conference", "bridge", "direction")
	descRate = newDesc("citybridge_bridge_media_bytes_per_second",
		"Media rate sent to the room (down) and received from it (up).", "conference", "bridge", "direction")
	descEstimate = newDesc("citybridge_bridge_estimate_bytes_per_second",
		"Bandwidth estimate towards the room (GCC), 0 if not known.", "conference", "bridge")
	descLayer = newDesc("citybridge_bridge_layer",
		"Highest video layer served to the room: -1 none, 0 low, 1 mid, 2 high.", "conference", "bridge")
)

// linkStates are the values of citybridge_bridge_link_state's state label.
var linkStates = []string{QualityGood, QualityFair, QualityPoor, QualityLost}

type figuresCollector struct {
	o RegistryOptions
}

func (c *figuresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descTracks, descDownTracks, descReceived,
		descForwarded, descBytes, descKeyframes, descCachedKeyframes, descOffersRepeated, descMalformed, descSessions, descRetransmitted, descRetransmittedTwice, descNACKsDeclined,
		descRtxReceived, descRtxLate, descProbes, descFailedProbes, descLayerChanges, descThinned, descHidden, descForwardLatency,
		descAlertsActive, descReconnects, descShed, descEtcdUp, descLeaseHeld, descJoinsRefused, descLinkScore, descLinkState, descRTT, descLoss, descJitter,
		descRate, descEstimate, descLayer} {
		ch <- d
	}
}

func (c *figuresCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.o.Media != nil {
		m := c.o.Media()
		gauge(descPeers, float64(m.Peers))
		gauge(descTracks, float64(m.PublishedTracks))
		gauge(descDownTracks, float64(m.DownTracks))
		counter(descReceived, m.PacketsReceived)
		counter(descForwarded, m.PacketsForwarded)
		counter(descBytes, m.BytesForwarded)
		counter(descKeyframes, m.KeyframeRequests)
		counter(descCachedKeyframes, m.KeyframesFromCache)
		counter(descOffersRepeated, m.OffersRepeated)
		counter(descMalformed, m.MalformedPackets)
		counter(descRetransmitted, m.Retransmitted)
		counter(descRetransmittedTwice, m.RetransmittedTwice)
		counter(descNACKsDeclined, m.StaleNACKs, "stale")
		counter(descNACKsDeclined, m.UnaffordableNACKs, "budget")
		counter(descRtxReceived, m.RetransmissionsReceived)
		counter(descRtxLate, m.LateRetransmissions)
		counter(descProbes, m.Probes)
		counter(descFailedProbes, m.FailedProbes)
		counter(descLayerChanges, m.LayerChanges)
		counter(descThinned, m.ThinnedPackets)
		gauge(descHidden, float64(m.HiddenDownTracks))
		ch <- constHistogram(descForwardLatency, m.ForwardLatency)
	}
	if c.o.Sessions != nil {
		s := c.o.Sessions()
		for _, r := range []Role{RoleHost, RoleRoom} {
			gauge(descSessions, float64(s[r]), string(r))
		}
	}
	if c.o.AlertsActive != nil {
		gauge(descAlertsActive, float64(c.o.AlertsActive()))
	}
	if c.o.Reconnects != nil {
		counter(descReconnects, c.o.Reconnects())
	}
	if c.o.Shed != nil {
		s := c.o.Shed()
		counter(descShed, s.Full, "full")
		counter(descShed, s.Source, "source")
		counter(descShed, s.Timeout, "timeout")
	}
	if c.o.Cluster != nil {
		f := c.o.Cluster()
		gauge(descEtcdUp, one(f.EtcdUp))
		gauge(descLeaseHeld, one(f.LeaseHeld))
		counter(descJoinsRefused, f.JoinsRefused)
	}
	if c.o.Links == nil {
		return
	}
	for _, l := range c.o.Links() {
		cb := []string{l.Conference, l.Bridge}
		s := l.Sample
		gauge(descLinkScore, float64(l.Score), cb...)
		for _, st := range linkStates {
			v := 0.0
			if st == l.State {
				v = 1
			}
			gauge(descLinkState, v, l.Conference, l.Bridge, st)
		}
		gauge(descRTT, s.RTTMs/1000, cb...)
		gauge(descLoss, s.LossDown, l.Conference, l.Bridge, "down")
		gauge(descLoss, s.LossUp, l.Conference, l.Bridge, "up")
		gauge(descJitter, s.JitterDownMs/1000, l.Conference, l.Bridge, "down")
		gauge(descJitter, s.JitterUpMs/1000, l.Conference, l.Bridge, "up")
		gauge(descRate, float64(s.SentBps)/8, l.Conference, l.Bridge, "down")
		gauge(descRate, float64(s.RecvBps)/8, l.Conference, l.Bridge, "up")
		gauge(descEstimate, float64(s.EstimateBps)/8, cb...)
		gauge(descLayer, float64(s.Layer), cb...)
	}
}

// constHistogram turns h into a Prometheus histogram (cumulative buckets).
// A malformed h (counts not matching bounds) gives an empty histogram.
func constHistogram(d *prometheus.Desc, h HistogramFigures) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	if len(h.Counts) == len(h.Bounds)+1 {
		for i, b := range h.Bounds {
			n += h.Counts[i]
			buckets[b] = n
		}
		n += h.Counts[len(h.Bounds)]
	}
	return prometheus.MustNewConstHistogram(d, n, h.Sum, buckets)
}

// one is 1 for true.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
