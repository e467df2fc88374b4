// Package sfu is citybridge's media plane: routers of published tracks, one
// per conference; peers with a publishing and a subscribing peer connection;
// per-subscriber down tracks that choose a simulcast layer and rewrite
// packets so each subscriber sees one continuous stream; throttled keyframe
// requests. It knows pion and nothing of people, roles or HTTP.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// Config sets up an SFU. Only UDPConns is required.
type Config struct {
	// UDPConns are the sockets all media flows through (ICE UDP mux): one
	// per local address, all on the same port (see ListenUDP). The SFU owns
	// them from New on and closes them in Close.
	UDPConns []net.PacketConn
	// TCPListener, when set, carries ICE-TCP (RFC 6544, passive): media
	// for terminals whose UDP is blocked. Usually FrontDoor.ICE(), which
	// shares the HTTPS port. The SFU closes it in Close.
	TCPListener net.Listener
	// PublicIPs, when set, replace the addresses announced in ICE host
	// candidates (the address on the city network, a LAN address...).
	PublicIPs []string
	// AllowedNetworks, when set, restricts media peers to these networks:
	// remote candidates elsewhere are ignored and packets from elsewhere are
	// dropped before ICE sees them.
	AllowedNetworks []netip.Prefix
	// KeyframeInterval is the shortest time between two keyframe requests
	// for the same upstream layer (default 550 ms: at most two a second,
	// whatever the network does to their spacing).
	KeyframeInterval time.Duration
	// LayerRefresh is how often layer bitrates are measured and every
	// subscriber's layers re-allocated (default 250 ms).
	LayerRefresh time.Duration
	// AnswerTimeout is how long the SFU waits for a participant's answer
	// to its offer on the subscribing connection before it takes the offer
	// back and offers again (default 10 s). An offer left unanswered (a
	// page whose handling of it failed) would otherwise keep every later
	// track from that participant for as long as it stays connected.
	AnswerTimeout time.Duration
	// VideoCodec restricts the video codec publishers may send and
	// subscribers receive: VideoCodecVP8, VideoCodecH264, or
	// VideoCodecAny (both; browsers then send VP8). The SFU never
	// transcodes, so a deployment whose terminals decode only H.264 sets
	// VideoCodecH264.
	VideoCodec string
	// FanoutWorkers is how many goroutines help a read loop copy a packet
	// to a large set of subscribers (64 down tracks or more): 0 is one fewer
	// than the CPUs Go may use, at most 7 (none on one CPU); negative is
	// none, every fan-out on its read loop alone.
	FanoutWorkers int
	// Logger receives the SFU's logs and pion's (default slog.Default()).
	Logger *slog.Logger
}

// SFU holds what every router shares: the pion APIs, the UDP mux and the
// counters behind the metrics.
type SFU struct {
	cfg    Config
	log    *slog.Logger
	se     webrtc.SettingEngine // each peer's copy gets its own logger
	pubKit apiKit
	subKit apiKit
	mux    ice.UDPMux
	tcpMux ice.TCPMux
	stats  counters
	clock  func() int64
	fan    *fanPool // nil: no fan-out workers

	mu      sync.Mutex
	routers map[string]*Router
	closed  bool
}

// counters are the SFU-wide figures; each is updated at most once per
// received packet, never once per subscriber.
type counters struct {
	peers                   atomic.Int64
	tracks                  atomic.Int64
	downTracks              atomic.Int64
	packetsReceived         atomic.Uint64
	packetsForwarded        atomic.Uint64
	bytesForwarded          atomic.Uint64
	keyframeRequests        atomic.Uint64
	keyframesFromCache      atomic.Uint64 // subscribers started from a cached keyframe instead
	offersRepeated          atomic.Uint64 // subscriber offers taken back unanswered and made again
	malformed               atomic.Uint64
	retransmitted           atomic.Uint64 // packets sent again on subscribers' NACKs
	retransmittedTwice      atomic.Uint64 // of those, sent a second time unasked
	staleNACKs              atomic.Uint64 // NACKs declined: the packet's picture was left behind
	unaffordableNACKs       atomic.Uint64 // NACKs declined: over the subscriber's retransmission budget
	retransmissionsReceived atomic.Uint64 // from publishers, on their RTX streams
	lateRetransmissions     atomic.Uint64 // of those, dropped as too late to help
	probes                  atomic.Uint64
	failedProbes            atomic.Uint64
	layerSwitches           atomic.Uint64 // allocation changes (up, down, pause, resume)
	thinned                 atomic.Uint64 // VP8 packets of upper temporal layers left out (temporal.go)
	forwardLatency          latencyHistogram
}

