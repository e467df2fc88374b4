package main

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/terminal"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// startRooms starts synthetic room terminals for the first n invited
// bridges (no synthetic hub) and returns them with their bridge IDs.
func startRooms(t *testing.T, ts *testServer, n int, layers ...string) (*terminal.Fleet, []string) {
	t.Helper()
	bridges, err := ts.store.InvitedBridges(ts.demo.Conference)
	if err != nil {
		t.Fatal(err)
	}
	var tokens, ids []string
	for _, b := range bridges[:n] {
		tok, err := ts.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: b.ID})
		if err != nil {
			t.Fatal(err)
		}
		tokens, ids = append(tokens, tok), append(ids, b.ID)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rooms, err := terminal.StartFleet(ts.base, ts.demo.Conference.ID, tokens, layers, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rooms.Stop)
	return rooms, ids
}

// wallCap is what the host is sent of one room's video, as the server's
// down track holds it.
type wallCap struct {
	layer, temporal int
	hidden          bool
}

func (c wallCap) String() string {
	return fmt.Sprintf("layer %d, tid<=%d, hidden %v", c.layer, c.temporal, c.hidden)
}

// hostCaps returns, by publisher, the caps of the host's video down
// tracks of rooms.
func hostCaps(t *testing.T, ts *testServer) map[string]wallCap {
	t.Helper()
	r, err := ts.media.Router(ts.demo.Conference.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]wallCap{}
	hub := r.Peer(controlplane.HubBridge.ID)
	if hub == nil {
		return out
	}
	for _, d := range hub.DownTracks() {
		if d.Track().Kind() == webrtc.RTPCodecTypeVideo {
			out[d.Track().PublisherID()] = wallCap{d.MaxLayer(), d.MaxTemporal(), d.Hidden()}
		}
	}
	return out
}

func describeCaps(caps map[string]wallCap) string {
	var parts []string
	for id, c := range caps {
		parts = append(parts, id+": "+c.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// TestWallPolicy: what the host console's wall message does to what the
// host is sent. Before any message every room comes at the lowest layer,
// thinned to temporal layers 0-1; a wall hides the rooms off screen and
// gives each on screen the layer that fits its tile; a bad message (a
// bridge not in the conference, tiles missing, a bridge twice, a size out
// of range) is refused with its code and changes nothing; the floor
// holder is received at the best layer and every frame whatever the wall
// shows; an empty wall hides all but the floor holder.
func TestWallPolicy(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t)
	_, ids := startRooms(t, ts, 3)
	c, _, err := wsDial(t.Context(), ts, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := wsSend(c, wire.Join{Token: ts.demo.HostToken}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsNext(c, 10*time.Second, wire.TypeJoined); err != nil {
		t.Fatal(err)
	}
	expect := func(what string, want map[string]wallCap) {
		t.Helper()
		waitUntil(t, 15*time.Second, what, func() (bool, string) {
			got := hostCaps(t, ts)
			for id, w := range want {
				if got[id] != w {
					return false, describeCaps(got)
				}
			}
			return true, ""
		})
	}
	low, off := wallCap{sfu.LayerLow, 1, false}, wallCap{sfu.LayerOff, 1, true}
	expect("every room at the lowest layer before the console says what it shows",
		map[string]wallCap{ids[0]: low, ids[1]: low, ids[2]: low})

	tile := func(id string, w, h int) wire.WallTile { return wire.WallTile{Bridge: id, Width: w, Height: h} }
	if err := wsSend(c, wire.Wall{Tiles: []wire.WallTile{tile(ids[0], 300, 169), tile(ids[1], 700, 394)}}); err != nil {
		t.Fatal(err)
	}
	shown := map[string]wallCap{ids[0]: low, ids[1]: {sfu.LayerMid, 1, false}, ids[2]: off}
	expect("the two rooms shown at the layer of their tile, the third hidden", shown)

	for _, bad := range []struct {
		name, frame, code string
	}{
		{"a bridge not in the conference", `{"type":"wall","tiles":[{"bridge":"nowhere-9","width":10,"height":10}]}`, wire.CodeUnknownBridge},
		{"tiles missing", `{"type":"wall"}`, wire.CodeBadMessage},
		{"a bridge twice", fmt.Sprintf(`{"type":"wall","tiles":[{"bridge":%q,"width":10,"height":10},{"bridge":%q,"width":10,"height":10}]}`, ids[2], ids[2]), wire.CodeBadMessage},
		{"a size out of range", fmt.Sprintf(`{"type":"wall","tiles":[{"bridge":%q,"width":0,"height":10}]}`, ids[2]), wire.CodeBadMessage},
		{"tiles not a list", `{"type":"wall","tiles":{"a":1}}`, wire.CodeBadMessage},
	} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(bad.frame)); err != nil {
			t.Fatal(err)
		}
		m, err := wsNext(c, 5*time.Second, wire.TypeError)
		if err != nil {
			t.Fatalf("%s: %v", bad.name, err)
		}
		if e := m.(*wire.Error); e.Code != bad.code || e.Message == "" {
			t.Errorf("%s: error %+v, want code %s with a reason", bad.name, e, bad.code)
		}
		if got := hostCaps(t, ts); got[ids[0]] != shown[ids[0]] || got[ids[1]] != shown[ids[1]] || got[ids[2]] != off {
			t.Errorf("%s changed what the host is sent: %s", bad.name, describeCaps(got))
		}
	}

	if err := wsSend(c, wire.Control{Action: string(controlplane.ActionGiveFloor), Bridge: ids[2]}); err != nil {
		t.Fatal(err)
	}
	expect("the floor holder received off screen, at the best layer, every frame",
		map[string]wallCap{ids[2]: {sfu.LayerHigh, sfu.AllTemporal, false}, ids[0]: low})

	if err := wsSend(c, wire.Wall{Tiles: []wire.WallTile{}}); err != nil {
		t.Fatal(err)
	}
	expect("nothing on screen: everyone hidden but the floor holder",
		map[string]wallCap{ids[0]: off, ids[1]: off, ids[2]: {sfu.LayerHigh, sfu.AllTemporal, false}})
	if st := ts.media.Stats(); st.HiddenDownTracks < 2 {
		t.Errorf("stats count %d hidden down tracks, want at least 2", st.HiddenDownTracks)
	}
}
