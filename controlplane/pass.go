package controlplane

import (
	"bytes"
	"errors"
	"time"
)

// A login's pass lets a console logged in with a cookie join at another
// node of a cluster: the cookie is not sent to another node's address, and
// after a failover or a hand-over the console's page reaches the new
// owner from the page the old one served. The page keeps the pass in
// memory only and sends it in its join when it has no link token; the
// server gives it out on a cookie's join (in a cluster only) and takes it
// for as long as the login session lasts: logging out, the session's
// expiry or the user disabled end the pass too. It grants joining, nothing
// else (the REST API wants the cookie).
const passPrefix = "pass/"

type passRecord struct {
	Session string    `json:"session"` // the login session's key
	Expires time.Time `json:"expires"` // its expiry, for pruning
}

// ErrPassInvalid: no live login session has that pass.
var ErrPassInvalid = errors.New("controlplane: the pass is not known or its login has ended")

// SessionPass issues a pass for the login session of cookie, pruning the
// passes of sessions that have expired.
func (s *Store) SessionPass(cookie string) (string, error) {
	pass := NewToken()
	now := s.now()
	err := s.db.Update(func(tx kvTx) error {
		key := tokenKey(cookie)
		var ses session
		if err := get(tx, bucketSessions, key, &ses); err != nil || !now.Before(ses.Expires) {
			return ErrSessionInvalid
		}
		b := tx.Bucket(bucketCluster)
		var stale [][]byte
		c := b.Cursor()
		for k, v := c.Seek([]byte(passPrefix)); k != nil && bytes.HasPrefix(k, []byte(passPrefix)); k, v = c.Next() {
			var r passRecord
			if jsonUnmarshal(v, &r) != nil || !now.Before(r.Expires) {
				stale = append(stale, bytes.Clone(k))
			}
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return putRaw(b, []byte(passPrefix+tokenKey(pass)), passRecord{Session: key, Expires: ses.Expires})
	})
	if err != nil {
		return "", err
	}
	return pass, nil
}

// PassGrant is what the login session a pass was issued for grants now,
// and the credential to check it by while the session it admits lasts
// (the login session's own: ending the login ends the session).
func (s *Store) PassGrant(pass string) (Grant, Credential, error) {
	var g Grant
	var r passRecord
	err := s.db.View(func(tx kvTx) error {
		if pass == "" || get(tx, bucketCluster, passPrefix+tokenKey(pass), &r) != nil {
			return ErrPassInvalid
		}
		var err error
		if g, err = sessionGrant(tx, r.Session, s.now()); err != nil {
			return ErrPassInvalid
		}
		return nil
	})
	if err != nil {
		return Grant{}, Credential{}, err
	}
	return g, sessionKeyCredential(r.Session, g.Role), nil
}
