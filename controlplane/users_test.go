package controlplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPasswordsAndSessions: right and wrong passwords, unknown and
// disabled users get the same refusal; sessions expire, end at logout,
// at a password change and when the user is removed; everything survives
// closing and reopening the file.
func TestPasswordsAndSessions(t *testing.T) {
	st, path := openTemp(t)
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	st.now = func() time.Time { return now }
	if _, err := st.AddUser("chair", RoleHost, "Chủ trì", "short"); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	if _, err := st.AddUser("Chair!", RoleHost, "", "long-enough-1"); err == nil {
		t.Fatal("a bad name was accepted")
	}
	if _, err := st.AddUser("chair", "room", "", "long-enough-1"); err == nil {
		t.Fatal("a room login was accepted")
	}
	if _, err := st.AddUser("chair", RoleHost, "Chủ trì", "long-enough-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddUser("chair", RoleHost, "", "long-enough-2"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("second chair: %v", err)
	}
	for _, tc := range []struct{ name, pw string }{{"chair", "wrong-password"}, {"nobody", "long-enough-1"}, {"chair", ""}} {
		if _, err := st.CheckPassword(tc.name, tc.pw); !errors.Is(err, ErrBadLogin) {
			t.Errorf("CheckPassword(%q, %q) = %v, want ErrBadLogin", tc.name, tc.pw, err)
		}
	}
	u, err := st.CheckPassword("chair", "long-enough-1")
	if err != nil || u.Role != RoleHost || u.Hash != nil {
		t.Fatalf("right password: %+v %v", u, err)
	}
	cookie, exp, err := st.NewSession(u)
	if err != nil || !exp.Equal(now.Add(SessionLifetime)) {
		t.Fatalf("session: %v %v", exp, err)
	}
	if g, err := st.SessionGrant(cookie); err != nil || g.Role != RoleHost || g.User != "chair" || g.Conference != "" {
		t.Fatalf("grant: %+v %v", g, err)
	}

	// Reopen the file: users and sessions are still there.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.now = func() time.Time { return now }
	if g, err := st.SessionGrant(cookie); err != nil || g.User != "chair" {
		t.Fatalf("session after reopening: %+v %v", g, err)
	}
	if _, err := st.CheckPassword("chair", "long-enough-1"); err != nil {
		t.Fatalf("password after reopening: %v", err)
	}

	// Disabled: no login, no session.
	if err := st.SetDisabled("chair", true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CheckPassword("chair", "long-enough-1"); !errors.Is(err, ErrBadLogin) {
		t.Fatalf("disabled user logged in: %v", err)
	}
	if _, err := st.SessionGrant(cookie); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("disabled user's session: %v", err)
	}
	_ = st.SetDisabled("chair", false)

	// Expiry, logout, password change.
	cookie, _, _ = st.NewSession(u)
	now = now.Add(SessionLifetime)
	if _, err := st.SessionGrant(cookie); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("expired session: %v", err)
	}
	cookie, _, _ = st.NewSession(u)
	_ = st.EndSession(cookie)
	if _, err := st.SessionGrant(cookie); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("logged-out session: %v", err)
	}
	cookie, _, _ = st.NewSession(u)
	if err := st.SetPassword("chair", "new-long-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SessionGrant(cookie); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("session after a password change: %v", err)
	}
	if _, err := st.CheckPassword("chair", "new-long-password"); err != nil {
		t.Fatal(err)
	}
	cookie, _, _ = st.NewSession(u)
	if err := st.DeleteUser("chair"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SessionGrant(cookie); !errors.Is(err, ErrSessionInvalid) {
		t.Fatalf("session of a removed user: %v", err)
	}
}

// TestLoginCookie: the login answer's cookie is HttpOnly, Secure and
// SameSite=Strict; a login from another site's page and repeated failures
// are refused.
func TestLoginCookie(t *testing.T) {
	st, _ := openTemp(t)
	if _, err := st.AddUser("fixer", RoleTechnician, "", "long-enough-1"); err != nil {
		t.Fatal(err)
	}
	api := NewAPI(st, func(string) map[string]string { return nil }, discardLogger())
	mux := http.NewServeMux()
	api.Register(mux)
	login := func(origin, name, pw string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "https://cb.example/api/login", strings.NewReader(`{"name":"`+name+`","password":"`+pw+`"}`))
		req.Header.Set("Origin", origin)
		req.RemoteAddr = "10.0.0.7:5000"
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	rec := login("https://cb.example", "fixer", "long-enough-1")
	cookies := rec.Result().Cookies()
	if rec.Code != 200 || len(cookies) != 1 {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	c := cookies[0]
	if c.Name != SessionCookie || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Fatalf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", c)
	}
	if rec := login("https://evil.example", "fixer", "long-enough-1"); rec.Code != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", rec.Code)
	}
	// One address guessing, a name at a time: after addressFailures
	// failures a minute, whatever the names, it is refused.
	for i := range addressFailures {
		if rec := login("https://cb.example", fmt.Sprintf("name%d", i), "wrong-password"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", rec.Code)
		}
	}
	if rec := login("https://cb.example", "fixer", "long-enough-1"); rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "too_many_attempts") {
		t.Fatalf("after %d failures: %d %s, want 429 too_many_attempts", addressFailures, rec.Code, rec.Body)
	}
}

