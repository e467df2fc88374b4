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
