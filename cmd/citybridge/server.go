package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/controlplane"
	"citybridge/deploy"
	"citybridge/sfu"
	"citybridge/signaling"
	"citybridge/web"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// demoTitle is the seeded conference's title (the users read Vietnamese).
const demoTitle = "Hội nghị trực tuyến thử nghiệm"

// server is one running citybridge: store, SFU, signaling and the HTTPS
// front door, wired together.
type server struct {
	cfg   Config
	log   *slog.Logger
	store *controlplane.Store
	media *sfu.SFU
	sig   *signaling.Server
	mon   *controlplane.Monitor
	http  *http.Server
	addr  net.Addr
	front *sfu.FrontDoor
	// origins are the pages allowed to use a login cookie and the
	// signaling WebSocket: this server's own, and --allowed-origin.
	origins *controlplane.Origins
	certs   *certStore
	// turn is the embedded TURN server (nil when off or external);
	// turnURLs and turnSecret are what pages are given at join.
	turn       *sfu.TURNServer
	turnURLs   []string
	turnSecret string
	ready      atomic.Bool
	// demo is set when this start seeded an empty store.
	demo *controlplane.Demo
	// node is this server's part in a cluster (nil on one machine);
	// sigReady passes its lost conferences to the signaling server.
	node        *controlplane.Node
	sigReady    sigPointer
	nodeOrigins atomic.Pointer[map[string]bool] // the live nodes' origins
	process     string                          // this process in the store's records of who served what
	nodeInfos   atomic.Pointer[[]controlplane.NodeInfo]
	// peerTransport carries requests to other nodes (peers.go).
	peerTransport *http.Transport
	started       time.Time
	technicians   recentTokens // technician tokens lately checked, for /metrics while etcd is out of reach

	stop     chan struct{} // closed by Close: background loops end
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// heartbeatEvery is how often the store records that the server is alive:
// after a crash, open attendance intervals end at the last heartbeat.
const heartbeatEvery = 2 * time.Second

// heartbeat records that the server is alive (a node: this process).
func (s *server) heartbeat() {
	var err error
	if s.node != nil {
		err = s.store.HeartbeatProcess(s.process)
	} else {
		err = s.store.Heartbeat()
	}
	if err != nil {
		s.log.Error("heartbeat", "err", err)
	}
}

// every runs f every d until Close.
func (s *server) every(d time.Duration, f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

// start opens everything and begins serving; Close undoes it.
func start(cfg Config, log *slog.Logger) (_ *server, err error) {
	s := &server{cfg: cfg, log: log, started: time.Now().UTC()}
	defer func() {
		if err != nil {
			s.Close(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.Etcd.endpoints != "" {
		if err := s.joinCluster(); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	} else if s.store, err = controlplane.Open(filepath.Join(cfg.Data, "citybridge.db")); err != nil {
		return nil, err
	}
	var demo controlplane.Demo
	var seeded bool
	err = s.seedOnce(func() (err error) {
		demo, seeded, err = s.store.SeedDemo(deploy.SampleBridges, demoTitle)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("seed demo: %w", err)
	}
	if seeded {
		s.demo = &demo
		log.Info("seeded an empty store with the demo", "conference", demo.Conference.ID, "bridges", demo.Bridges)
	}
	// A registry from before bridge IDs were reserved: such a bridge no
	// longer joins (its room links are refused); say so once per start.
	if bs, err := s.store.Bridges(); err == nil {
		for _, b := range bs {
			if controlplane.ReservedBridgeID(b.ID) {
				log.Warn("a bridge has a reserved id and cannot join: remove it and add it under another id",
					"bridge", b.ID, "err", controlplane.ErrReservedBridgeID)
			}
		}
	}
	s.stop = make(chan struct{})
	// Bridges that were in when the server last stopped (or was killed)
	// get their intervals closed at its last heartbeat. A cluster's
	// other nodes go on serving theirs: no node closes them at its start.
	if s.node == nil {
		if n, err := s.store.RecoverOpen(); err != nil {
			return nil, fmt.Errorf("attendance: %w", err)
		} else if n > 0 {
			log.Info("attendance intervals closed at the last heartbeat", "intervals", n)
		}
		if err := s.store.Heartbeat(); err != nil {
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
		s.every(heartbeatEvery, s.heartbeat)
	}
	certs, generated, err := newCertStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	if generated {
		log.Info("generated a self-signed TLS certificate", "dir", cfg.Data)
	}
	s.certs = certs
	// One TCP port for HTTPS, ICE-TCP and TURN over TCP/TLS: the front
	// door tells them apart by their first bytes.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.addr = ln.Addr()
	s.front = sfu.NewFrontDoor(ln, certs.tlsConfig(), log.With("component", "frontdoor"))
	udp, err := sfu.ListenUDP(cfg.UDPHost, cfg.UDPPort)
	if err != nil {
		return nil, fmt.Errorf("media port: %w", err)
	}
	mc := sfu.Config{UDPConns: udp, PublicIPs: cfg.PublicIPs, AllowedNetworks: cfg.MediaAllow, VideoCodec: cfg.VideoCodec,
		FanoutWorkers: cfg.FanoutWorkers, Logger: log}
	// Relayed media reaches the SFU from the relay's own address: let it
	// in even when --media-allow names only the rooms' networks.
	if relay := cfg.turnAddress(); cfg.TURN && len(cfg.TURNURLs) == 0 && relay != nil && len(cfg.MediaAllow) > 0 {
		if a, ok := netip.AddrFromSlice(relay); ok {
			a = a.Unmap()
			mc.AllowedNetworks = append(slices.Clone(cfg.MediaAllow), netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if cfg.ICETCP {
		mc.TCPListener = s.front.ICE()
	}
	if s.media, err = sfu.New(mc); err != nil {
		for _, c := range udp {
			_ = c.Close()
		}
		return nil, err
	}
	s.turnSecret, s.turnURLs = cfg.TURNSecret, cfg.TURNURLs
	if err := s.startTURN(s.front); err != nil {
		return nil, err
	}
	if s.origins, err = controlplane.NewOrigins(cfg.AllowedOrigins); err != nil {
		return nil, err
	}
	if s.node != nil {
		s.refreshNodes()
		s.origins.Also(s.nodeOrigin)
		s.peerTransport = s.newPeerTransport()
	}
	s.mon = controlplane.NewMonitor(s.store, controlplane.MonitorConfig{
		LostAlertAfter: cfg.AlertLostAfter, PoorAlertAfter: cfg.AlertPoorAfter,
		WebhookURL: cfg.AlertWebhook, WebhookSecret: cfg.AlertWebhookSecret, Log: log,
	})
	sc := signaling.Config{
		Store: s.store, SFU: s.media, Logger: log, ReconnectGrace: cfg.ReconnectGrace,
		ICEServers: s.iceServers, CheckOrigin: s.origins.WebSocket, Monitor: s.mon,
		MaxViewers: cfg.MaxViewers,
		Recordings: signaling.RecordingConfig{
			Dir: cfg.recordingsDir(), MinFree: uint64(cfg.RecordingsMinFree), SegmentLength: cfg.RecordingSegment,
			LowSpace: s.recordingSpaceAlert,
			Keep:     time.Duration(cfg.RecordingsKeep), Now: cfg.recordingsClock,
		},
	}
	if s.node != nil {
		sc.Cluster = &nodeCluster{n: s.node, store: s.store, process: s.process, nodes: s.liveNodes, log: log, ttl: cfg.LeaseTTL,
			taken: map[string]int64{}, probes: map[string]probe{}, gone: map[string]chan struct{}{}}
		s.watchEtcd()
	}
	s.sig = signaling.New(sc)
	s.sigReady.Store(s.sig)
	if s.node != nil {
		s.every(3*time.Second, s.reportLoad)
		// The live nodes, every second: a terminal that joined as the
		// cluster started learns the others (the nodes message) before
		// its node can fail it.
		s.every(time.Second, s.refreshNodes)
		s.every(heartbeatEvery, s.heartbeat)
		s.every(time.Second, s.checkDrain)
	}
	s.http = &http.Server{
		Handler:           securityHeaders(s.routes(), s.connectSources),
		ReadHeaderTimeout: 10 * time.Second,
		// A request's body must arrive within a minute (a slow sender
		// holds a connection no longer). WebSockets set their own read
		// deadlines as soon as they are upgraded. No write timeout: a
		// backup download takes as long as the store is large.
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Every listener is taken before the front door serves: it closes
	// the connections of a protocol nobody took.
	web := s.front.Web()
	go func() {
		if err := s.http.Serve(web); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("https server", "err", err)
		}
	}()
	go func() {
		if err := s.front.Serve(); err != nil {
			log.Error("listener", "err", err)
		}
	}()
	s.ready.Store(true)
	log.Info("citybridge serving", "https", s.addr.String(), "media_udp", s.media.LocalAddrs(),
		"ice_tcp", cfg.ICETCP, "public_ips", cfg.PublicIPs, "turn", s.turnURLs)
	return s, nil
}

// recordingSpaceAlert raises the technicians' alert while the recordings'
// disk runs low during a recording, and clears it when space is back.
func (s *server) recordingSpaceAlert(low bool, detail string) {
	if low {
		s.mon.RaiseNodeAlert(controlplane.AlertRecordingSpace, s.cfg.Node, detail, time.Now())
	} else {
		s.mon.ClearNodeAlert(controlplane.AlertRecordingSpace)
	}
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	web.Register(mux)
	api := controlplane.NewAPI(s.store, s.presence, s.log)
	api.SetOrigins(s.origins)
	api.SetMedia(s.sig)
	api.SetFloor(s.sig)
	api.SetRecordings(s.sig)
	api.SetMinutes(s.sig)
	api.SetReadiness(controlplane.NewReadiness(s.store, s.mon, s.sig, s.log))
	api.SetMonitor(s.mon)
	// The technicians' dashboard: the links view once a second.
	// In a cluster, every node's links, gathered with the caller's credentials.
	mux.Handle("GET /api/links/live", s.sig.LinksLive(func(auth func(*http.Request)) (any, error) {
		return api.ClusterLinksView(auth)
	}))
	api.OnConferenceChange(s.sig.ConferenceChanged)
	api.SetNodes(s.nodesView)
	if s.node != nil {
		api.SetPeers(nodePeers{s})
	}
	api.Register(mux)
	mux.Handle("GET /signal", s.sig)
	// WHIP ingest (an encoder as the hub) and WHEP egress (a receive-only
	// terminal or a viewer): see signaling/whip.go.
	mux.Handle("/whip/", s.sig.WHIP())
	mux.Handle("/whep/", s.sig.WHEP())
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	// A cluster's nodes label every series with their name (docs/METRICS.md).
	var node string
	if s.node != nil {
		node = s.cfg.Node
	}
	ro := controlplane.RegistryOptions{
		Media: s.mediaFigures, Sessions: s.sig.Sessions, Links: s.links, AlertsActive: s.alertsActive,
		Reconnects: s.sig.Reconnects, Shed: s.shedFigures, Node: node,
	}
	if s.node != nil {
		ro.Cluster = s.clusterFigures
	}
	reg := controlplane.NewRegistry(ro)
	// The metrics name every bridge and conference and how their links
	// fare: for Prometheus with a technician token, or from this machine.
	mux.Handle("GET /metrics", s.technicianOrLoopback(promhttp.HandlerFor(reg,
		promhttp.HandlerOpts{Registry: controlplane.NodeRegisterer(reg, node)})))
	mux.Handle("/debug/pprof/", s.technicianOrLoopback(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", s.technicianOrLoopback(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", s.technicianOrLoopback(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", s.technicianOrLoopback(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", s.technicianOrLoopback(http.HandlerFunc(pprof.Trace)))
	return s.ownerForward(mux)
}

func (s *server) presence(conferenceID string) map[string]string {
	out := map[string]string{}
	for _, e := range s.sig.Roster(conferenceID) {
		out[e.ID] = e.State
	}
	return out
}

func (s *server) mediaFigures() controlplane.MediaFigures {
	st := s.media.Stats()
	return controlplane.MediaFigures{
		Peers: st.Peers, PublishedTracks: st.Tracks, DownTracks: st.DownTracks,
		PacketsReceived: st.PacketsReceived, PacketsForwarded: st.PacketsForwarded,
		BytesForwarded: st.BytesForwarded, KeyframeRequests: st.KeyframeRequests,
		MalformedPackets: st.MalformedPackets, KeyframesFromCache: st.KeyframesFromCache,
		OffersRepeated: st.OffersRepeated,

		Retransmitted: st.Retransmitted, RetransmittedTwice: st.RetransmittedTwice,
		StaleNACKs: st.StaleNACKs, UnaffordableNACKs: st.UnaffordableNACKs, RetransmissionsReceived: st.RetransmissionsReceived,
		LateRetransmissions: st.LateRetransmissions, Probes: st.Probes, FailedProbes: st.FailedProbes,
		LayerChanges: st.LayerChanges, ThinnedPackets: st.ThinnedPackets, HiddenDownTracks: st.HiddenDownTracks,

		ForwardLatency: latencyFigures(st.ForwardLatency),
	}
}

// shedFigures are the front door's closed connections.
func (s *server) shedFigures() controlplane.ShedFigures {
	st := s.front.Stats()
	return controlplane.ShedFigures{Full: st.ShedFull, Source: st.ShedSource, Timeout: st.TimedOut}
}

// links are the monitor's bridge links, none without a monitor.
func (s *server) links() []controlplane.BridgeLink {
	if s.mon == nil {
		return nil
	}
	return s.mon.Links()
}

// alertsActive counts the monitor's active alerts.
func (s *server) alertsActive() int {
	if s.mon == nil {
		return 0
	}
	return len(s.mon.Alerts(false))
}

// latencyFigures converts the SFU's histogram to seconds.
func latencyFigures(h sfu.LatencyHistogram) controlplane.HistogramFigures {
	f := controlplane.HistogramFigures{Bounds: make([]float64, len(h.Bounds)), Counts: h.Counts, Sum: h.Sum.Seconds()}
	for i, b := range h.Bounds {
		f.Bounds[i] = b.Seconds()
	}
	return f
}

// healthz says whether the process serves: 503 while it starts or stops,
// else 200, with status "degraded" while a cluster's node cannot reach
// etcd. A liveness probe reads it: a node cut from etcd keeps its running
// meetings until its lease ends, and restarting it would end them at once.
func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	s.health(w, false)
}

// readyz says whether the node should be given new terminals: as
// /healthz, but 503 while degraded. A readiness probe or a load balancer
// reads it, so that a node cut from etcd is taken out of rotation.
func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	s.health(w, true)
}

func (s *server) health(w http.ResponseWriter, degradedFails bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "unavailable"})
		return
	}
	st := s.media.Stats()
	body := map[string]any{"status": "ok", "version": version, "conferences": st.Routers, "peers": st.Peers}
	if s.etcdHealth(body) {
		body["status"] = "degraded"
		if degradedFails {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	_ = json.NewEncoder(w).Encode(body)
}

// technicianOrLoopback lets through requests from this machine, or with a
// technician's token (Authorization: Bearer, or ?token= for a browser).
func (s *server) technicianOrLoopback(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				next.ServeHTTP(w, r)
				return
			}
		}
		tok := controlplane.BearerToken(r)
		if tok == "" {
			tok = r.URL.Query().Get("token")
		}
		g, err := s.store.Authenticate(tok)
		if err == nil && g.Role == controlplane.RoleTechnician {
			s.technicians.saw(tok)
			next.ServeHTTP(w, r)
			return
		}
		// A node cut from etcd cannot check the token: one a technician
		// used a short while ago still reads the metrics that say so.
		if errors.Is(err, controlplane.ErrStoreUnavailable) && s.technicians.recent(tok) {
			next.ServeHTTP(w, r)
			return
		}
		s.log.Warn("technicians only: refused", "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "technicians only", http.StatusForbidden)
	})
}

// securityHeaders: the pages load nothing from elsewhere and run no inline
// script, so the policy can say exactly that. They connect to their own
// server, and in a cluster to the other nodes' signaling (connect, if
// not nil, names those sources).
func securityHeaders(next http.Handler, connect func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		sources := "'self'"
		if connect != nil {
			sources += connect()
		}
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src "+sources+"; "+
			"frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
		next.ServeHTTP(w, r)
	})
}

// baseURL is how people on the network reach the pages.
func (s *server) baseURL() string {
	host := "localhost"
	if len(s.cfg.PublicIPs) > 0 {
		host = s.cfg.PublicIPs[0]
	}
	_, port, _ := net.SplitHostPort(s.addr.String())
	return "https://" + net.JoinHostPort(host, port)
}

// Close stops serving: clients are told, sessions end, then media and the
// store close. Safe on a partly started server.
func (s *server) Close(ctx context.Context) {
	s.ready.Store(false)
	if s.stop != nil {
		s.stopOnce.Do(func() { close(s.stop) })
		s.wg.Wait()
	}
	// A node hands its conferences over first: each goes to another node
	// and its terminals are sent straight there.
	if s.node != nil {
		if s.sig != nil {
			s.handOverAll("stopping")
		}
		if err := s.node.Leave(); err != nil {
			s.log.Warn("cluster: leave", "err", err)
		}
	}
	if s.sig != nil {
		s.sig.Close()
	}
	if s.mon != nil {
		s.mon.Close()
	}
	if s.front != nil {
		_ = s.front.Close()
	}
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			s.log.Warn("https shutdown", "err", err)
		}
	}
	if s.turn != nil {
		_ = s.turn.Close()
	}
	if s.peerTransport != nil {
		s.peerTransport.CloseIdleConnections()
	}
	if s.media != nil {
		_ = s.media.Close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
}

var version = "dev"
