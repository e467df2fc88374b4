package controlplane

import (
	"errors"
)

// Credential names what admitted a session (a signaling participant, a
// WHIP or WHEP resource, a live feed), so that the session can be ended
// when it stops holding: a link revoked or expired, a login logged out,
// removed, disabled or given another role. It keeps only the hash.
type Credential struct {
	key   string // tokenKey of the link token or the session cookie
	login bool   // a login session's cookie, not a link token
	role  Role   // the role the session was admitted with (logins)
}

// TokenCredential is the credential of a link token.
func TokenCredential(token string) Credential { return Credential{key: tokenKey(token)} }

// SessionCredential is the credential of a login session's cookie that
// was admitted as role.
func SessionCredential(cookie string, role Role) Credential {
	return Credential{key: tokenKey(cookie), login: true, role: role}
}

// StillValid reports, for each credential, whether it still grants what
// it did, in one read of the store.
func (s *Store) StillValid(creds []Credential) ([]bool, error) {
	out := make([]bool, len(creds))
	now := s.now()
	err := s.db.View(func(tx kvTx) error {
		for i, c := range creds {
			if !c.login {
				var g Grant
				err := get(tx, bucketTokens, c.key, &g)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				out[i] = err == nil && !g.expired(now)
				continue
			}
			var ses session
			if get(tx, bucketSessions, c.key, &ses) != nil || !now.Before(ses.Expires) {
				continue
			}
			var u User
			out[i] = get(tx, bucketUsers, ses.User, &u) == nil && !u.Disabled && u.Role == c.role
		}
		return nil
	})
	return out, err
}
