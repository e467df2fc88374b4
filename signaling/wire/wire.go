// Package wire defines the signaling protocol's messages: one JSON object
// per WebSocket text message, with a "type" field naming it. The server,
// the tests that play pages, and tools such as the room simulator share
// these types. signaling/PROTOCOL.md describes the exchange.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Message types.
const (
	TypeJoin      = "join"
	TypeJoined    = "joined"
	TypeOffer     = "offer"
	TypeAnswer    = "answer"
	TypeCandidate = "candidate"
	TypeLeave     = "leave"
	TypeRoster    = "roster"
	TypePresence  = "presence"
	TypeError     = "error"
	TypeBye       = "bye"
	TypeLayer     = "layer"
)

// Peer connection names: each participant has one connection it publishes
// on (it offers) and one it receives on (the server offers).
const (
	PCPublish   = "pub"
	PCSubscribe = "sub"
)

// Message is any protocol message.
type Message interface{ MessageType() string }

// Join is the first message a client sends.
type Join struct {
	Token string `json:"token"`
	// Conference is optional for room terminals (they join the open
	// conference their bridge is invited to) and for hosts.
	Conference string `json:"conference,omitempty"`
}

// Joined accepts a join.
type Joined struct {
	Participant string      `json:"participant"` // also the stream ID of its media
	Role        string      `json:"role"`
	Conference  Conference  `json:"conference"`
	Bridge      Bridge      `json:"bridge"`
	ICEServers  []ICEServer `json:"iceServers"`
}

// Conference names the conference joined.
type Conference struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	State string `json:"state"`
}

// Bridge describes a bridge point.
type Bridge struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// ICEServer is an RTCIceServer for the page's RTCPeerConnection. The server
// only ever hands out servers on the city's own network.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Offer carries an SDP offer: from the client for "pub", from the server
// for "sub".
type Offer struct {
	PC  string `json:"pc"`
	SDP string `json:"sdp"`
}

// Answer carries an SDP answer: from the server for "pub", from the client
// for "sub".
type Answer struct {
	PC  string `json:"pc"`
	SDP string `json:"sdp"`
}

// Candidate carries one trickled ICE candidate, either way.
type Candidate struct {
	PC        string       `json:"pc"`
	Candidate ICECandidate `json:"candidate"`
}

// ICECandidate mirrors the browser's RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Leave ends the session cleanly.
type Leave struct{}

// Presence states of a bridge in a conference.
const (
	StateAbsent     = "absent"     // invited, not joined yet
	StateConnecting = "connecting" // signaling joined, media not flowing yet
	StateConnected  = "connected"  // media connected
	StateLeft       = "left"       // was here, has gone
)

// RosterEntry is one invited bridge and where it is.
type RosterEntry struct {
	Bridge
	State string `json:"state"`
}

// Roster lists every invited bridge (sent to the host on join).
type Roster struct {
	Bridges []RosterEntry `json:"bridges"`
}

// Presence reports one bridge's new state.
type Presence struct {
	RosterEntry
}

// Error reports a refused request. Code is one of the Code constants; the
// connection stays open unless the error concerns the join.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Request is the type of the message that caused the error, if known.
	Request string `json:"request,omitempty"`
}

// Error codes.
const (
	CodeTokenRequired     = "token_required"
	CodeTokenInvalid      = "token_invalid"
	CodeWrongConference   = "wrong_conference"
	CodeNotInvited        = "not_invited"
	CodeConferenceClosed  = "conference_closed"
	CodeRoleCannotJoin    = "role_cannot_join"
	CodeBadMessage        = "bad_message"
	CodeUnknownType       = "unknown_type"
	CodeNotJoined         = "not_joined"
	CodeAlreadyJoined     = "already_joined"
	CodeNegotiationFailed = "negotiation_failed"
	CodeInternal          = "internal"
)

// Layer tells a subscriber which simulcast layer of a video track it now
// receives and why (server to client). Layer is the RID ("q", "h", "f"),
// empty when the video is paused; Reason is one of the Reason constants.
type Layer struct {
	Track     string `json:"track"`     // the track's ID (the MediaStreamTrack's id on the page)
	Publisher string `json:"publisher"` // the bridge whose media it is ("hub" for the host)
	Layer     string `json:"layer"`
	Reason    string `json:"reason"`
	// Estimate is the server's estimate of the link towards this terminal,
	// in bits per second.
	Estimate int `json:"estimate"`
}

// Reasons for a layer.
const (
	ReasonBest      = "best"      // the best layer the publisher sends
	ReasonBandwidth = "bandwidth" // the link carries no better one
	ReasonPaused    = "paused"    // the link carries no video at all: audio only
	ReasonPinned    = "pinned"    // a technician capped this bridge's layer
	ReasonLimit     = "limit"     // the conference's policy caps it
)

// Bye tells the client the server is ending the session, and why.
type Bye struct {
	Reason string `json:"reason"`
}

// Bye reasons.
const (
	ByeReplaced       = "replaced"        // the same bridge joined from another connection
	ByeServerShutdown = "server_shutdown" // the server is stopping
	ByeLeft           = "left"            // the client asked to leave
)

// MessageType implementations.
func (Join) MessageType() string      { return TypeJoin }
func (Joined) MessageType() string    { return TypeJoined }
func (Offer) MessageType() string     { return TypeOffer }
func (Answer) MessageType() string    { return TypeAnswer }
func (Candidate) MessageType() string { return TypeCandidate }
func (Leave) MessageType() string     { return TypeLeave }
func (Roster) MessageType() string    { return TypeRoster }
func (Presence) MessageType() string  { return TypePresence }
func (Error) MessageType() string     { return TypeError }
func (Bye) MessageType() string       { return TypeBye }
func (Layer) MessageType() string     { return TypeLayer }

// Encode marshals m with its "type" field first.
func Encode(m Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	typ, _ := json.Marshal(m.MessageType())
	out := make([]byte, 0, len(body)+len(typ)+10)
	out = append(out, `{"type":`...)
	out = append(out, typ...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	return append(out, body[1:]...), nil
}

// ErrUnknownType is wrapped by Decode for a well-formed message of a type
// this version does not know.
var ErrUnknownType = errors.New("unknown message type")

// Decode parses one message. The result is a pointer to the concrete type
// (*Join, *Offer, ...).
func Decode(b []byte) (Message, error) {
	var env struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var m Message
	switch env.Type {
	case TypeJoin:
		m = &Join{}
	case TypeJoined:
		m = &Joined{}
	case TypeOffer:
		m = &Offer{}
	case TypeAnswer:
		m = &Answer{}
	case TypeCandidate:
		m = &Candidate{}
	case TypeLeave:
		m = &Leave{}
	case TypeRoster:
		m = &Roster{}
	case TypePresence:
		m = &Presence{}
	case TypeError:
		m = &Error{}
	case TypeBye:
		m = &Bye{}
	case TypeLayer:
		m = &Layer{}
	case "":
		return nil, errors.New(`missing "type"`)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownType, env.Type)
	}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s: %w", env.Type, err)
	}
	return m, nil
}