// TestAccountLockout: failed logins for one account, spread over many
// addresses, do not lock the account for everyone (that would hand anyone
// a lever to shut the administrator out): each address that failed on it
// gets fewer tries on that name (pairFailuresUnderAttack) and then 429
// account_locked, even with the right password, while an address that
// never failed on it logs in. Unknown names are treated alike. The counts
// outlive a restart (the store's file is closed and opened again), and
// failures older than 15 minutes are not counted then. Refused attempts
// write nothing.
func TestAccountLockout(t *testing.T) {
	st, path := openTemp(t)
	for _, n := range []string{"fixer", "other", "elder"} {
		if _, err := st.AddUser(n, RoleTechnician, "", "long-enough-1"); err != nil {
			t.Fatal(err)
		}
	}
	// Failures for elder from one address, recorded 16 minutes ago.
	for range accountFailures {
		if err := st.Audit(AuditEntry{At: time.Now().Add(-16 * time.Minute), Who: "elder", Action: "login",
			Result: "bad_login", Remote: "10.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	NewAPI(st, func(string) map[string]string { return nil }, discardLogger()).Register(mux)
	login := func(name, pw string, from int) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "https://cb.example/api/login", strings.NewReader(`{"name":"`+name+`","password":"`+pw+`"}`))
		req.Header.Set("Origin", "https://cb.example")
		req.RemoteAddr = fmt.Sprintf("10.0.%d.%d:5000", from/250, from%250+1)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	for i := range accountFailures {
		if rec := login("fixer", "guess", i); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, rec.Code)
		}
		if rec := login("nobody", "guess", i); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d for an unknown name: %d", i, rec.Code)
		}
	}
	entries := func() int {
		es, err := st.AuditLog(time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	written := entries()
	check := func(when string) {
		t.Helper()
		for _, name := range []string{"fixer", "nobody"} {
			// A guessing address has one more try on the name, then none.
			if rec := login(name, "guess", 0); rec.Code != http.StatusUnauthorized && rec.Code != http.StatusTooManyRequests {
				t.Errorf("%s: %s, a guesser's next try: %d", when, name, rec.Code)
			}
			rec := login(name, "long-enough-1", 0)
			if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "account_locked") {
				t.Errorf("%s: %s with the right password from a guessing address: %d %s, want 429 account_locked", when, name, rec.Code, rec.Body)
			}
		}
		// Nobody else is shut out.
		for name, want := range map[string]int{"fixer": 200, "other": 200, "elder": 200, "nobody": 401} {
			if rec := login(name, "long-enough-1", 999); rec.Code != want {
				t.Errorf("%s: %s with the right password from a fresh address: %d %s, want %d", when, name, rec.Code, rec.Body, want)
			}
		}
	}
	check("before a restart")
	// The guesser's one more failure per name and the logins are written;
	// the refusals are not.
	if got := entries() - written; got > 2+4 {
		t.Errorf("%d audit entries for 2 failures and 4 logins: refusals were written", got)
	}

	// Restarted on the same file.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	mux = http.NewServeMux()
	NewAPI(st, func(string) map[string]string { return nil }, discardLogger()).Register(mux)
	check("after a restart")
}

// TestConferenceStates: the life of a conference, as a table.
func TestConferenceStates(t *testing.T) {
	st, _ := openTemp(t)
	for _, tc := range []struct {
		from, to State
		ok       bool
	}{
		{StateScheduled, StateOpen, true}, {StateScheduled, StateLive, true}, {StateScheduled, StateEnded, true},
		{StateOpen, StateLive, true}, {StateOpen, StateEnded, true}, {StateOpen, StateScheduled, false},
		{StateLive, StateEnded, true}, {StateLive, StateOpen, false}, {StateLive, StateScheduled, false},
		{StateEnded, StateOpen, false}, {StateEnded, StateLive, false}, {StateOpen, "paused", false},
		{StateLive, StateLive, true},
	} {
		c, err := st.CreateConference(Conference{Title: "T", State: tc.from, AllBridges: true})
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.SetConferenceState(c.ID, tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s → %s: err %v, want ok=%v", tc.from, tc.to, err, tc.ok)
		}
		if stored, _ := st.Conference(c.ID); tc.ok && stored.State != tc.to || !tc.ok && stored.State != tc.from || tc.ok && got.State != tc.to {
			t.Errorf("%s → %s: stored %s", tc.from, tc.to, stored.State)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
