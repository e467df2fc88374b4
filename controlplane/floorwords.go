package controlplane

// The floor's vocabulary: what a host or a room may ask of a conference's
// floor, the floor state they are answered with, and why a request is
// refused. The rules themselves run with the live conferences
// (signaling/floor.go and roles.go); the words are the control plane's,
// so the REST API speaks them without knowing any wire protocol, and
// signaling maps its messages onto them.

// FloorAction is one thing a host or a room may ask of the floor. Its
// spelling is what the pages send in a signaling control message.
type FloorAction string

// Floor actions.
const (
	ActionGiveFloor   FloorAction = "give_floor"   // host: bridge gets the floor (its video and audio go to every room)
	ActionTakeFloor   FloorAction = "take_floor"   // host: nobody holds the floor
	ActionMute        FloorAction = "mute"         // host: any bridge; room: itself
	ActionUnmute      FloorAction = "unmute"       // host: any bridge; room: itself, only with the floor
	ActionMuteAll     FloorAction = "mute_all"     // host
	ActionLock        FloorAction = "lock"         // host: no bridge that is not in the conference yet may join
	ActionUnlock      FloorAction = "unlock"       // host
	ActionRaiseHand   FloorAction = "raise_hand"   // room
	ActionLowerHand   FloorAction = "lower_hand"   // room: its own hand; host: bridge's hand
	ActionStart       FloorAction = "start"        // host: the conference goes live
	ActionEnd         FloorAction = "end"          // host: the conference ends; everyone is sent away
	ActionShareScreen FloorAction = "share_screen" // host: Track is the screen being shared ("" stops)
	ActionRecord      FloorAction = "record"       // host: the conference is recorded from now on
	ActionStopRecord  FloorAction = "stop_record"  // host: the recording stops
)

// Known reports whether a is one of the floor actions; any other word is
// a bad request whoever sends it.
func (a FloorAction) Known() bool {
	switch a {
	case ActionGiveFloor, ActionTakeFloor, ActionMute, ActionUnmute, ActionMuteAll, ActionLock,
		ActionUnlock, ActionRaiseHand, ActionLowerHand, ActionStart, ActionEnd, ActionShareScreen,
		ActionRecord, ActionStopRecord:
		return true
	}
	return false
}

// FloorRequest asks for one floor action.
type FloorRequest struct {
	Action FloorAction
	// Bridge is the bridge acted on (give_floor, mute, unmute,
	// lower_hand); a room may leave it empty for itself.
	Bridge string
	// Track names the host's screen-share track (share_screen).
	Track string
	// By names who asks, in the audit log's words ("host link c1", a
	// login); a recording's manifest says who started it.
	By string
}

// FloorState is a conference's floor as the API returns it (and the
// pages receive it, in the signaling floor message).
type FloorState struct {
	State      State    `json:"state"`                // the conference's state: open, live, ended
	Holder     string   `json:"holder"`               // the bridge holding the floor, "" for none
	HolderName string   `json:"holderName,omitempty"` // its name
	Unmuted    []string `json:"unmuted"`              // bridges whose microphone reaches the others
	Locked     bool     `json:"locked"`               // no new bridges may join
	Hands      []string `json:"hands"`                // raised hands, oldest first
	Screen     string   `json:"screen,omitempty"`     // the track ID of the host's shared screen
	Speaker    string   `json:"speaker,omitempty"`    // the active speaker when the state was read
	Recording  bool     `json:"recording"`            // the conference is being recorded
}

// RefusalReason says why the floor rules refused an action. The API
// answers with it as the error's code.
type RefusalReason string

// Refusal reasons.
const (
	RefusedBadAction     RefusalReason = "bad_message"      // no such action, or a malformed one (a track ID too long)
	RefusedForbidden     RefusalReason = "forbidden"        // the role may not take this action, or not on that bridge
	RefusedUnknownBridge RefusalReason = "unknown_bridge"   // no such bridge in this conference
	RefusedNoFloor       RefusalReason = "no_floor"         // a room may unmute itself only while it holds the floor
	RefusedEnded         RefusalReason = "conference_ended" // the conference is over
	RefusedBadState      RefusalReason = "bad_state"        // the conference cannot go to that state from where it is
	RefusedNoSpace       RefusalReason = "no_space"         // too little free space to record (--recordings-min-free)
)

// FloorRefusal is the error for a floor action the rules refused.
type FloorRefusal struct {
	Reason  RefusalReason
	Message string // for a person
}

func (e *FloorRefusal) Error() string { return e.Message }
