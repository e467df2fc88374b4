package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/sfutest"

	"github.com/pion/webrtc/v4"
)

// mediaPost sends an SDP offer to a WHIP or WHEP endpoint.
func mediaPost(t *testing.T, ts *testServer, path, token, contentType, body string) (*http.Response, string) {
	t.Helper()
	resp, b := request(t, ts, http.MethodPost, path, token, contentType, body)
	return resp, string(b)
}

// offerGathered makes pc's offer with every candidate in it, as WHIP and
// WHEP clients send.
func offerGathered(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("client ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

// whepViewer is one WHEP client: it counts the hub's packets.
type whepViewer struct {
	pc       *webrtc.PeerConnection
	token    string
	location string
	video    atomic.Int64
	audio    atomic.Int64
}

// checkProblem checks an error answer is a problem document with status.
func checkProblem(t *testing.T, what string, resp *http.Response, body string, status int) {
	t.Helper()
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if resp.StatusCode != status {
		t.Errorf("%s: status %d (%s), want %d", what, resp.StatusCode, body, status)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Errorf("%s: problem body %q (%v)", what, body, err)
	}
}

// TestWHIPWHEPInterop: a pion WHIP client publishes the hub's camera in
// three simulcast layers and its microphone; 20 pion WHEP clients (ten
// rooms' receive-only terminals, ten viewers with viewer links) receive
// continuous video and sound. DELETE ends one subscriber: its media stop,
// the SFU frees its peer, its resource is gone. Bad SDP, a wrong token,
// an unknown conference and the wrong role get 400/401/404/403 problem
// documents, and the bad calls change nothing for the others.
func TestWHIPWHEPInterop(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	conf := ts.demo.Conference.ID
	api, err := sfutest.ClientAPI(true)
	if err != nil {
		t.Fatal(err)
	}

	// The encoder.
	enc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enc.Close() })
	pub, err := sfutest.NewPublisher(enc, "hub", []string{"q", "h", "f"}, true)
	if err != nil {
		t.Fatal(err)
	}
	resp, answer := mediaPost(t, ts, "/whip/"+conf, ts.demo.HostToken, "application/sdp", offerGathered(t, enc))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Fatalf("WHIP: %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), answer)
	}
	whipLoc := resp.Header.Get("Location")
	if !strings.HasPrefix(whipLoc, "/whip/"+conf+"/") {
		t.Fatalf("WHIP Location %q", whipLoc)
	}
	if !strings.Contains(answer, "a=candidate:") {
		t.Fatalf("the WHIP answer carries no candidate:\n%s", answer)
	}
	if err := enc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	pub.Start()
	t.Cleanup(pub.Stop)
	waitUntil(t, 20*time.Second, "the hub's three layers at the SFU", func() (bool, string) {
		r, err := ts.media.Router(conf)
		if err != nil {
			return false, err.Error()
		}
		for _, tr := range r.Tracks() {
			if tr.PublisherID() == "hub" && tr.Kind() == webrtc.RTPCodecTypeVideo {
				return len(tr.Layers()) == 3, fmt.Sprintf("layers %v", tr.Layers())
			}
		}
		return false, "no hub video track"
	})

	// Twenty subscribers: ten rooms, ten viewers.
	bridges, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	var viewers []*whepViewer
	for i := 0; i < 20; i++ {
		v := &whepViewer{}
		if i < 10 {
			if v.token, err = ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: bridges[i].ID}); err != nil {
				t.Fatal(err)
			}
		} else {
			code, body := callAs(t, ts, "POST", "/api/conferences/"+conf+"/viewer-links", ts.demo.HostToken)
			var link struct{ Token, WHEP string }
			if err := json.Unmarshal(body, &link); err != nil || code != http.StatusCreated || link.WHEP != "/whep/"+conf {
				t.Fatalf("viewer link: %d %s", code, body)
			}
			v.token = link.Token
		}
		if v.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
			t.Fatal(err)
		}
		pc := v.pc
		t.Cleanup(func() { _ = pc.Close() })
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			n := &v.audio
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				n = &v.video
			}
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				n.Add(1)
			}
		})
		resp, answer := mediaPost(t, ts, "/whep/"+conf, v.token, "application/sdp", offerGathered(t, pc))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("WHEP %d: %d %s", i, resp.StatusCode, answer)
		}
		v.location = resp.Header.Get("Location")
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		viewers = append(viewers, v)
	}
	continuous := func(what string, vs []*whepViewer) {
		t.Helper()
		base := make([][2]int64, len(vs))
		for i, v := range vs {
			base[i] = [2]int64{v.video.Load(), v.audio.Load()}
		}
		waitUntil(t, 20*time.Second, what, func() (bool, string) {
			short := 0
			for i, v := range vs {
				if v.video.Load() < base[i][0]+50 || v.audio.Load() < base[i][1]+50 {
					short++
				}
			}
			return short == 0, fmt.Sprintf("%d of %d not yet 50 more video and audio packets", short, len(vs))
		})
	}
	continuous("20 WHEP clients receiving the hub's video and sound", viewers)

	// The bad calls, while everyone watches.
	bad := []struct {
		what, path, token, ctype, body string
		status                         int
	}{
		{"bad SDP", "/whep/" + conf, viewers[3].token, "application/sdp", "v=0\r\nthis is not an offer\r\n", http.StatusBadRequest},
		{"not SDP", "/whep/" + conf, viewers[3].token, "application/json", "{}", http.StatusUnsupportedMediaType},
		{"no token", "/whip/" + conf, "", "application/sdp", "v=0\r\n", http.StatusUnauthorized},
		{"wrong token", "/whip/" + conf, "not-a-token", "application/sdp", "v=0\r\n", http.StatusUnauthorized},
		{"unknown conference", "/whep/no-such-conference", viewers[12].token, "application/sdp", "v=0\r\n", http.StatusNotFound},
		{"a room publishing with WHIP", "/whip/" + conf, viewers[0].token, "application/sdp", "v=0\r\n", http.StatusForbidden},
		{"the host receiving with WHEP", "/whep/" + conf, ts.demo.HostToken, "application/sdp", "v=0\r\n", http.StatusForbidden},
		{"a technician publishing with WHIP", "/whip/" + conf, ts.demo.TechnicianToken, "application/sdp", "v=0\r\n", http.StatusForbidden},
		{"a technician receiving with WHEP", "/whep/" + conf, ts.demo.TechnicianToken, "application/sdp", "v=0\r\n", http.StatusForbidden},
	}
	for _, b := range bad {
		resp, body := mediaPost(t, ts, b.path, b.token, b.ctype, b.body)
		checkProblem(t, b.what, resp, body, b.status)
	}

	// DELETE one subscriber: its media stop and the SFU frees its peer.
	gone := viewers[15]
	peers := ts.media.Stats().Peers
	del := func(loc, token string) int {
		resp, _ := request(t, ts, http.MethodDelete, loc, token, "", "")
		return resp.StatusCode
	}
	if code := del(gone.location, viewers[14].token); code != http.StatusUnauthorized {
		t.Errorf("DELETE with another viewer's token: %d, want 401", code)
	}
	if code := del(gone.location, gone.token); code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	waitUntil(t, 5*time.Second, "the deleted subscriber's peer freed", func() (bool, string) {
		now := ts.media.Stats().Peers
		return now == peers-1, fmt.Sprintf("%d peers, %d before", now, peers)
	})
	var stopped int64 = -1
	waitUntil(t, 5*time.Second, "the deleted subscriber's video stopping", func() (bool, string) {
		v := gone.video.Load()
		same := v == stopped // nothing came since the previous look
		stopped = v
		return same, fmt.Sprintf("%d video packets", v)
	})
	if code := del(gone.location, gone.token); code != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", code)
	}
	rest := append(append([]*whepViewer{}, viewers[:15]...), viewers[16:]...)
	continuous("the other 19 still receiving", rest)
	if got := gone.video.Load(); got > stopped {
		t.Errorf("the deleted subscriber received %d more video packets", got-stopped)
	}

	// The encoder restarts ICE with PATCH (RFC 9725 §4.4): its new
	// credentials go up, the server's come back, and the hub's media keep
	// reaching everyone.
	restart, err := enc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	var frag strings.Builder
	for _, line := range strings.Split(restart.SDP, "\r\n") {
		if strings.HasPrefix(line, "a=ice-ufrag:") || strings.HasPrefix(line, "a=ice-pwd:") {
			frag.WriteString(line + "\r\n")
		}
	}
	presp, pbody := request(t, ts, http.MethodPatch, whipLoc, ts.demo.HostToken, "application/trickle-ice-sdpfrag", frag.String())
	if presp.StatusCode != http.StatusOK || !strings.Contains(string(pbody), "a=ice-ufrag:") || !strings.Contains(string(pbody), "a=candidate:") {
		t.Fatalf("PATCH ICE restart: %d %s", presp.StatusCode, pbody)
	}
	var ufrag, pwd string
	for _, line := range strings.Split(string(pbody), "\r\n") {
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
			ufrag = v
		}
		if v, ok := strings.CutPrefix(line, "a=ice-pwd:"); ok {
			pwd = v
		}
	}
	if ufrag == "" || pwd == "" || strings.Contains(answer, "a=ice-ufrag:"+ufrag+"\r\n") {
		t.Fatalf("PATCH answered ufrag %q pwd %q: want new server credentials", ufrag, pwd)
	}
	var restarted []string
	for _, line := range strings.Split(answer, "\r\n") {
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			line = "a=ice-ufrag:" + ufrag
		case strings.HasPrefix(line, "a=ice-pwd:"):
			line = "a=ice-pwd:" + pwd
		}
		restarted = append(restarted, line)
	}
	if err := enc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: strings.Join(restarted, "\r\n")}); err != nil {
		t.Fatalf("the restarted answer: %v", err)
	}
	continuous("the 19 receiving the hub after its ICE restart", rest)

	// The encoder leaves: DELETE its resource.
	if code := del(whipLoc, ts.demo.HostToken); code != http.StatusOK {
		t.Errorf("WHIP DELETE: %d", code)
	}
}

// TestViewerTokenRefusedByAPI: a viewer link opens WHEP and nothing else:
// every API operation refuses it with 403 but the public ones (login, the
// OpenAPI document) and those about the caller itself (who am I, log out),
// and it cannot publish with WHIP.
func TestViewerTokenRefusedByAPI(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	tok, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleViewer, Conference: ts.demo.Conference.ID})
	if err != nil {
		t.Fatal(err)
	}
	public := map[string]bool{"POST /api/login": true, "GET /api/openapi.json": true, "GET /api/me": true, "POST /api/logout": true}
	for _, op := range apiTable() {
		if public[op.method+" "+op.path] {
			continue
		}
		path, body := op.prepare(t, ts)
		ctype := ""
		if body != "" {
			ctype = "application/json"
		}
		resp, _ := request(t, ts, op.method, path, tok, ctype, body)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s with a viewer token: %d, want 403", op.method, path, resp.StatusCode)
		}
	}
	resp, body := mediaPost(t, ts, "/whip/"+ts.demo.Conference.ID, tok, "application/sdp", "v=0\r\n")
	checkProblem(t, "a viewer publishing with WHIP", resp, body, http.StatusForbidden)
}
