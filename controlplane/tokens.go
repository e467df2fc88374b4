package controlplane

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Role is what a token holder may do.
type Role string

// Roles. Room terminals and hosts join conferences; technicians watch and
// provision terminals.
const (
	RoleHost       Role = "host"
	RoleRoom       Role = "room"
	RoleTechnician Role = "technician"
	// RoleViewer is a listen-only viewer of one conference, over WHEP
	// only: every API operation refuses it.
	RoleViewer Role = "viewer"
)

// Grant is what a token stands for. Only the token's SHA-256 is stored: a
// copy of the data file does not let anyone join.
type Grant struct {
	Role       Role      `json:"role"`
	Conference string    `json:"conference,omitempty"` // host and viewer tokens: their one conference
	Bridge     string    `json:"bridge,omitempty"`     // room tokens: the one bridge they are
	Name       string    `json:"name,omitempty"`       // technician tokens: whose link it is
	Issued     time.Time `json:"issued,omitzero"`
	// Expires, if set, is when the token stops working (and any session
	// it opened ends).
	Expires time.Time `json:"expires,omitzero"`
	// User is the person behind a login session (not stored with tokens).
	User string `json:"user,omitempty"`
}

// Admission errors: why a join was refused.
var (
	// ErrTokenRequired: the join carried no token.
	ErrTokenRequired = errors.New("a token is required")
	// ErrTokenInvalid: the token is unknown or revoked.
	ErrTokenInvalid = errors.New("the token is not valid")
	// ErrTokenExpired: the token's time is up. It is an ErrTokenInvalid.
	ErrTokenExpired = fmt.Errorf("%w: it has expired", ErrTokenInvalid)
	// ErrWrongConference: the token belongs to another conference.
	ErrWrongConference = errors.New("the token is for another conference")
	// ErrNotInvited: the bridge is not invited to the conference.
	ErrNotInvited = errors.New("the bridge is not invited to this conference")
	// ErrConferenceClosed: the conference is not open for joining, or there is none.
	ErrConferenceClosed = errors.New("the conference is not open")
	// ErrRoleCannotJoin: the token's role does not join conferences.
	ErrRoleCannotJoin = errors.New("this role does not join conferences")
)

// NewToken returns 32 random bytes, URL-safe base64 encoded.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func tokenKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// IssueToken creates a token for g and returns it. The token itself is
// shown once; the store keeps its hash.
func (s *Store) IssueToken(g Grant) (string, error) {
	switch g.Role {
	case RoleHost:
		if g.Conference == "" {
			return "", errors.New("a host token needs a conference")
		}
	case RoleRoom:
		if g.Bridge == "" {
			return "", errors.New("a room token needs a bridge")
		}
	case RoleViewer:
		if g.Conference == "" {
			return "", errors.New("a viewer token needs a conference")
		}
	case RoleTechnician:
	default:
		return "", fmt.Errorf("unknown role %q", g.Role)
	}
	g.Issued = s.now().UTC()
	if !g.Expires.IsZero() {
		if !g.Expires.After(g.Issued) {
			return "", errors.New("the expiry must be in the future")
		}
		g.Expires = g.Expires.UTC()
	}
	tok := NewToken()
	err := s.db.Update(func(tx kvTx) error {
		if err := pruneTokens(tx, g.Issued); err != nil {
			return err
		}
		return put(tx, bucketTokens, tokenKey(tok), g)
	})
	return tok, err
}

// expired says whether g's time is up at now.
func (g Grant) expired(now time.Time) bool {
	return !g.Expires.IsZero() && !now.Before(g.Expires)
}

// pruneTokens drops the expired tokens (viewer links expire daily: the
// bucket would otherwise grow with every meeting).
func pruneTokens(tx kvTx, now time.Time) error {
	return deleteMatching(tx.Bucket(bucketTokens), func(g Grant) bool { return g.expired(now) }, nil)
}

// Authenticate returns what a token grants.
func (s *Store) Authenticate(token string) (Grant, error) {
	if token == "" {
		return Grant{}, ErrTokenRequired
	}
	var g Grant
	err := s.db.View(func(tx kvTx) (err error) {
		g, err = tokenGrant(tx, tokenKey(token), s.now())
		return err
	})
	return g, err
}

// tokenGrant is what the token stored under key grants at now.
func tokenGrant(tx kvTx, key string, now time.Time) (Grant, error) {
	var g Grant
	err := get(tx, bucketTokens, key, &g)
	switch {
	case errors.Is(err, ErrNotFound):
		return Grant{}, ErrTokenInvalid
	case err == nil && g.expired(now):
		return Grant{}, ErrTokenExpired
	}
	return g, err
}

// RevokeToken makes a token unusable.
func (s *Store) RevokeToken(token string) error {
	return s.db.Update(func(tx kvTx) error { return tx.Bucket(bucketTokens).Delete([]byte(tokenKey(token))) })
}

// Admission is a granted join.
type Admission struct {
	Role       Role
	Conference Conference
	Bridge     Bridge // the room's bridge; for the host, the hub
}

// HubBridge is the bridge that stands for the hub in every conference.
var HubBridge = Bridge{ID: "hub", Name: "Hub", Kind: KindHub}

