package sfu

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/webrtc/v4"
)

// candidateRecorder is a PeerListener that keeps the SFU's candidates and
// gives them to nobody: nothing is ever sent to the addresses they name.
type candidateRecorder struct {
	mu    sync.Mutex
	cands []string
}

func (c *candidateRecorder) OnOffer(string) {}
func (c *candidateRecorder) OnCandidate(_ PC, cand webrtc.ICECandidateInit) {
	c.mu.Lock()
	c.cands = append(c.cands, cand.Candidate)
	c.mu.Unlock()
}
func (c *candidateRecorder) OnConnectionState(PC, webrtc.PeerConnectionState) {}

// TestPublicIPsAnnounced: with --public-ip given twice, the SFU's host
// candidates name exactly those addresses, on the media port, and not the
// address the socket is bound to.
func TestPublicIPsAnnounced(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	s, err := New(Config{UDPConns: []net.PacketConn{conn}, PublicIPs: []string{"10.99.0.1", "10.99.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Router("c")
	if err != nil {
		t.Fatal(err)
	}
	rec := &candidateRecorder{}
	p, err := r.NewPeer("ward-001", rec)
	if err != nil {
		t.Fatal(err)
	}
	api, err := sfutest.ClientAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AcceptOffer(offer.SDP); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"10.99.0.1": false, "10.99.0.2": false}
	waitFor(t, 5*time.Second, "both public addresses announced", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, c := range rec.cands {
			f := strings.Fields(c)
			if len(f) < 8 {
				continue
			}
			if _, ok := want[f[4]]; ok && f[5] == strconv.Itoa(port) && f[7] == "host" {
				want[f[4]] = true
			}
		}
		return want["10.99.0.1"] && want["10.99.0.2"]
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, c := range rec.cands {
		if strings.Contains(c, "127.0.0.1") {
			t.Errorf("the bound address leaked into a candidate: %s", c)
		}
	}
	p.Close()
}