// Stats is a snapshot of the SFU's counters.
type Stats struct {
	Routers          int
	Peers            int64
	Tracks           int64
	DownTracks       int64
	PacketsReceived  uint64
	PacketsForwarded uint64
	BytesForwarded   uint64
	KeyframeRequests uint64
	// KeyframesFromCache counts subscribers started on a layer from the
	// packet cache's newest keyframe instead of a keyframe request.
	KeyframesFromCache uint64
	MalformedPackets   uint64
	// OffersRepeated counts offers on subscribing connections that went
	// unanswered for Config.AnswerTimeout and were made again.
	OffersRepeated uint64
	// Retransmitted counts packets sent again on subscribers' NACKs, and
	// RetransmittedTwice those of them sent a second time unasked, so that
	// one lost retransmission does not cost the frame (see
	// DownTrack.sendAgain).
	Retransmitted      uint64
	RetransmittedTwice uint64
	// StaleNACKs counts NACKs not answered because the packet belongs to a
	// picture the subscriber has left (a layer switched away from), and
	// UnaffordableNACKs those over the subscriber's retransmission budget
	// (see Peer.spendOnRetransmission).
	StaleNACKs        uint64
	UnaffordableNACKs uint64
	// RetransmissionsReceived counts publishers' retransmissions, and
	// LateRetransmissions those dropped as arriving too late to help.
	RetransmissionsReceived uint64
	LateRetransmissions     uint64
	// Probes counts bandwidth probes sent before moving a subscriber up a
	// layer; FailedProbes those that met congestion.
	Probes       uint64
	FailedProbes uint64
	// LayerChanges counts allocation changes: up, down, pause, resume.
	LayerChanges uint64
	// ThinnedPackets counts VP8 packets of upper temporal layers left out
	// for subscribers that show the video small (temporal.go).
	ThinnedPackets uint64
	// HiddenDownTracks counts video down tracks whose subscribers do not
	// show them (LayerOff): nothing of them is forwarded.
	HiddenDownTracks int64
	// ForwardLatency is the time from an upstream packet entering the
	// forwarding loop to its last copy written to a subscriber.
	ForwardLatency LatencyHistogram
}

// ErrClosed is returned when the SFU or a router has been closed.
var ErrClosed = errors.New("sfu: closed")

// New builds an SFU on cfg.UDPConn.
func New(cfg Config) (*SFU, error) {
	if len(cfg.UDPConns) == 0 {
		return nil, errors.New("sfu: Config.UDPConns is required")
	}
	if cfg.KeyframeInterval <= 0 {
		cfg.KeyframeInterval = 550 * time.Millisecond
	}
	if cfg.LayerRefresh <= 0 {
		cfg.LayerRefresh = 250 * time.Millisecond
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// What can fail on the configuration fails before the sockets are
	// wrapped and handed to the ICE muxes.
	video, ok := videoCodecsFor(cfg.VideoCodec)
	if !ok {
		return nil, fmt.Errorf("sfu: unknown video codec %q (want %q, %q or none for both)", cfg.VideoCodec, VideoCodecVP8, VideoCodecH264)
	}
	pubKit, err := newPublishKit(video)
	if err != nil {
		return nil, err
	}
	subKit, err := newSubscribeKit(video)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	s := &SFU{
		pubKit:  pubKit,
		subKit:  subKit,
		cfg:     cfg,
		log:     cfg.Logger,
		clock:   func() int64 { return int64(time.Since(start)) },
		routers: map[string]*Router{},
	}
	lf := slogFactory{cfg.Logger}
	muxes := make([]ice.UDPMux, 0, len(cfg.UDPConns))
	for _, conn := range cfg.UDPConns {
		conn = mediaSocket(conn, cfg.AllowedNetworks, cfg.Logger)
		muxes = append(muxes, webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), conn))
	}
	s.mux = ice.NewMultiUDPMuxDefault(muxes...)

	var se webrtc.SettingEngine
	se.LoggerFactory = lf
	se.SetICEUDPMux(s.mux)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.TCPListener != nil {
		ln := cfg.TCPListener
		if len(cfg.AllowedNetworks) > 0 {
			ln = &filterListener{Listener: ln, allowed: cfg.AllowedNetworks}
		}
		// ICE-TCP candidates have a lower priority than UDP ones, so a
		// terminal uses TCP only when UDP does not get through.
		s.tcpMux = webrtc.NewICETCPMux(lf.NewLogger("tcpmux"), ln, tcpReadQueue)
		se.SetICETCPMux(s.tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	// A terminal whose line drops shows as reconnecting within about 3 s
	// (the technicians' view, and the start of its grace period). Rooms
	// send audio every 20 ms and RTCP every second, so 3 s of silence is
	// a real interruption; keepalives every second keep idle paths
	// fresh. Failed after 20 s, well inside the 30 s grace period.
	se.SetICETimeouts(3*time.Second, 20*time.Second, time.Second)
	// AES-GCM first: about five times cheaper per packet than CM-HMAC-SHA1.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if len(cfg.AllowedNetworks) > 0 {
		se.SetRemoteIPFilter(func(ip net.IP) bool { return allowed(cfg.AllowedNetworks, ip) })
		se.SetIPFilter(func(ip net.IP) bool { return allowed(cfg.AllowedNetworks, ip) })
	}
	if len(cfg.PublicIPs) > 0 && !boundToPublic(cfg.UDPConns, cfg.PublicIPs) {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			_ = s.mux.Close() // and the sockets, with their duplicates (sendConn)
			if s.tcpMux != nil {
				_ = s.tcpMux.Close()
			}
			return nil, err
		}
	}
	s.se = se
	s.fan = newFanPool(fanWorkers(cfg.FanoutWorkers))
	return s, nil
}

