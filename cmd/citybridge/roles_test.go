package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

// roleFixture is a test server with one credential of every kind the
// signaling role table names.
type roleFixture struct {
	ts      *testServer
	creds   map[string]roleCred
	room    string // a room link of ward-001
	other   string // a second conference, c2, chaired by the host login
	hostLog string // a host login's session cookie
}

// roleCred is how one credential joins: a token, or a login cookie on the
// upgrade request, and the conference named in the join.
type roleCred struct {
	token, cookie, conference string
}

func newRoleFixture(t *testing.T) *roleFixture {
	t.Helper()
	ts := startTestServer(t)
	st := ts.store
	f := &roleFixture{ts: ts, creds: map[string]roleCred{}}
	issue := func(g controlplane.Grant) string {
		t.Helper()
		tok, err := st.IssueToken(g)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	login := func(name string, role controlplane.Role) string {
		t.Helper()
		u, err := st.AddUser(name, role, "", "long-enough-1")
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := st.NewSession(u)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	c2, err := st.CreateConference(controlplane.Conference{Title: "Second", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	f.other = c2.ID
	f.room = issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	revoked := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-002"})
	if err := st.RevokeToken(revoked); err != nil {
		t.Fatal(err)
	}
	f.hostLog = login("chair", controlplane.RoleHost)
	c1 := ts.demo.Conference.ID
	f.creds = map[string]roleCred{
		"room link":                       {token: f.room},
		"host link":                       {token: ts.demo.HostToken, conference: c1},
		"host link of another conference": {token: ts.demo.HostToken, conference: c2.ID},
		"host login":                      {cookie: f.hostLog, conference: c1},
		"viewer link":                     {token: issue(controlplane.Grant{Role: controlplane.RoleViewer, Conference: c1}), conference: c1},
		"technician link":                 {token: ts.demo.TechnicianToken, conference: c1},
		"technician login":                {cookie: login("fixer", controlplane.RoleTechnician), conference: c1},
		"admin login":                     {cookie: login("boss", controlplane.RoleAdmin), conference: c1},
		"revoked link":                    {token: revoked},
		"no credential":                   {conference: c1},
	}
	// Issued last: issuing a token prunes the expired ones, and this one
	// must still be there, expired, when the test joins with it.
	expired := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-002", Expires: time.Now().Add(50 * time.Millisecond)})
	f.creds["expired link"] = roleCred{token: expired}
	waitFor(t, 5*time.Second, "the short link expired", func() bool {
		_, err := st.Authenticate(expired)
		return errors.Is(err, controlplane.ErrTokenExpired)
	})
	return f
}

// dial opens a signaling connection, with the login cookie if any.
func (f *roleFixture) dial(t *testing.T, cookie string) *websocket.Conn {
	t.Helper()
	h := http.Header{"Origin": {f.ts.base}}
	if cookie != "" {
		h.Set("Cookie", controlplane.SessionCookie+"="+cookie)
	}
	d := websocket.Dialer{TLSClientConfig: f.ts.client.Transport.(*http.Transport).TLSClientConfig, HandshakeTimeout: 3 * time.Second}
	c, _, err := d.DialContext(t.Context(), "wss"+strings.TrimPrefix(f.ts.base, "https")+"/signal", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// join dials and joins as cred; it returns the connection and "yes" or
// the join's error code.
func (f *roleFixture) join(t *testing.T, cred roleCred) (*websocket.Conn, string, *wire.Joined) {
	t.Helper()
	c := f.dial(t, cred.cookie)
	if err := wsSend(c, wire.Join{Token: cred.token, Conference: cred.conference}); err != nil {
		t.Fatal(err)
	}
	m, err := wsNext(c, 5*time.Second, wire.TypeJoined, wire.TypeError)
	if err != nil {
		t.Fatalf("join as %+v: %v", cred, err)
	}
	if j, ok := m.(*wire.Joined); ok {
		return c, "yes", j
	}
	return c, m.(*wire.Error).Code, nil
}

// closed says whether the server closes c within 5 s (messages before the
// close are read and dropped).
func closed(c *websocket.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ne interface{ Timeout() bool }
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// sentinel is a message of no type the server knows: its unknown_type
// error marks the end of the answers to whatever was sent before it.
const sentinel = `{"type":"sentinel"}`

// outcome sends one frame, then the sentinel, and returns "yes" if no
// error came before the sentinel's, else the first error's code. bye says
// the server said goodbye (or closed) before the sentinel was answered.
// Each session the test drives sends fewer control actions than the
// allowance takes at once, so rate_limited here is an answer like any.
func outcome(t *testing.T, c *websocket.Conn, typ int, frame []byte) (got string, bye bool) {
	t.Helper()
	sentinels := 1 // unknown_type errors that end the answer
	if string(frame) == sentinel {
		sentinels = 2
	}
	var codes []string
	if c.WriteMessage(typ, frame) != nil || c.WriteMessage(websocket.TextMessage, []byte(sentinel)) != nil {
		return "closed", true
	}
	for sentinels > 0 {
		m, err := wsNext(c, 5*time.Second, wire.TypeError, wire.TypeBye)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %v", frame, err)
			}
			bye = true
			break
		}
		if m.MessageType() == wire.TypeBye {
			bye = true
			break
		}
		e := m.(*wire.Error)
		codes = append(codes, e.Code)
		if e.Code == wire.CodeUnknownType && e.Request == "" {
			sentinels--
		}
	}
	if !bye {
		codes = codes[:len(codes)-1] // the sentinel's own answer
	}
	if len(codes) == 0 {
		return "yes", bye
	}
	return codes[0], bye
}

// messageFrames are the frames of the "Messages" table's rows.
func messageFrames(t *testing.T, f *roleFixture) map[string]struct {
	typ   int
	frame []byte
} {
	t.Helper()
	enc := func(m any) []byte {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	offer := audioOffer(t)
	text := websocket.TextMessage
	type fr = struct {
		typ   int
		frame []byte
	}
	cand := map[string]any{"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
	return map[string]fr{
		"`join`":             {text, enc(map[string]any{"type": "join", "token": f.room})},
		"`offer` on `pub`":   {text, enc(map[string]any{"type": "offer", "pc": "pub", "sdp": offer})},
		"`offer` on `sub`":   {text, enc(map[string]any{"type": "offer", "pc": "sub", "sdp": offer})},
		"`answer` on `sub`":  {text, enc(map[string]any{"type": "answer", "pc": "sub", "sdp": "v=0\r\n"})},
		"`answer` on `pub`":  {text, enc(map[string]any{"type": "answer", "pc": "pub", "sdp": "v=0\r\n"})},
		"`candidate`":        {text, enc(map[string]any{"type": "candidate", "pc": "pub", "candidate": cand})},
		"`restart` on `sub`": {text, enc(map[string]any{"type": "restart", "pc": "sub"})},
		"`restart` on `pub`": {text, enc(map[string]any{"type": "restart", "pc": "pub"})},
		"`report`":           {text, enc(map[string]any{"type": "report", "path": "udp", "fps": 25})},
		"`wall`":             {text, enc(map[string]any{"type": "wall", "tiles": []map[string]any{{"bridge": "ward-001", "width": 300, "height": 169}}})},
		"`leave`":            {text, enc(map[string]any{"type": "leave"})},
		"`control`":          {text, enc(map[string]any{"type": "control", "action": "raise_hand"})},
		"`binary frame`":     {websocket.BinaryMessage, []byte{1, 2, 3}},
		"`unknown type`":     {text, []byte(sentinel)},
	}
}

// TestSignalingRoleTable: docs/SECURITY.md's signaling tables are the
// rules, and the server keeps them. Every credential of "Who joins" joins
// (or is refused with its code, the connection closed and nothing
// stored); every message type of "Messages" is sent before a join, as a
// room and as the host; every action of "Signaling control actions" is
// sent by a room on itself, on another bridge and on the hub, and by the
// chair on a bridge and on a bridge not in the conference. Refused
// actions change nothing but the audit log, which holds every action
// sent, with its outcome.
func TestSignalingRoleTable(t *testing.T) {
	t.Parallel()
	f := newRoleFixture(t)
	st := f.ts.store

	t.Run("who joins", func(t *testing.T) {
		rows := securityTable(t, "### Who joins", 3)
		if len(rows) != len(f.creds) {
			t.Fatalf("docs/SECURITY.md lists %d credentials, the test knows %d", len(rows), len(f.creds))
		}
		for _, r := range rows {
			name, want := strings.Trim(r[0], "`"), r[1]
			cred, ok := f.creds[name]
			if !ok {
				t.Fatalf("docs/SECURITY.md names the credential %q, which the test does not know", name)
			}
			before := settled(t, st)
			c, got, joined := f.join(t, cred)
			if got != want {
				t.Errorf("join with a %s: %s, docs/SECURITY.md says %s", name, got, want)
			}
			if joined == nil {
				if !closed(c) {
					t.Errorf("join with a %s refused, but the connection stayed open", name)
				}
				after, _ := st.Snapshot()
				if d := diffKeys(withoutMonitor(before), withoutMonitor(after)); d != "" {
					t.Errorf("a refused join with a %s changed the store: %s", name, d)
				}
				continue
			}
			_ = wsSend(c, wire.Leave{})
			closed(c)
		}
	})

	t.Run("messages", func(t *testing.T) {
		frames := messageFrames(t, f)
		rows := securityTable(t, "### Messages", 4)
		if len(rows) != len(frames) {
			t.Fatalf("docs/SECURITY.md lists %d messages, the test knows %d", len(rows), len(frames))
		}
		// Before a join: a fresh connection per message.
		for _, r := range rows {
			fr, ok := frames[r[0]]
			if !ok {
				t.Fatalf("docs/SECURITY.md lists the message %s, which the test does not know", r[0])
			}
			c := f.dial(t, "")
			got, bye := outcome(t, c, fr.typ, fr.frame)
			if r[0] == "`join`" {
				if got != r[1] {
					t.Errorf("%s before a join: %s, docs/SECURITY.md says %s", r[0], got, r[1])
				}
				continue
			}
			if got != r[1] {
				t.Errorf("%s before a join: %s, docs/SECURITY.md says %s", r[0], got, r[1])
			}
			if !bye && !closed(c) {
				t.Errorf("%s before a join: the connection stayed open", r[0])
			}
		}
		// Joined, as a room and as the host: every message on one
		// connection, leave last.
		for col, cred := range map[int]roleCred{2: f.creds["room link"], 3: f.creds["host link"]} {
			c, got, _ := f.join(t, cred)
			if got != "yes" {
				t.Fatalf("join as %+v: %s", cred, got)
			}
			var leave []string
			for _, r := range rows {
				switch r[0] {
				case "`leave`":
					leave = r
					continue
				case "`control`":
					if r[col] != "below" {
						t.Errorf("docs/SECURITY.md: control's cell %q, want \"below\" (the control table)", r[col])
					}
					continue
				}
				fr := frames[r[0]]
				got, bye := outcome(t, c, fr.typ, fr.frame)
				if r[0] == "`answer` on `sub`" && got == wire.CodeNegotiationFailed {
					got = "yes" // accepted: the server tried it on its peer connection, which had no offer out
				}
				if got != r[col] || bye {
					t.Errorf("%s as column %d: %s (bye %v), docs/SECURITY.md says %s", r[0], col, got, bye, r[col])
				}
			}
			if err := wsSend(c, wire.Leave{}); err != nil {
				t.Fatal(err)
			}
			m, err := wsNext(c, 5*time.Second, wire.TypeBye)
			if leave[col] != "yes" || err != nil || m.(*wire.Bye).Reason != wire.ByeLeft {
				t.Errorf("leave: %v %v, docs/SECURITY.md says %s", m, err, leave[col])
			}
		}
	})

	t.Run("control actions", func(t *testing.T) {
		rows := securityTable(t, "### Signaling control actions", 6)
		if len(rows) != 14 {
			t.Fatalf("docs/SECURITY.md lists %d control actions, want the protocol's 14", len(rows))
		}
		join := func(cred roleCred) *websocket.Conn {
			c, got, _ := f.join(t, cred)
			if got != "yes" {
				t.Fatalf("join as %+v: %s", cred, got)
			}
			return c
		}
		room := func(bridge string) *websocket.Conn {
			tok, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: bridge})
			if err != nil {
				t.Fatal(err)
			}
			return join(roleCred{token: tok})
		}
		// Each column its own session, each with its own control allowance.
		columns := []struct {
			name   string
			c      *websocket.Conn
			bridge string
		}{
			{"room ward-011 on itself", room("ward-011"), ""},
			{"room ward-012 on another bridge", room("ward-012"), "ward-002"},
			{"room ward-013 on the hub", room("ward-013"), controlplane.HubBridge.ID},
			{"the chair of c1 on a bridge", join(f.creds["host link"]), "ward-002"},
			// The host login chairs the second conference: its "end" must
			// not end c1 before the first chair's actions.
			{"the chair of c2 on a bridge not in it", join(roleCred{cookie: f.hostLog, conference: f.other}), "no-such-bridge"},
		}
		audited := func() int {
			n := 0
			entries, err := st.AuditLog(time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Action, "control ") {
					n++
				}
			}
			return n
		}
		sent := 0
		auditBefore := audited()
		for col, column := range columns {
			// The chairs end their conferences last: the end sends everyone away.
			for _, r := range append(withoutEnd(rows), endRow(rows)) {
				action, want := strings.Trim(r[0], "`"), r[col+1]
				before := settled(t, st)
				frame, _ := json.Marshal(wire.Control{Action: action, Bridge: column.bridge})
				frame = []byte(strings.Replace(string(frame), "{", `{"type":"control",`, 1))
				got, bye := outcome(t, column.c, websocket.TextMessage, frame)
				sent++
				if got != want {
					t.Errorf("%s: %s %s, docs/SECURITY.md says %s", column.name, action, got, want)
				}
				if bye && action != string(controlplane.ActionEnd) {
					t.Errorf("%s: %s sent the session away", column.name, action)
				}
				if got == "yes" {
					continue
				}
				after, _ := st.Snapshot()
				for k := range after {
					// The audit log has the refusal; link events and
					// history are the monitor's, written every second
					// whatever the rooms send.
					if before[k] != after[k] && !strings.HasPrefix(k, "audit/") && !strings.HasPrefix(k, "events/") && !strings.HasPrefix(k, "history/") {
						t.Errorf("%s: the refused %s changed %s", column.name, action, k)
					}
				}
			}
		}
		// The chairs' "end" is audited after it has sent everyone away.
		waitFor(t, 5*time.Second, "every control action in the audit log", func() bool { return audited()-auditBefore >= sent })
		if got := audited() - auditBefore; got != sent {
			t.Errorf("%d control actions sent, %d in the audit log: every action, accepted or refused, is audited once", sent, got)
		}
	})
}

func withoutEnd(rows [][]string) [][]string {
	var out [][]string
	for _, r := range rows {
		if r[0] != "`"+string(controlplane.ActionEnd)+"`" {
			out = append(out, r)
		}
	}
	return out
}

func endRow(rows [][]string) []string {
	for _, r := range rows {
		if r[0] == "`"+string(controlplane.ActionEnd)+"`" {
			return r
		}
	}
	return nil
}

// settled returns the store's contents once what earlier steps set off
// has landed (a leave's attendance and events are written after the
// connection closes): two reads, waitFor's poll apart, that agree.
func settled(t *testing.T, st *controlplane.Store) map[string]string {
	t.Helper()
	var prev map[string]string
	waitFor(t, 5*time.Second, "the store to settle", func() bool {
		cur, err := st.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		same := prev != nil && diffKeys(prev, cur) == ""
		prev = cur
		return same
	})
	return prev
}

// withoutMonitor is a snapshot without the link monitor's records (events
// and history), which it writes every second whatever anyone sends.
func withoutMonitor(snap map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range snap {
		if !strings.HasPrefix(k, "events/") && !strings.HasPrefix(k, "history/") {
			out[k] = v
		}
	}
	return out
}
