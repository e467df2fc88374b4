package controlplane

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// People with a login: administrators (registry, users, conferences),
// hosts (chair conferences) and technicians (watch and fix links). Room
// terminals have no login: their provisioned link token is their
// credential (tokens.go).

// RoleAdmin manages the registry, the users and the conferences.
const RoleAdmin Role = "admin"

var (
	bucketUsers    = []byte("users")
	bucketSessions = []byte("sessions")
)

// User is one person with a login. The password is kept only as a bcrypt
// hash.
type User struct {
	Name     string    `json:"name"`
	Role     Role      `json:"role"`
	Display  string    `json:"display,omitempty"`
	Hash     []byte    `json:"hash,omitempty"`
	Created  time.Time `json:"created"`
	Disabled bool      `json:"disabled,omitempty"`
}

// Login errors.
var (
	// ErrBadLogin: unknown user, wrong password or disabled user (one
	// error for all, so a caller cannot tell which names exist).
	ErrBadLogin = errors.New("wrong name or password")
	// ErrUserExists: AddUser with a name already taken.
	ErrUserExists = errors.New("a user with that name exists")
	// ErrSessionInvalid: unknown, expired or logged-out session.
	ErrSessionInvalid = errors.New("the session has expired; log in again")
)

// Password and session rules.
const (
	MinPassword = 10
	MaxPassword = 72 // bcrypt's limit
	// SessionLifetime is how long a login lasts.
	SessionLifetime = 12 * time.Hour
)

// PasswordCost is bcrypt's cost for new hashes: 11 is about 100 ms a check
// on a small server. Tests lower it to bcrypt.MinCost to run fast.
var PasswordCost = 11

var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)

// loginRoles are the roles a person may have.
var loginRoles = []Role{RoleAdmin, RoleHost, RoleTechnician}

// ValidRole reports whether r is a role a user may have.
func ValidRole(r Role) bool { return slices.Contains(loginRoles, r) }

func checkPassword(p string) error {
	switch {
	case len(p) < MinPassword:
		return fmt.Errorf("the password needs at least %d characters", MinPassword)
	case len(p) > MaxPassword:
		return fmt.Errorf("the password may have at most %d bytes", MaxPassword)
	}
	return nil
}

// AddUser creates a login.
func (s *Store) AddUser(name string, role Role, display, password string) (User, error) {
	name = strings.TrimSpace(name)
	if !userName.MatchString(name) {
		return User{}, fmt.Errorf("name %q: want 1-32 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	}
	if !ValidRole(role) {
		return User{}, fmt.Errorf("role %q: want admin, host or technician", role)
	}
	if len(display) > 120 {
		return User{}, errors.New("display name is longer than 120 characters")
	}
	if err := checkPassword(password); err != nil {
		return User{}, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), PasswordCost)
	if err != nil {
		return User{}, err
	}
	u := User{Name: name, Role: role, Display: strings.TrimSpace(display), Hash: hash, Created: s.now().UTC()}
	err = s.db.Update(func(tx kvTx) error {
		if tx.Bucket(bucketUsers).Get([]byte(name)) != nil {
			return ErrUserExists
		}
		return put(tx, bucketUsers, name, u)
	})
	u.Hash = nil
	return u, err
}

// SetPassword changes a user's password and ends their sessions.
func (s *Store) SetPassword(name, password string) error {
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), PasswordCost)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx kvTx) error {
		var u User
		if err := get(tx, bucketUsers, name, &u); err != nil {
			return err
		}
		u.Hash = hash
		if err := put(tx, bucketUsers, name, u); err != nil {
			return err
		}
		return endSessions(tx, name)
	})
}

// DeleteUser removes a login and ends its sessions.
func (s *Store) DeleteUser(name string) error {
	return s.db.Update(func(tx kvTx) error {
		if tx.Bucket(bucketUsers).Get([]byte(name)) == nil {
			return ErrNotFound
		}
		if err := tx.Bucket(bucketUsers).Delete([]byte(name)); err != nil {
			return err
		}
		return endSessions(tx, name)
	})
}

