package controlplane

import (
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

	Retransmitted           uint64 // packets sent again on subscribers' NACKs
	RetransmissionsReceived uint64 // publishers' retransmissions received
	LateRetransmissions     uint64 // of those, dropped as too late to help
	Probes                  uint64 // bandwidth probes before moving a room up a layer
	FailedProbes            uint64
	LayerChanges            uint64 // subscribers' layer changes, pauses and resumes
}

// SessionFigures counts signaling sessions by role.
type SessionFigures map[Role]int

// NewRegistry builds the server's own Prometheus registry: Go runtime and
// process collectors plus citybridge's figures, read when scraped.
func NewRegistry(media func() MediaFigures, sessions func() SessionFigures) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&figuresCollector{media: media, sessions: sessions},
	)
	return reg
}

var (
	descPeers = prometheus.NewDesc("citybridge_peers",
		"Participants with media connections in the SFU.", nil, nil)
	descTracks = prometheus.NewDesc("citybridge_published_tracks",
		"Tracks being published (a simulcast camera counts once).", nil, nil)
	descDownTracks = prometheus.NewDesc("citybridge_down_tracks",
		"Per-subscriber copies of published tracks.", nil, nil)
	descReceived = prometheus.NewDesc("citybridge_rtp_packets_received_total",
		"RTP packets received from publishers.", nil, nil)
	descForwarded = prometheus.NewDesc("citybridge_rtp_packets_forwarded_total",
		"RTP packets written to subscribers (one per copy).", nil, nil)
	descBytes = prometheus.NewDesc("citybridge_rtp_forwarded_bytes_total",
		"RTP payload bytes written to subscribers.", nil, nil)
	descKeyframes = prometheus.NewDesc("citybridge_keyframe_requests_total",
		"Keyframe requests (PLI) sent to publishers after throttling.", nil, nil)
	descMalformed = prometheus.NewDesc("citybridge_rtp_malformed_packets_total",
		"Received RTP packets that did not parse and were dropped.", nil, nil)
	descRetransmitted = prometheus.NewDesc("citybridge_rtp_retransmitted_packets_total",
		"Packets sent again to subscribers on their NACKs, from the shared packet cache.", nil, nil)
	descRtxReceived = prometheus.NewDesc("citybridge_rtp_publisher_retransmissions_total",
		"Retransmissions received from publishers.", nil, nil)
	descRtxLate = prometheus.NewDesc("citybridge_rtp_late_retransmissions_total",
		"Publishers' retransmissions dropped because they arrived too late to help.", nil, nil)
	descProbes = prometheus.NewDesc("citybridge_bandwidth_probes_total",
		"Bandwidth probes sent before moving a subscriber up a layer.", nil, nil)
	descFailedProbes = prometheus.NewDesc("citybridge_bandwidth_probes_failed_total",
		"Bandwidth probes that met congestion.", nil, nil)
	descLayerChanges = prometheus.NewDesc("citybridge_layer_changes_total",
		"Subscribers' simulcast layer changes, pauses and resumes.", nil, nil)
	descSessions = prometheus.NewDesc("citybridge_signaling_sessions",
		"Joined signaling sessions by role.", []string{"role"}, nil)
)

type figuresCollector struct {
	media    func() MediaFigures
	sessions func() SessionFigures
}

func (c *figuresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descTracks, descDownTracks, descReceived,
		descForwarded, descBytes, descKeyframes, descMalformed, descSessions, descRetransmitted,
		descRtxReceived, descRtxLate, descProbes, descFailedProbes, descLayerChanges} {
		ch <- d
	}
}

func (c *figuresCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.media()
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descPeers, m.Peers)
	gauge(descTracks, m.PublishedTracks)
	gauge(descDownTracks, m.DownTracks)
	counter(descReceived, m.PacketsReceived)
	counter(descForwarded, m.PacketsForwarded)
	counter(descBytes, m.BytesForwarded)
	counter(descKeyframes, m.KeyframeRequests)
	counter(descMalformed, m.MalformedPackets)
	counter(descRetransmitted, m.Retransmitted)
	counter(descRtxReceived, m.RetransmissionsReceived)
	counter(descRtxLate, m.LateRetransmissions)
	counter(descProbes, m.Probes)
	counter(descFailedProbes, m.FailedProbes)
	counter(descLayerChanges, m.LayerChanges)
	s := c.sessions()
	for _, r := range []Role{RoleHost, RoleRoom} {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(s[r]), string(r))
	}
}