// Router returns the router with this id, creating it on first use.
func (s *SFU) Router(id string) (*Router, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if r, ok := s.routers[id]; ok {
		return r, nil
	}
	r := newRouter(s, id)
	s.routers[id] = r
	return r, nil
}

func (s *SFU) forgetRouter(r *Router) {
	s.mu.Lock()
	if s.routers[r.id] == r {
		delete(s.routers, r.id)
	}
	s.mu.Unlock()
}

// Stats returns a snapshot of the SFU-wide counters.
func (s *SFU) Stats() Stats {
	s.mu.Lock()
	n := len(s.routers)
	routers := make([]*Router, 0, n)
	for _, r := range s.routers {
		routers = append(routers, r)
	}
	s.mu.Unlock()
	var hidden int64
	for _, r := range routers {
		for _, p := range r.Peers() {
			for _, d := range p.DownTracks() {
				if d.Hidden() {
					hidden++
				}
			}
		}
	}
	return Stats{
		Routers:          n,
		Peers:            s.stats.peers.Load(),
		Tracks:           s.stats.tracks.Load(),
		DownTracks:       s.stats.downTracks.Load(),
		PacketsReceived:  s.stats.packetsReceived.Load(),
		PacketsForwarded: s.stats.packetsForwarded.Load(),
		BytesForwarded:   s.stats.bytesForwarded.Load(),
		KeyframeRequests: s.stats.keyframeRequests.Load(),
		MalformedPackets: s.stats.malformed.Load(),

		KeyframesFromCache:      s.stats.keyframesFromCache.Load(),
		OffersRepeated:          s.stats.offersRepeated.Load(),
		Retransmitted:           s.stats.retransmitted.Load(),
		RetransmittedTwice:      s.stats.retransmittedTwice.Load(),
		StaleNACKs:              s.stats.staleNACKs.Load(),
		UnaffordableNACKs:       s.stats.unaffordableNACKs.Load(),
		RetransmissionsReceived: s.stats.retransmissionsReceived.Load(),
		LateRetransmissions:     s.stats.lateRetransmissions.Load(),
		Probes:                  s.stats.probes.Load(),
		FailedProbes:            s.stats.failedProbes.Load(),
		LayerChanges:            s.stats.layerSwitches.Load(),
		ThinnedPackets:          s.stats.thinned.Load(),
		HiddenDownTracks:        hidden,
		ForwardLatency:          s.stats.forwardLatency.snapshot(),
	}
}

// LocalAddrs are the addresses of the media sockets.
func (s *SFU) LocalAddrs() []net.Addr {
	out := make([]net.Addr, 0, len(s.cfg.UDPConns))
	for _, c := range s.cfg.UDPConns {
		out = append(out, c.LocalAddr())
	}
	return out
}

// Ports are the media sockets' UDP ports (one port unless ListenUDP was
// asked for port 0).
func (s *SFU) Ports() []int {
	var out []int
	for _, c := range s.cfg.UDPConns {
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && !slices.Contains(out, ua.Port) {
			out = append(out, ua.Port)
		}
	}
	return out
}