// SetDisabled disables (or enables again) a login; disabling ends its
// sessions.
func (s *Store) SetDisabled(name string, disabled bool) error {
	return s.db.Update(func(tx kvTx) error {
		var u User
		if err := get(tx, bucketUsers, name, &u); err != nil {
			return err
		}
		u.Disabled = disabled
		if err := put(tx, bucketUsers, name, u); err != nil {
			return err
		}
		if disabled {
			return endSessions(tx, name)
		}
		return nil
	})
}

// Users lists the logins (without their hashes), by name.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := s.db.View(func(tx kvTx) error {
		var err error
		out, err = all[User](tx, bucketUsers)
		return err
	})
	for i := range out {
		out[i].Hash = nil
	}
	return out, err
}

// dummyHash is compared against when the user does not exist, so that an
// unknown name costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("citybridge-no-such-user"), PasswordCost)
	return h
})

// CheckPassword returns the user if the password is theirs and the login
// is enabled; ErrBadLogin otherwise, whatever the reason.
func (s *Store) CheckPassword(name, password string) (User, error) {
	var u User
	err := s.db.View(func(tx kvTx) error { return get(tx, bucketUsers, name, &u) })
	if err != nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		if errors.Is(err, ErrNotFound) {
			return User{}, ErrBadLogin
		}
		return User{}, err
	}
	if bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) != nil || u.Disabled {
		return User{}, ErrBadLogin
	}
	u.Hash = nil
	return u, nil
}

// session is a login's server-side record, keyed by the SHA-256 of the
// cookie's value.
type session struct {
	User    string    `json:"user"`
	Role    Role      `json:"role"`
	Expires time.Time `json:"expires"`
}

// NewSession starts a login session for user and returns the cookie value.
func (s *Store) NewSession(u User) (string, time.Time, error) {
	return s.NewSessionFor(u, SessionLifetime)
}

// NewSessionFor starts a login session that lasts ttl (a negative ttl
// makes one that has already expired: the authorization tests use it).
func (s *Store) NewSessionFor(u User, ttl time.Duration) (string, time.Time, error) {
	tok := NewToken()
	exp := s.now().Add(ttl).UTC()
	err := s.db.Update(func(tx kvTx) error {
		pruneSessions(tx, s.now())
		return put(tx, bucketSessions, tokenKey(tok), session{User: u.Name, Role: u.Role, Expires: exp})
	})
	return tok, exp, err
}

// SessionGrant returns what a session cookie grants: the user's current
// role (a changed or disabled user is seen at once).
func (s *Store) SessionGrant(cookie string) (Grant, error) {
	if cookie == "" {
		return Grant{}, ErrSessionInvalid
	}
	var g Grant
	err := s.db.View(func(tx kvTx) (err error) {
		g, err = sessionGrant(tx, tokenKey(cookie), s.now())
		return err
	})
	return g, err
}

// sessionGrant is what the session stored under key grants at now.
func sessionGrant(tx kvTx, key string, now time.Time) (Grant, error) {
	var ses session
	if err := get(tx, bucketSessions, key, &ses); err != nil || !now.Before(ses.Expires) {
		return Grant{}, ErrSessionInvalid
	}
	var u User
	if err := get(tx, bucketUsers, ses.User, &u); err != nil || u.Disabled {
		return Grant{}, ErrSessionInvalid
	}
	return Grant{Role: u.Role, User: u.Name}, nil
}

// EndSession logs a session out.
func (s *Store) EndSession(cookie string) error {
	return s.db.Update(func(tx kvTx) error { return tx.Bucket(bucketSessions).Delete([]byte(tokenKey(cookie))) })
}

func endSessions(tx kvTx, user string) error {
	b := tx.Bucket(bucketSessions)
	var dead [][]byte
	_ = b.ForEach(func(k, v []byte) error {
		var ses session
		if jsonUnmarshal(v, &ses) == nil && ses.User == user {
			dead = append(dead, slices.Clone(k))
		}
		return nil
	})
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// pruneSessions drops expired sessions (the bucket stays small: a city
// has tens of people with logins).
func pruneSessions(tx kvTx, now time.Time) {
	b := tx.Bucket(bucketSessions)
	var dead [][]byte
	_ = b.ForEach(func(k, v []byte) error {
		var ses session
		if jsonUnmarshal(v, &ses) != nil || !now.Before(ses.Expires) {
			dead = append(dead, slices.Clone(k))
		}
		return nil
	})
	for _, k := range dead {
		_ = b.Delete(k)
	}
}
