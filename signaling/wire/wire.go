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
	TypeControl   = "control"
	TypeFloor     = "floor"
	TypeSpeaker   = "speaker"
	TypeRestart   = "restart"
	TypeReport    = "report"
	TypeAction    = "action"
	TypeRedirect  = "redirect"
	TypeNodes     = "nodes"
	TypeWall      = "wall"
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
	// Resume is the token of an earlier "joined": within the reconnection
	// grace period the participant gets its place back, media and all.
	Resume string `json:"resume,omitempty"`
	// Pass, without Token, stands for a login at another node of a
	// cluster (Joined.Pass): the cookie is not sent there.
	Pass string `json:"pass,omitempty"`
}

// Joined accepts a join.
type Joined struct {
	Participant string      `json:"participant"` // also the stream ID of its media
	Role        string      `json:"role"`
	Conference  Conference  `json:"conference"`
	Bridge      Bridge      `json:"bridge"`
	ICEServers  []ICEServer `json:"iceServers"`
	// Resume is what to send in Join.Resume after losing the connection.
	Resume string `json:"resume"`
	// Resumed: the participant got its place back; its peer connections
	// on the server are the ones it had (restart ICE if they stalled).
	Resumed bool `json:"resumed,omitempty"`
	// Nodes are, in a cluster, the https://HOST:PORT of every live node:
	// where to try when this one stops answering (any node sends the
	// terminal on to the one serving its conference).
	Nodes []string `json:"nodes,omitempty"`
	// Pass, in a cluster, to a session admitted by a login's cookie: what
	// to send in Join.Pass at another node, whose address the cookie is
	// not sent to. Kept in memory only; it ends with the login.
	Pass string `json:"pass,omitempty"`
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

// Restart asks the server to restart ICE on its "sub" connection (the
// client restarts "pub" by offering with new credentials itself).
type Restart struct {
	PC string `json:"pc"`
}

// Report is what a terminal tells the server about its own side of the
// link. Path is how its media reaches the server: one of the Path
// constants, read from the selected ICE candidate pair.
type Report struct {
	Path string `json:"path,omitempty"`
	// The terminal's own getStats summary of the video it receives (the
	// hub's), for the technicians: frames decoded per second, freezes
	// since its previous report, and the decoded resolution.
	FPS     float64 `json:"fps,omitempty"`
	Freezes int     `json:"freezes,omitempty"`
	Width   int     `json:"width,omitempty"`
	Height  int     `json:"height,omitempty"`
	// Whether the terminal has a camera and a microphone it can use.
	Camera     *bool `json:"camera,omitempty"`
	Microphone *bool `json:"microphone,omitempty"`
}

// Action asks a terminal to act on a technician's behalf: one of the
// Action constants.
type Action struct {
	Action string `json:"action"`
}

// Terminal actions (the others a technician has, keyframe and kick, are
// carried out by the server).
const (
	ActionICERestart = "ice_restart" // restart ICE on both connections
	ActionRejoin     = "rejoin"      // leave, join afresh, rebuild the media
	ActionReload     = "reload"      // reload the page
)

// Media paths, from the terminal's selected candidate pair.
const (
	PathUDP      = "udp"       // direct UDP (host or NAT-mapped)
	PathTCP      = "tcp"       // ICE-TCP to the server's TCP port
	PathRelayUDP = "relay-udp" // through TURN, UDP to the relay
	PathRelayTCP = "relay-tcp" // through TURN, TCP to the relay
	PathRelayTLS = "relay-tls" // through TURN, TLS to the relay
)

// ValidPath says whether p is one of the Path constants.
func ValidPath(p string) bool {
	switch p {
	case PathUDP, PathTCP, PathRelayUDP, PathRelayTCP, PathRelayTLS:
		return true
	}
	return false
}

// Presence states of a bridge in a conference.
const (
	StateAbsent       = "absent"       // invited, not joined yet
	StateConnecting   = "connecting"   // signaling joined, media not flowing yet
	StateConnected    = "connected"    // media connected
	StateReconnecting = "reconnecting" // media interrupted, the session is still there
	StateLeft         = "left"         // was here, has gone (said goodbye)
	StateDropped      = "dropped"      // was here, lost without a goodbye
)

// RosterEntry is one invited bridge and where it is.
type RosterEntry struct {
	Bridge
	State string `json:"state"`
	// Path is how the bridge's media reaches the server (see Report),
	// once its terminal has said.
	Path string `json:"path,omitempty"`
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
	CodeTokenRequired      = "token_required"
	CodeTokenInvalid       = "token_invalid"
	CodeWrongConference    = "wrong_conference"
	CodeNotInvited         = "not_invited"
	CodeConferenceClosed   = "conference_closed"
	CodeRoleCannotJoin     = "role_cannot_join"
	CodeBadMessage         = "bad_message"
	CodeUnknownType        = "unknown_type"
	CodeNotJoined          = "not_joined"
	CodeAlreadyJoined      = "already_joined"
	CodeNegotiationFailed  = "negotiation_failed"
	CodeInternal           = "internal"
	CodeForbidden          = "forbidden"           // the role may not do this
	CodeNoFloor            = "no_floor"            // a room may unmute itself only while it holds the floor
	CodeUnknownBridge      = "unknown_bridge"      // no such bridge in this conference
	CodeConferenceLocked   = "conference_locked"   // the host locked the conference: no new bridges
	CodeConferenceEnded    = "conference_ended"    // the conference is over
	CodeBadState           = "bad_state"           // the conference cannot go to that state from where it is
	CodeNoSpace            = "no_space"            // too little free disk space to record
	CodeRateLimited        = "rate_limited"        // too many requests of this kind; slow down
	CodeClusterUnavailable = "cluster_unavailable" // this node cannot reach the cluster's store: try another node
)

// Control asks the server to change the conference (client to server).
// The server decides: the host may do everything; a room may raise or
// lower its hand, mute itself, and unmute itself only while it holds the
// floor. Refusals answer an Error with Request "control".
type Control struct {
	// Action is a floor action ("give_floor", "mute", ...). The words are
	// the control plane's (controlplane.FloorAction), spelled on the wire
	// as they are there; PROTOCOL.md lists them.
	Action string `json:"action"`
	// Bridge is the bridge acted on (give_floor, mute, unmute); rooms may
	// leave it empty for themselves.
	Bridge string `json:"bridge,omitempty"`
	// Track names the host's screen-share track (share_screen).
	Track string `json:"track,omitempty"`
}

// Wall tells the server which tiles of the host console's wall are on
// screen, and how large (client to server; the host only). The server
// forwards the video of those rooms only, each at the layer that fits its
// tile; the floor holder and the active speaker are received whatever the
// wall shows. An empty list (the page hidden, or scrolled away from the
// wall) shows nothing. Until a console sends one, it is sent every room.
type Wall struct {
	Tiles []WallTile `json:"tiles"`
}

// WallTile is one tile on screen: the bridge whose video it shows, and
// its size in device pixels (CSS pixels times devicePixelRatio).
type WallTile struct {
	Bridge string `json:"bridge"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// Limits of a Wall message.
const (
	MaxWallTiles  = 1024  // more tiles than any conference has bridges
	MaxTileSide   = 16384 // pixels, either way
	maxBridgeIDSz = 128
)

// Check reports what is wrong with w, if anything: the tiles missing (an
// empty list says nothing is shown), too many of them, a tile without a
// bridge or with a bridge ID over 128 bytes, a bridge twice, a size not
// within 1..MaxTileSide. Whether each bridge is in the conference is the
// server's to check.
func (w *Wall) Check() error {
	if w.Tiles == nil {
		return errors.New(`wall: "tiles" missing (send [] when no tile is on screen)`)
	}
	if len(w.Tiles) > MaxWallTiles {
		return fmt.Errorf("wall: %d tiles, at most %d", len(w.Tiles), MaxWallTiles)
	}
	seen := make(map[string]bool, len(w.Tiles))
	for i, t := range w.Tiles {
		switch {
		case t.Bridge == "":
			return fmt.Errorf("wall: tile %d has no bridge", i)
		case len(t.Bridge) > maxBridgeIDSz:
			return fmt.Errorf("wall: tile %d: bridge ID over %d bytes", i, maxBridgeIDSz)
		case seen[t.Bridge]:
			return fmt.Errorf("wall: bridge %q twice", t.Bridge)
		case t.Width < 1 || t.Width > MaxTileSide || t.Height < 1 || t.Height > MaxTileSide:
			return fmt.Errorf("wall: tile of %q is %dx%d, want 1..%d each way", t.Bridge, t.Width, t.Height, MaxTileSide)
		}
		seen[t.Bridge] = true
	}
	return nil
}

// Floor is the conference's floor state, sent to every participant when it
// changes (server to client): the control plane's FloorState as the pages
// see it.
type Floor struct {
	State      string   `json:"state"`                // the conference's state: open, live, ended
	Holder     string   `json:"holder"`               // the bridge holding the floor, "" for none
	HolderName string   `json:"holderName,omitempty"` // its name
	Unmuted    []string `json:"unmuted"`              // bridges whose microphone reaches the others
	Locked     bool     `json:"locked"`               // no new bridges may join
	Hands      []string `json:"hands"`                // raised hands, oldest first
	Screen     string   `json:"screen,omitempty"`     // the track ID of the host's shared screen
	Speaker    string   `json:"speaker,omitempty"`    // the active speaker, when the message is sent
	Recording  bool     `json:"recording"`            // the conference is being recorded: every page shows it
	// The newest render of the recording's minutes video (the console
	// shows it): queued, rendering, done, failed or cancelled, and how
	// far it is.
	MinutesState   string `json:"minutesState,omitempty"`
	MinutesPercent int    `json:"minutesPercent,omitempty"`
}

// Speaker names the active speaker (server to host): the loudest bridge
// that can be heard, "" when nobody speaks.
type Speaker struct {
	Bridge string `json:"bridge"`
}

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
	ReasonHidden    = "hidden"    // the host's wall does not show it: nothing is sent
)

// Redirect sends a joining client to the node of a cluster that serves its
// conference (server to client, in answer to join): it joins there, at
// URL's /signal, with the same token. The socket closes after it.
type Redirect struct {
	URL string `json:"url"` // https://HOST:PORT of the node
}

// Nodes tells a joined client the cluster's live nodes when they change
// (server to client): where to try when its node stops answering, as
// joined's nodes.
type Nodes struct {
	Nodes []string `json:"nodes"` // https://HOST:PORT of each
}

// Bye tells the client the server is ending the session, and why.
type Bye struct {
	Reason string `json:"reason"`
}

// Bye reasons.
const (
	ByeReplaced       = "replaced"        // the same bridge joined from another connection
	ByeServerShutdown = "server_shutdown" // the server is stopping
	ByeLeft           = "left"            // the client asked to leave
	ByeEnded          = "ended"           // the host ended the conference
	ByeKicked         = "kicked"          // a technician sent the bridge away
	ByeRevoked        = "revoked"         // the link or login it joined with was revoked or expired
	ByeMoved          = "moved"           // this node no longer serves the conference: join again (a redirect follows)
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
func (Control) MessageType() string   { return TypeControl }
func (Floor) MessageType() string     { return TypeFloor }
func (Speaker) MessageType() string   { return TypeSpeaker }
func (Restart) MessageType() string   { return TypeRestart }
func (Report) MessageType() string    { return TypeReport }
func (Redirect) MessageType() string  { return TypeRedirect }
func (Nodes) MessageType() string     { return TypeNodes }
func (Action) MessageType() string    { return TypeAction }
func (Wall) MessageType() string      { return TypeWall }

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
	case TypeControl:
		m = &Control{}
	case TypeFloor:
		m = &Floor{}
	case TypeSpeaker:
		m = &Speaker{}
	case TypeRestart:
		m = &Restart{}
	case TypeReport:
		m = &Report{}
	case TypeRedirect:
		m = &Redirect{}
	case TypeNodes:
		m = &Nodes{}
	case TypeAction:
		m = &Action{}
	case TypeWall:
		m = &Wall{}
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
