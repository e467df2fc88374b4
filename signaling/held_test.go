package signaling

import (
	"io"
	"log/slog"
	"testing"

	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/pion/webrtc/v4"
)

// TestMediaWaitsForJoined: what a member's media say before its join is
// answered (an offer of a track another bridge published meanwhile, a
// candidate, a layer) reaches the client after joined, in order; a
// terminal takes an offer that comes first as one for the media
// connections it had before the join (after a failover, every room
// started over again and again on it).
func TestMediaWaitsForJoined(t *testing.T) {
	ss := &session{out: make(chan []byte, 16), done: make(chan struct{}), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ss.OnOffer("first offer")
	ss.OnCandidate(sfu.Subscribe, webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host"})
	if n := len(ss.out); n != 0 {
		t.Fatalf("%d messages sent before joined", n)
	}
	ss.sendJoined(wire.Joined{Participant: "commune-001"})
	ss.OnOffer("second offer")
	var got []string
	for len(ss.out) > 0 {
		m, err := wire.Decode(<-ss.out)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *wire.Offer:
			got = append(got, "offer "+m.SDP)
		default:
			got = append(got, m.MessageType())
		}
	}
	want := []string{wire.TypeJoined, "offer first offer", wire.TypeCandidate, "offer second offer"}
	if len(got) != len(want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sent %q, want %q", got, want)
		}
	}

	// A WHIP or WHEP session has nobody to tell: nothing is kept for it.
	whip := &session{headless: headlessWHIP, out: make(chan []byte, 1), done: make(chan struct{}), log: ss.log}
	whip.OnOffer("offer")
	if len(whip.held) != 0 || len(whip.out) != 0 {
		t.Errorf("a headless session kept %d messages and queued %d", len(whip.held), len(whip.out))
	}
}
