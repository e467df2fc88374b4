package signaling

import "citybridge/controlplane"

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
var controlRules = map[controlplane.Role]map[controlplane.FloorAction]reach{
	controlplane.RoleHost: {
		controlplane.ActionGiveFloor:   anyBridge,
		controlplane.ActionTakeFloor:   whole,
		controlplane.ActionMute:        anyBridge,
		controlplane.ActionUnmute:      anyBridge,
		controlplane.ActionMuteAll:     whole,
		controlplane.ActionLock:        whole,
		controlplane.ActionUnlock:      whole,
		controlplane.ActionLowerHand:   anyBridge,
		controlplane.ActionShareScreen: whole,
		controlplane.ActionStart:       whole,
		controlplane.ActionEnd:         whole,
		controlplane.ActionRecord:      whole,
		controlplane.ActionStopRecord:  whole,
	},
	controlplane.RoleRoom: {
		controlplane.ActionMute:      itself,
		controlplane.ActionUnmute:    itself, // and only while it holds the floor (floor.go)
		controlplane.ActionRaiseHand: itself,
		controlplane.ActionLowerHand: itself,
	},
}

// permit checks a control action against the table and returns the
// bridge it acts on ("" for the whole conference), or the refusal.
func permit(who actor, req controlplane.FloorRequest) (target string, err error) {
	if !req.Action.Known() {
		return "", refuseAction(controlplane.RefusedBadAction, "unknown action "+string(req.Action))
	}
	switch controlRules[who.role][req.Action] {
	case itself:
		if req.Bridge != "" && req.Bridge != who.bridge {
			return "", refuseAction(controlplane.RefusedForbidden, "a room may only act on itself")
		}
		return who.bridge, nil
	case anyBridge:
		return req.Bridge, nil
	case whole:
		return "", nil
	}
	return "", refuseAction(controlplane.RefusedForbidden, "your role may not "+string(req.Action))
}
