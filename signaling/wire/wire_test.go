package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	mid, idx := "0", uint16(0)
	for _, m := range []Message{
		&Join{Token: "abc", Conference: "c1"},
		&Joined{Participant: "ward-001", Role: "room", Conference: Conference{ID: "c1", Title: "T", State: "open"},
			Bridge: Bridge{ID: "ward-001", Name: "Ward 001", Kind: "ward"}, ICEServers: []ICEServer{}},
		&Offer{PC: PCSubscribe, SDP: "v=0\r\n"},
		&Answer{PC: PCPublish, SDP: "v=0\r\n"},
		&Candidate{PC: PCPublish, Candidate: ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", SDPMid: &mid, SDPMLineIndex: &idx}},
		&Leave{},
		&Roster{Bridges: []RosterEntry{{Bridge: Bridge{ID: "w", Name: "W", Kind: "ward"}, State: StateAbsent}}},
		&Presence{RosterEntry{Bridge: Bridge{ID: "w"}, State: StateConnected}},
		&Error{Code: CodeTokenInvalid, Message: "no", Request: TypeJoin},
		&Bye{Reason: ByeReplaced},
		&Wall{Tiles: []WallTile{{Bridge: "commune-001", Width: 300, Height: 169}}},
	} {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), `{"type":"`+m.MessageType()+`"`) {
			t.Errorf("%T encoded as %s", m, b)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %s gave %#v", b, got)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `{}`, `{"type":5}`, `{"type":"offer","sdp":7}`, `nul`} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) succeeded", in)
		}
	}
	if _, err := Decode([]byte(`{"type":"dance"}`)); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type: %v", err)
	}
}

// TestWallCheck: a wall message is refused, with a reason, for missing
// tiles, too many, a tile without a bridge or with a long ID, a bridge
// twice, or a size out of range; an empty list (nothing on screen) and a
// good one pass.
func TestWallCheck(t *testing.T) {
	tile := func(b string, w, h int) WallTile { return WallTile{Bridge: b, Width: w, Height: h} }
	many := make([]WallTile, MaxWallTiles+1)
	for i := range many {
		many[i] = tile(strings.Repeat("b", 1+i%100)+string(rune('a'+i/100)), 10, 10)
	}
	for _, c := range []struct {
		name  string
		json  string
		wall  Wall
		wrong string // a word of the error; "" for none
	}{
		{name: "nothing shown", wall: Wall{Tiles: []WallTile{}}},
		{name: "two tiles", wall: Wall{Tiles: []WallTile{tile("a", 300, 169), tile("b", 1, MaxTileSide)}}},
		{name: "tiles missing", json: `{"type":"wall"}`, wrong: "missing"},
		{name: "null tiles", json: `{"type":"wall","tiles":null}`, wrong: "missing"},
		{name: "too many", wall: Wall{Tiles: many}, wrong: "at most"},
		{name: "no bridge", wall: Wall{Tiles: []WallTile{tile("", 10, 10)}}, wrong: "no bridge"},
		{name: "long bridge ID", wall: Wall{Tiles: []WallTile{tile(strings.Repeat("x", 129), 10, 10)}}, wrong: "over 128"},
		{name: "twice", wall: Wall{Tiles: []WallTile{tile("a", 10, 10), tile("a", 20, 20)}}, wrong: "twice"},
		{name: "zero width", wall: Wall{Tiles: []WallTile{tile("a", 0, 10)}}, wrong: "0x10"},
		{name: "negative height", wall: Wall{Tiles: []WallTile{tile("a", 10, -1)}}, wrong: "10x-1"},
		{name: "too wide", wall: Wall{Tiles: []WallTile{tile("a", MaxTileSide+1, 10)}}, wrong: "16385x10"},
	} {
		w := c.wall
		if c.json != "" {
			m, err := Decode([]byte(c.json))
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			w = *m.(*Wall)
		}
		err := w.Check()
		switch {
		case c.wrong == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.wrong != "" && (err == nil || !strings.Contains(err.Error(), c.wrong)):
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.wrong)
		}
	}
}

// FuzzSignalingMessage: no input panics the decoder; whatever decodes
// re-encodes, and decodes again to the same message type.
func FuzzSignalingMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","token":"x","conference":"c1","resume":"r"}`,
		`{"type":"offer","pc":"pub","sdp":"v=0\r\n"}`,
		`{"type":"answer","pc":"sub","sdp":""}`,
		`{"type":"candidate","pc":"pub","candidate":{"candidate":"a","sdpMLineIndex":1}}`,
		`{"type":"leave"}`, `{"type":"restart","pc":"sub"}`, `{"type":"report","path":"tcp"}`,
		`{"type":"control","action":"give_floor","bridge":"ward-001"}`,
		`{"type":"joined","iceServers":[{"urls":["turn:10.0.0.1:3478"]}]}`,
		`{"type":"roster","bridges":[{"id":"a","state":"connected","path":"udp"}]}`,
		`{"type":"floor","unmuted":["a"],"hands":[]}`, `{"type":"bye","reason":"ended"}`,
		`{"type":"join","token":1}`, `[]`, `{"type":null}`, `{"type":"offer","sdp":{"x":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", b, err)
		}
		again, err := Decode(out)
		if err != nil || again.MessageType() != m.MessageType() {
			t.Fatalf("%q encoded as %q, which decodes to %v, %v", b, out, again, err)
		}
	})
}
