package sfu

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// chromiumOffer is the shape of a room terminal's publishing offer
// (trimmed): audio, and video with two simulcast layers.
const chromiumOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1 cname:x\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\na=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n"

// TestOfferLimits: an offer over the size or media-section limits is
// refused before anything is parsed, and the peer still accepts a good one.
func TestOfferLimits(t *testing.T) {
	s := newTestSFU(t)
	r, err := s.Router("c1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.NewPeer("ward-001", nopListener{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	big := chromiumOffer + strings.Repeat("a=x-padding:"+strings.Repeat("z", 100)+"\r\n", MaxOfferBytes/100)
	many := chromiumOffer + strings.Repeat("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", MaxMediaSections)
	for name, sdp := range map[string]string{"size": big, "sections": many} {
		if _, err := p.AcceptOffer(sdp); !errors.Is(err, ErrOfferTooLarge) {
			t.Errorf("%s: %v, want ErrOfferTooLarge", name, err)
		}
	}
	if _, err := p.AcceptOffer(chromiumOffer); err != nil {
		t.Errorf("a terminal's offer after refused ones: %v", err)
	}
}

// TestRefusedOfferThenPublish: offers pion refuses part-way through
// applying them (no ICE credentials, a media section without a mid, no
// fingerprint) leave the peer able to publish: the participant's next,
// good offer is answered and its media reaches the SFU.
func TestRefusedOfferThenPublish(t *testing.T) {
	checkGoroutines(t)
	s := newTestSFU(t)
	r, err := s.Router("c1")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, r, "ward-001")
	for name, sdp := range map[string]string{
		"no ICE credentials": "v=0\r\n",
		"no mid":             strings.Replace(chromiumOffer, "a=mid:1\r\n", "", 1),
		"no fingerprint":     strings.ReplaceAll(chromiumOffer, "a=fingerprint:", "a=x-fingerprint:"),
	} {
		if _, err := c.peer.AcceptOffer(sdp); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	publishSynthetic(t, c, "q")
	waitFor(t, 10*time.Second, "the published track at the SFU", func() bool { return len(c.peer.Tracks()) > 0 })
	if st := c.peer.ConnectionState(Publish); st != webrtc.PeerConnectionStateConnected {
		t.Errorf("publishing connection %s after the good offer", st)
	}
}

// FuzzSDPOffer: whatever a client offers, the peer answers or refuses it
// with an error; it never panics, and a refused offer leaves the peer
// able to take the next one: after each refusal, the same peer accepts a
// terminal's offer (chromiumOffer).
func FuzzSDPOffer(f *testing.F) {
	f.Add(chromiumOffer)
	f.Add("v=0\r\n")
	f.Add(strings.Replace(chromiumOffer, "a=simulcast:send q;h", "a=simulcast:send q;h;f;x;y", 1))
	f.Add(strings.Replace(chromiumOffer, "m=video 9", "m=video 99999999999", 1))
	f.Add(strings.Replace(chromiumOffer, "a=rid:q send", "a=rid:"+strings.Repeat("q", 300)+" send", 1))
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{UDPConns: []net.PacketConn{conn}, AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, sdp string) {
		// A router of its own: nothing one input leaves behind meets the next.
		r, err := s.Router(fmt.Sprint("fuzz-", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		p, err := r.NewPeer("fuzz", nopListener{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, err := p.AcceptOffer(sdp); err != nil {
			if _, err2 := p.AcceptOffer(chromiumOffer); err2 != nil {
				t.Fatalf("a terminal's offer after a refused one (%v): %v", err, err2)
			}
			return
		}
		// Accepted: offered again, as a re-negotiation. Refused, the peer
		// keeps what it negotiated, so the good offer is not retried here:
		// it may rightly be refused as a re-offer of different sections.
		_, _ = p.AcceptOffer(sdp)
	})
}