// Admit decides whether token may join a conference. conferenceID may be
// empty for a room terminal: it then joins the one open conference its
// bridge is invited to.
func (s *Store) Admit(token, conferenceID string) (Admission, error) {
	g, err := s.Authenticate(token)
	if err != nil {
		return Admission{}, err
	}
	return s.AdmitGrant(g, conferenceID)
}

// AdmitGrant decides whether what g grants (a token's, or a login
// session's) may join a conference. A host login (no conference of its
// own) chairs whichever conference it names.
func (s *Store) AdmitGrant(g Grant, conferenceID string) (Admission, error) {
	switch g.Role {
	case RoleHost:
		if conferenceID == "" {
			conferenceID = g.Conference
		}
		if g.Conference != "" && conferenceID != g.Conference {
			return Admission{}, ErrWrongConference
		}
		c, err := s.Conference(conferenceID)
		if err != nil {
			return Admission{}, ErrConferenceClosed
		}
		if c.State == StateEnded {
			return Admission{}, ErrConferenceClosed
		}
		return Admission{Role: RoleHost, Conference: c, Bridge: HubBridge}, nil
	case RoleRoom:
		b, err := s.Bridge(g.Bridge)
		if err != nil || ReservedBridgeID(b.ID) {
			return Admission{}, ErrTokenInvalid // the bridge was removed from the registry, or is the server's own
		}
		c, err := s.roomConference(b.ID, conferenceID)
		if err != nil {
			return Admission{}, err
		}
		return Admission{Role: RoleRoom, Conference: c, Bridge: b}, nil
	case RoleViewer:
		if conferenceID == "" {
			conferenceID = g.Conference
		}
		if conferenceID != g.Conference {
			return Admission{}, ErrWrongConference
		}
		c, err := s.Conference(conferenceID)
		if err != nil || !c.Joinable() {
			return Admission{}, ErrConferenceClosed
		}
		return Admission{Role: RoleViewer, Conference: c, Bridge: ViewerBridge}, nil
	}
	return Admission{}, ErrRoleCannotJoin
}

func (s *Store) roomConference(bridgeID, conferenceID string) (Conference, error) {
	if conferenceID != "" {
		c, err := s.Conference(conferenceID)
		switch {
		case err != nil:
			return c, ErrConferenceClosed
		case !c.Invites(bridgeID):
			return c, ErrNotInvited
		case !c.Joinable():
			return c, ErrConferenceClosed
		}
		return c, nil
	}
	cs, err := s.Conferences()
	if err != nil {
		return Conference{}, err
	}
	// Prefer a live conference to an open one, then the oldest.
	slices.SortStableFunc(cs, func(a, b Conference) int {
		if (a.State == StateLive) != (b.State == StateLive) {
			if a.State == StateLive {
				return -1
			}
			return 1
		}
		return a.Created.Compare(b.Created)
	})
	for _, c := range cs {
		if c.Joinable() && c.Invites(bridgeID) {
			return c, nil
		}
	}
	return Conference{}, ErrConferenceClosed
}

// ViewerBridge stands for listen-only viewers: they are nobody's bridge.
var ViewerBridge = Bridge{ID: "viewer", Name: "Viewer", Kind: KindViewer}

// RevokeViewerLinks revokes every viewer token of a conference; it
// returns how many there were.
func (s *Store) RevokeViewerLinks(conference string) (int, error) {
	return s.revokeTokens(func(g Grant) bool { return g.Role == RoleViewer && g.Conference == conference })
}

// RevokeTerminalLinks revokes every room token of a bridge (a terminal
// lost or replaced); it returns how many there were.
func (s *Store) RevokeTerminalLinks(bridge string) (int, error) {
	return s.revokeTokens(func(g Grant) bool { return g.Role == RoleRoom && g.Bridge == bridge })
}

// RevokeHostLinks revokes every host token of a conference; it returns
// how many there were.
func (s *Store) RevokeHostLinks(conference string) (int, error) {
	return s.revokeTokens(func(g Grant) bool { return g.Role == RoleHost && g.Conference == conference })
}

// RevokeTechnicianLinks revokes the technician tokens issued under name
// (the first start's is SeedTechnicianName); it returns how many there were.
func (s *Store) RevokeTechnicianLinks(name string) (int, error) {
	return s.revokeTokens(func(g Grant) bool {
		return g.Role == RoleTechnician && (g.Name == name || g.Name == "" && name == SeedTechnicianName)
	})
}

// revokeTokens deletes the tokens whose grant matches.
func (s *Store) revokeTokens(match func(Grant) bool) (int, error) {
	n := 0
	err := s.db.Update(func(tx kvTx) error {
		return deleteMatching(tx.Bucket(bucketTokens), match, &n)
	})
	return n, err
}

// deleteMatching deletes the grants of b that match, counting them in n
// (if not nil).
func deleteMatching(b kvBucket, match func(Grant) bool, n *int) error {
	var dead [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var g Grant
		if err := jsonUnmarshal(v, &g); err != nil {
			return err
		}
		if match(g) {
			dead = append(dead, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if n != nil {
		*n = len(dead)
	}
	return nil
}
