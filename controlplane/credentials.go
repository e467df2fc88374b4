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
	return sessionKeyCredential(tokenKey(cookie), role)
}

// sessionKeyCredential is the credential of the login session stored
// under key (a cookie's tokenKey), admitted as role: a cookie's, or a
// pass's (the pass names its session by key).
func sessionKeyCredential(key string, role Role) Credential {
	return Credential{key: key, login: true, role: role}
}

// StillValid reports, for each credential, whether it still grants what
// it did, in one read of the store.
func (s *Store) StillValid(creds []Credential) ([]bool, error) {
	out := make([]bool, len(creds))
	now := s.now()
	err := s.db.View(func(tx kvTx) error {
		for i, c := range creds {
			if !c.login {
				_, err := tokenGrant(tx, c.key, now)
				if err != nil && !errors.Is(err, ErrTokenInvalid) {
					return err
				}
				out[i] = err == nil
				continue
			}
			g, err := sessionGrant(tx, c.key, now)
			out[i] = err == nil && g.Role == c.role
		}
		return nil
	})
	return out, err
}
