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
	descSessions = prometheus.NewDesc("citybridge_signaling_sessions",
		"Joined signaling sessions by role.", []string{"role"}, nil)
)

type figuresCollector struct {
	media    func() MediaFigures
	sessions func() SessionFigures
}

func (c *figuresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descTracks, descDownTracks, descReceived,
		descForwarded, descBytes, descKeyframes, descMalformed, descSessions} {
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
	s := c.sessions()
	for _, r := range []Role{RoleHost, RoleRoom} {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(s[r]), string(r))
	}
}
