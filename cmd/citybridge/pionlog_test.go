package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/webrtc/v4"
)

// TestRoutineICEChatterIsDebug: four rooms join over signaling (trickle
// ICE) and six WHEP viewers connect with a browser's kind of offer (an
// mDNS name, an address outside --media-allow), receive the hub and go
// again (half closing before their DELETE), a room reboots, then everyone
// leaves: as every conference does. pion must log none of it as a warning
// or an error: an operator reads those as something to act on
// (sfu/pionlog.go's routinePion).
func TestRoutineICEChatterIsDebug(t *testing.T) {
	ts := startTestServer(t)
	conf := ts.demo.Conference.ID
	hub, rooms := startFleet(t, ts, 4, "q")
	waitUntil(t, 30*time.Second, "every room receiving the hub", func() (bool, string) {
		n := rooms.Receiving(time.Second)
		return n == 4, fmt.Sprintf("%d of 4", n)
	})

	api, err := sfutest.ClientAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	type viewer struct {
		pc       *webrtc.PeerConnection
		token    string
		location string
		packets  atomic.Int64
	}
	var viewers []*viewer
	for range 6 {
		v := &viewer{}
		code, body := callAs(t, ts, "POST", "/api/conferences/"+conf+"/viewer-links", ts.demo.HostToken)
		var link struct{ Token string }
		if err := json.Unmarshal(body, &link); err != nil || code != http.StatusCreated {
			t.Fatalf("viewer link: %d %s", code, body)
		}
		v.token = link.Token
		if v.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
			t.Fatal(err)
		}
		pc := v.pc
		t.Cleanup(func() { _ = pc.Close() })
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				v.packets.Add(1)
			}
		})
		// As a browser's offer: its host address hidden behind an mDNS
		// name, and an address outside --media-allow (a VPN's).
		offer := strings.Replace(offerGathered(t, pc), "a=candidate:", "a=candidate:9 1 udp 2122260223 0f3b9a52-2c1d-4d6e-9a1f-5c1e2d3f4a5b.local 50000 typ host\r\n"+
			"a=candidate:10 1 udp 2122194687 10.99.0.7 50001 typ host\r\na=candidate:", 1)
		resp, answer := mediaPost(t, ts, "/whep/"+conf, v.token, "application/sdp", offer)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("WHEP: %d %s", resp.StatusCode, answer)
		}
		v.location = resp.Header.Get("Location")
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		viewers = append(viewers, v)
	}
	waitUntil(t, 20*time.Second, "every viewer receiving the hub", func() (bool, string) {
		short := 0
		for _, v := range viewers {
			if v.packets.Load() < 20 {
				short++
			}
		}
		return short == 0, fmt.Sprintf("%d of %d not yet", short, len(viewers))
	})
	// Leaving: half the viewers end their session, then close; half close
	// first.
	for i, v := range viewers {
		if i%2 == 1 {
			_ = v.pc.Close()
		}
		if code, b := callAs(t, ts, "DELETE", v.location, v.token); code != http.StatusOK && code != http.StatusNoContent {
			t.Errorf("DELETE %s: %d %s", v.location, code, b)
		}
		_ = v.pc.Close()
	}
	if _, err := rooms.Reboot(0, 20*time.Second); err != nil {
		t.Fatalf("a room's reboot: %v", err)
	}
	rooms.Stop()
	hub.Stop()
	waitUntil(t, 40*time.Second, "the SFU to free every peer", func() (bool, string) {
		n := ts.media.Stats().Peers
		return n == 0, fmt.Sprintf("%d peers", n)
	})
	var noisy []string
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(line, " pion=") && (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) {
			noisy = append(noisy, line)
		}
	}
	if len(noisy) > 0 {
		t.Errorf("%d routine pion lines above debug:\n%s", len(noisy), strings.Join(noisy, "\n"))
	}
}
