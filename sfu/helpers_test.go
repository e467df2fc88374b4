package sfu

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/webrtc/v4"
)

// newTestSFU starts an SFU on a loopback UDP port that talks to loopback
// peers only.
func newTestSFU(t *testing.T) *SFU {
	t.Helper()
	return newTestSFUWith(t, func(*Config) {})
}

// newTestSFUWith is newTestSFU after letting edit change its configuration.
func newTestSFUWith(t *testing.T, edit func(*Config)) *SFU {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		UDPConns:        []net.PacketConn{conn},
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
	edit(&cfg)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// client is a synthetic participant connected in-process to a Peer: its
// publishing connection offers to the SFU, its subscribing connection
// answers the SFU's offers. It implements PeerListener.
type client struct {
	t    *testing.T
	peer *Peer
	pub  *webrtc.PeerConnection
	sub  *webrtc.PeerConnection

	mu      sync.Mutex
	ready   map[PC]bool
	pending map[PC][]webrtc.ICECandidateInit
	errs    chan error

	offers     atomic.Int32 // the SFU's offers received
	offerSDPs  []string     // and their SDPs, under mu
	dropOffers atomic.Int32 // how many of the next offers to leave unanswered
}

func newClient(t *testing.T, r *Router, id string) *client {
	t.Helper()
	return newClientWith(t, r, id, PeerOptions{})
}

// newClientWith is newClient with peer options (a hub's start estimate).
func newClientWith(t *testing.T, r *Router, id string, opts PeerOptions) *client {
	t.Helper()
	api, err := sfutest.ClientAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, ready: map[PC]bool{}, pending: map[PC][]webrtc.ICECandidateInit{}, errs: make(chan error, 8)}
	if c.pub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	if c.sub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	if c.peer, err = r.NewPeerWith(id, c, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.peer.Close()
		_ = c.pub.Close()
		_ = c.sub.Close()
	})
	return c
}

// publish sends the client's offer (with all its candidates) and applies
// the SFU's answer.
// publishSynthetic makes c publish synthetic video on the given simulcast
// rids, under its peer's ID, and starts sending. The test's cleanup closes
// c's publishing connection, then stops the publisher (closing first
// unblocks its RTCP readers).
func publishSynthetic(t *testing.T, c *client, rids ...string) *sfutest.Publisher {
	t.Helper()
	pub, err := sfutest.NewPublisher(c.pub, c.peer.ID(), rids, false)
	if err != nil {
		t.Fatal(err)
	}
	c.publish()
	pub.Start()
	t.Cleanup(pub.Stop)
	t.Cleanup(func() { _ = c.pub.Close() })
	return pub
}

func (c *client) publish() {
	c.t.Helper()
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pub)
	if err := c.pub.SetLocalDescription(offer); err != nil {
		c.t.Fatal(err)
	}
	<-gathered
	answer, err := c.peer.AcceptOffer(c.pub.LocalDescription().SDP)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatal(err)
	}
	c.setReady(Publish)
}

func (c *client) setReady(pc PC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready[pc] = true
	for _, cand := range c.pending[pc] {
		c.addCandidate(pc, cand)
	}
	c.pending[pc] = nil
}

func (c *client) addCandidate(pc PC, cand webrtc.ICECandidateInit) {
	target := c.pub
	if pc == Subscribe {
		target = c.sub
	}
	if err := target.AddICECandidate(cand); err != nil {
		c.report(err)
	}
}

func (c *client) report(err error) {
	select {
	case c.errs <- err:
	default:
	}
}

func (c *client) OnOffer(sdp string) {
	c.offers.Add(1)
	c.mu.Lock()
	c.offerSDPs = append(c.offerSDPs, sdp)
	c.mu.Unlock()
	if c.dropOffers.Add(-1) >= 0 {
		return // lost: as a page whose handling of it failed
	}
	go func() {
		if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
			c.report(err)
			return
		}
		answer, err := c.sub.CreateAnswer(nil)
		if err != nil {
			c.report(err)
			return
		}
		gathered := webrtc.GatheringCompletePromise(c.sub)
		if err := c.sub.SetLocalDescription(answer); err != nil {
			c.report(err)
			return
		}
		<-gathered
		if err := c.peer.AcceptAnswer(c.sub.LocalDescription().SDP); err != nil {
			c.report(err)
			return
		}
		c.setReady(Subscribe)
	}()
}

func (c *client) OnCandidate(pc PC, cand webrtc.ICECandidateInit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready[pc] {
		c.pending[pc] = append(c.pending[pc], cand)
		return
	}
	c.addCandidate(pc, cand)
}

func (c *client) OnConnectionState(PC, webrtc.PeerConnectionState) {}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkGoroutines fails the test if goroutines started during it are still
// running a few seconds after its cleanups.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// threeLayerHub opens a router named conf in s with a synthetic hub
// publishing f, h and q, and returns the router, the hub's video track
// once all three layers arrive, and the publisher.
func threeLayerHub(t *testing.T, s *SFU, conf string) (*Router, *Track, *sfutest.Publisher) {
	t.Helper()
	r := openRouter(t, s, conf)
	var hubTrack atomic.Pointer[Track]
	r.OnTrack(func(_ *Peer, tr *Track) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			hubTrack.Store(tr)
		}
	})
	pub := publishSynthetic(t, newClient(t, r, "hub"), "f", "h", "q")
	waitFor(t, 20*time.Second, "the hub's three layers", func() bool {
		tr := hubTrack.Load()
		return tr != nil && tr.activeLayers() == 0b111
	})
	return r, hubTrack.Load(), pub
}

// newTestRouter starts an SFU as newTestSFUWith does (edit may be nil) and
// opens conference on it, closed at the test's end.
func newTestRouter(t *testing.T, conference string, edit func(*Config)) (*SFU, *Router) {
	t.Helper()
	if edit == nil {
		edit = func(*Config) {}
	}
	s := newTestSFUWith(t, edit)
	return s, openRouter(t, s, conference)
}

// openRouter opens conference on s, closed at the test's end.
func openRouter(t *testing.T, s *SFU, conference string) *Router {
	t.Helper()
	r, err := s.Router(conference)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// subscribeVideo subscribes c, at layer, to every video track published
// in r from now on.
func subscribeVideo(t *testing.T, r *Router, c *client, layer int) {
	r.OnTrack(func(_ *Peer, tr *Track) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		if _, err := c.peer.Subscribe(tr, layer); err != nil {
			t.Error(err)
		}
	})
}
