package controlplane

import (
	"errors"
	"fmt"
	"strings"
)

// The participant IDs the server gives its own participants. A conference
// knows its members by bridge ID, so a registry bridge under one of these
// would take that participant's place (a bridge "hub" would be the host
// console). No bridge may have one:
//
//   - "hub": the host (HubBridge), and every ID starting "hub-": the host
//     console chairing beside a WHIP encoder is "hub-console"
//     (signaling.HubConsole); the prefix keeps room for more.
//   - "viewer": listen-only viewers (ViewerBridge), and every ID starting
//     "viewer-": each WHEP viewer is ViewerIDPrefix and ten characters of
//     its resource (signaling/whip.go).
//
// IDs that merely start with the letters (hubei-1, viewers-hall) are
// ordinary bridges.
const (
	hubIDPrefix = "hub-"
	// ViewerIDPrefix starts the participant ID of every WHEP viewer.
	ViewerIDPrefix = "viewer-"
)

// ErrReservedBridgeID is the error for a bridge ID the server keeps for
// its own participants (ReservedBridgeID).
var ErrReservedBridgeID = errors.New("reserved for the server's own participants (hub, hub-…, viewer, viewer-…)")

// ReservedBridgeID reports whether id is the server's own: no bridge in the
// registry or a conference's list may use it.
func ReservedBridgeID(id string) bool {
	return id == HubBridge.ID || id == ViewerBridge.ID ||
		strings.HasPrefix(id, hubIDPrefix) || strings.HasPrefix(id, ViewerIDPrefix)
}

// checkNotReserved is the error for a reserved id, nil otherwise.
func checkNotReserved(id string) error {
	if ReservedBridgeID(id) {
		return fmt.Errorf("bridge id %q is %w", id, ErrReservedBridgeID)
	}
	return nil
}
