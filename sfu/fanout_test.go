package sfu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/webrtc/v4"
)

// TestConferenceFanOut joins a hub and 24 rooms at once, in one process,
// with the policy of the foundation: every room receives the hub's camera,
// the hub receives every room's low layer. It checks that renegotiation
// under many simultaneous track changes converges: every room receives the
// hub's video, and the hub gets every room. (116 rooms pass the
// same way without the race detector; under it this 2-core machine runs
// out of CPU first, so CI uses 24.)
func TestConferenceFanOut(t *testing.T) {
	checkGoroutines(t)
	const rooms = 24
	s, r := newTestRouter(t, "conf-fanout", nil)

	var (
		mu      sync.Mutex
		clients = map[string]*client{}
	)
	var hubTracks, roomsFed atomic.Int64
	// The hub starts its estimate where signaling starts it (30 Mbps): 24
	// tiles do not fit the rooms' default 1 Mbps.
	hub := newClientWith(t, r, "hub", PeerOptions{StartBitrate: 30_000_000})
	clients["hub"] = hub
	hub.sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		hubTracks.Add(1)
		drain(tr, 0, nil)
	})
	for i := range rooms {
		id := fmt.Sprintf("room-%03d", i)
		c := newClient(t, r, id)
		clients[id] = c
		c.sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			drain(tr, 50, func() { roomsFed.Add(1) })
		})
	}
	r.OnTrack(func(p *Peer, tr *Track) {
		mu.Lock()
		defer mu.Unlock()
		for id, c := range clients {
			var err error
			switch {
			case p.ID() == "hub" && id != "hub":
				_, err = c.peer.Subscribe(tr, LayerHigh)
			case p.ID() != "hub" && id == "hub":
				_, err = c.peer.Subscribe(tr, LayerLow)
			default:
				continue
			}
			if err != nil {
				t.Errorf("subscribe %s to %s: %v", id, tr.ID(), err)
			}
		}
	})

	var pubs []*sfutest.Publisher
	for id, c := range clients {
		rids := []string{"q"}
		if id == "hub" {
			rids = []string{"f", "h", "q"}
		}
		p, err := sfutest.NewPublisher(c.pub, id, rids, false)
		if err != nil {
			t.Fatal(err)
		}
		c.publish()
		p.Start()
		pubs = append(pubs, p)
	}
	t.Cleanup(func() {
		for _, c := range clients {
			_ = c.pub.Close()
		}
		for _, p := range pubs {
			p.Stop()
		}
	})

	start := time.Now()
	waitFor(t, 60*time.Second, "every room fed by the hub and the hub seeing every room", func() bool {
		if time.Since(start) > 55*time.Second {
			t.Logf("rooms fed %d/%d, hub sees %d/%d tracks; stats %+v", roomsFed.Load(), rooms, hubTracks.Load(), rooms, s.Stats())
		}
		return roomsFed.Load() == rooms && hubTracks.Load() == rooms
	})
	// A tile is served once its first keyframe went out; until then its
	// layer is -1.
	waitFor(t, 20*time.Second, "every tile of the hub's wall served at the lowest layer", func() bool {
		for _, d := range hub.peer.DownTracks() {
			if d.Layer() != LayerLow {
				return false
			}
		}
		return true
	})
	if st := s.Stats(); st.DownTracks != 2*rooms || st.Peers != rooms+1 {
		t.Errorf("stats %+v: want %d down tracks and %d peers", st, 2*rooms, rooms+1)
	}
}

// drain reads a remote track until it ends, calling reached once after n
// packets.
func drain(tr *webrtc.TrackRemote, n int, reached func()) {
	buf := make([]byte, 1500)
	for i := 1; ; i++ {
		if _, _, err := tr.Read(buf); err != nil {
			return
		}
		if i == n && reached != nil {
			reached()
		}
	}
}