// ListenUDP opens the media sockets on port: on host if it is given, else
// one per address of this machine's interfaces that are up (loopback
// included), so that every reply leaves from the address the peer wrote
// to. Port 0 picks a free port (one per socket).
func ListenUDP(host string, port int) ([]net.PacketConn, error) {
	if host != "" {
		addr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, err
		}
		c, err := net.ListenUDP("udp", addr)
		if err != nil {
			return nil, err
		}
		growBuffers(c)
		return []net.PacketConn{c}, nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var conns []net.PacketConn
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsLinkLocalMulticast() {
				continue
			}
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ipn.IP, Port: port})
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return nil, fmt.Errorf("media port on %s: %w", ipn.IP, err)
			}
			growBuffers(c)
			conns = append(conns, c)
		}
	}
	if len(conns) == 0 {
		return nil, errors.New("no network interface to listen on")
	}
	return conns, nil
}

// Close closes every router and the media socket.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rs := make([]*Router, 0, len(s.routers))
	for _, r := range s.routers {
		rs = append(rs, r)
	}
	s.mu.Unlock()
	for _, r := range rs {
		r.Close()
	}
	s.fan.close()
	if s.tcpMux != nil {
		_ = s.tcpMux.Close()
	}
	return s.mux.Close()
}

// socketBuffer is what the media sockets ask the kernel for: one socket
// carries every peer, and a keyframe burst to 116 rooms is thousands of
// packets. The kernel caps it at net.core.rmem_max / wmem_max.
const socketBuffer = 8 << 20

// tcpReadQueue is how many packets each ICE-TCP connection (one per
// peer connection, made whether TCP is used or not) queues for its ICE
// agent. A full queue holds the TCP stream back; nothing is dropped. pion
// allocates the queue up front: at 8,192 entries it was 448 KiB a
// connection, a third of the live heap with 116 rooms (make soak, 2026-12-06).
const tcpReadQueue = 64

func growBuffers(c *net.UDPConn) {
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
}

func allowed(nets []netip.Prefix, ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// boundToPublic says whether the media sockets are bound to exactly the
// announced addresses, when rewriting them would change nothing. pion's
// rewrite drops the UDP host candidate in that case for some addresses
// (seen with 169.254.0.0/16 ones), so it is left out.
func boundToPublic(conns []net.PacketConn, public []string) bool {
	bound := map[string]bool{}
	for _, c := range conns {
		ua, ok := c.LocalAddr().(*net.UDPAddr)
		if !ok || ua.IP.IsUnspecified() {
			return false
		}
		bound[ua.IP.String()] = true
	}
	want := map[string]bool{}
	for _, p := range public {
		ip := net.ParseIP(p)
		if ip == nil {
			return false
		}
		want[ip.String()] = true
	}
	return maps.Equal(bound, want)
}

// mediaSocket is conn as the ICE UDP mux gets it: a sendConn where the
// system has one, else conn kept to the allowed networks.
func mediaSocket(conn net.PacketConn, allowed []netip.Prefix, log *slog.Logger) net.PacketConn {
	if uc, ok := conn.(*net.UDPConn); ok {
		sc, err := newSendConn(uc, allowed)
		if err == nil {
			return sc
		}
		log.Debug("media socket: writes take the runtime's lock", "addr", uc.LocalAddr().String(), "err", err)
	}
	if len(allowed) > 0 {
		return &filterConn{PacketConn: conn, allowed: allowed}
	}
	return conn
}

// filterConn drops datagrams from, and refuses datagrams to, addresses
// outside the allowed networks, so no peer-reflexive candidate can lead the
// SFU to talk to a host it was not meant to.
type filterConn struct {
	net.PacketConn
	allowed []netip.Prefix
}

func (c *filterConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || c.ok(addr) {
			return n, addr, err
		}
	}
}

func (c *filterConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !c.ok(addr) {
		return 0, errors.New("sfu: destination outside the allowed networks")
	}
	return c.PacketConn.WriteTo(b, addr)
}

func (c *filterConn) ok(addr net.Addr) bool {
	ua, isUDP := addr.(*net.UDPAddr)
	return isUDP && allowed(c.allowed, ua.IP)
}

// filterListener closes ICE-TCP connections from outside the allowed
// networks before ICE reads a byte of them.
type filterListener struct {
	net.Listener
	allowed []netip.Prefix
}

func (l *filterListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok && allowed(l.allowed, ta.IP) {
			return c, nil
		}
		_ = c.Close()
	}
}
