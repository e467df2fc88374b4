package signaling

import (
	"citybridge/controlplane"
	"citybridge/signaling/wire"
)

// The signaling role table: who may join /signal at all, who may publish,
// and which control actions each role may send, on whom. It is the one
// place these rules live; docs/SECURITY.md shows the same table and
// TestSignalingRoleTable holds the two together. WHIP and WHEP admit
// their own roles (whip.go): a viewer link is a WHEP credential and never
// joins the WebSocket.

// mayJoin says whether a role joins conferences over /signal: the chair
// and the rooms. Viewers (WHEP only), technicians and administrators
// watch and act through the API, never as a participant.
func mayJoin(r controlplane.Role) bool {
	return r == controlplane.RoleHost || r == controlplane.RoleRoom
}

// mayPublish says whether a participant of role r may send media (offer
// on "pub"): the hub and the rooms; a viewer only ever receives.
func mayPublish(r controlplane.Role) bool {
	return r == controlplane.RoleHost || r == controlplane.RoleRoom
}

// reach is whom a control action may act on.
type reach int

const (
	// refused: the role may not send the action at all.
	refused reach = iota
	// itself: only on the sender's own bridge (an empty bridge means it).
	itself
	// anyBridge: on any bridge invited to the conference.
	anyBridge
	// whole: on the conference as a whole; a bridge named is ignored.
	whole
)

// controlRules is, per role, what each control action may act on. A role
// or an action absent here is refused.
var controlRules = map[controlplane.Role]map[string]reach{
	controlplane.RoleHost: {
		wire.ActionGiveFloor:   anyBridge,
		wire.ActionTakeFloor:   whole,
		wire.ActionMute:        anyBridge,
		wire.ActionUnmute:      anyBridge,
		wire.ActionMuteAll:     whole,
		wire.ActionLock:        whole,
		wire.ActionUnlock:      whole,
		wire.ActionLowerHand:   anyBridge,
		wire.ActionShareScreen: whole,
		wire.ActionStart:       whole,
		wire.ActionEnd:         whole,
	},
	controlplane.RoleRoom: {
		wire.ActionMute:      itself,
		wire.ActionUnmute:    itself, // and only while it holds the floor (floor.go)
		wire.ActionRaiseHand: itself,
		wire.ActionLowerHand: itself,
	},
}

// knownActions are the control actions of the protocol; anything else is
// a bad message whoever sends it.
var knownActions = map[string]bool{
	wire.ActionGiveFloor: true, wire.ActionTakeFloor: true, wire.ActionMute: true, wire.ActionUnmute: true,
	wire.ActionMuteAll: true, wire.ActionLock: true, wire.ActionUnlock: true, wire.ActionRaiseHand: true,
	wire.ActionLowerHand: true, wire.ActionShareScreen: true, wire.ActionStart: true, wire.ActionEnd: true,
}

// permit checks a control action against the table and returns the
// bridge it acts on ("" for the whole conference), or the refusal.
func permit(who actor, ctl wire.Control) (target string, err error) {
	if !knownActions[ctl.Action] {
		return "", refuse(wire.CodeBadMessage, "unknown action "+ctl.Action)
	}
	switch controlRules[who.role][ctl.Action] {
	case itself:
		if ctl.Bridge != "" && ctl.Bridge != who.bridge {
			return "", refuse(wire.CodeForbidden, "a room may only act on itself")
		}
		return who.bridge, nil
	case anyBridge:
		return ctl.Bridge, nil
	case whole:
		return "", nil
	}
	return "", refuse(wire.CodeForbidden, "your role may not "+ctl.Action)
}
