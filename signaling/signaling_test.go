package signaling

import (
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling/wire"

	"github.com/gorilla/websocket"
)

type fixture struct {
	store *controlplane.Store
	sfu   *sfu.SFU
	srv   *Server
	http  *httptest.Server
	url   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, err := controlplane.Open(filepath.Join(t.TempDir(), "citybridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	media, err := sfu.New(sfu.Config{UDPConns: []net.PacketConn{conn}, AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = media.Close() })
	srv := New(Config{Store: store, SFU: media, JoinTimeout: 3 * time.Second})
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &fixture{store: store, sfu: media, srv: srv, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// wsClient is a raw protocol client.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	// floors are the floor states next skipped, oldest first.
	floors []wire.Floor
}

func (f *fixture) dial(t *testing.T) *wsClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(f.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(m wire.Message) {
	c.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next message other than a floor state, failing the test
// on timeout. Floor states are kept in c.floors.
func (c *wsClient) next() wire.Message {
	c.t.Helper()
	for {
		m := c.nextAny()
		if f, ok := m.(*wire.Floor); ok {
			c.floors = append(c.floors, *f)
			continue
		}
		return m
	}
}

// nextAny reads the next message, failing the test on timeout.
func (c *wsClient) nextAny() wire.Message {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	m, err := wire.Decode(b)
	if err != nil {
		c.t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// closedByServer reports whether the server closes the connection within
// a few seconds.
func (c *wsClient) closedByServer() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			var ne net.Error
			return !errors.As(err, &ne) || !ne.Timeout()
		}
	}
}

// TestJoinRequiresToken: a join with no token, a wrong token, a revoked
// token, another conference's host token or a bridge that is not invited is
// refused with its typed error, the connection is closed, and no peer or
// session is left behind. A valid token, for contrast, gets in.
func TestJoinRequiresToken(t *testing.T) {
	f := newFixture(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.store.PutBridges([]controlplane.Bridge{
		{ID: "ward-001", Name: "Ward 001", Kind: controlplane.KindWard},
		{ID: "ward-002", Name: "Ward 002", Kind: controlplane.KindWard},
	}))
	confA, err := f.store.CreateConference(controlplane.Conference{Title: "A", State: controlplane.StateOpen, Bridges: []string{"ward-001"}})
	must(err)
	confB, err := f.store.CreateConference(controlplane.Conference{Title: "B", State: controlplane.StateOpen, Bridges: []string{"ward-002"}})
	must(err)
	issue := func(g controlplane.Grant) string {
		tok, err := f.store.IssueToken(g)
		must(err)
		return tok
	}
	hostB := issue(controlplane.Grant{Role: controlplane.RoleHost, Conference: confB.ID})
	ward2 := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-002"})
	ward1 := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	revoked := issue(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	must(f.store.RevokeToken(revoked))

	for _, c := range []struct {
		name string
		join wire.Message
		code string
	}{
		{"no token", &wire.Join{Conference: confA.ID}, wire.CodeTokenRequired},
		{"wrong token", &wire.Join{Token: "not-a-token", Conference: confA.ID}, wire.CodeTokenInvalid},
		{"revoked token", &wire.Join{Token: revoked, Conference: confA.ID}, wire.CodeTokenInvalid},
		{"another conference's host token", &wire.Join{Token: hostB, Conference: confA.ID}, wire.CodeWrongConference},
		{"a bridge of another conference", &wire.Join{Token: ward2, Conference: confA.ID}, wire.CodeNotInvited},
		{"offer before join", &wire.Offer{PC: wire.PCPublish, SDP: "v=0"}, wire.CodeNotJoined},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := f.dial(t)
			cl.send(c.join)
			m := cl.next()
			e, ok := m.(*wire.Error)
			if !ok || e.Code != c.code {
				t.Fatalf("got %#v, want error %q", m, c.code)
			}
			if e.Message == "" {
				t.Error("error without a message")
			}
			if !cl.closedByServer() {
				t.Error("connection left open after a refused join")
			}
		})
	}
	if st := f.sfu.Stats(); st.Peers != 0 || st.Routers != 0 {
		t.Fatalf("refused joins left %d peers in %d routers", st.Peers, st.Routers)
	}
	if s := f.srv.Sessions(); len(s) != 0 && (s[controlplane.RoleHost]+s[controlplane.RoleRoom]) != 0 {
		t.Fatalf("refused joins left sessions %v", s)
	}

	// Contrast: the invited bridge's own token gets in, then leaves cleanly.
	cl := f.dial(t)
	cl.send(&wire.Join{Token: ward1, Conference: confA.ID})
	j, ok := cl.next().(*wire.Joined)
	if !ok || j.Participant != "ward-001" || j.Role != "room" || j.Conference.ID != confA.ID {
		t.Fatalf("valid join answered %#v", j)
	}
	if len(j.ICEServers) != 0 {
		t.Errorf("a page was given ICE servers %v", j.ICEServers)
	}
	if st := f.sfu.Stats(); st.Peers != 1 {
		t.Fatalf("after a valid join: %d peers, want 1", st.Peers)
	}
	cl.send(&wire.Leave{})
	if b, ok := cl.next().(*wire.Bye); !ok || b.Reason != wire.ByeLeft {
		t.Fatalf("leave answered %#v", b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.sfu.Stats().Peers != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("peer still there after leave: %+v", f.sfu.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSecondConnectionReplacesFirst: the same bridge joining twice keeps
// one peer; the first connection is told it was replaced.
func TestSecondConnectionReplacesFirst(t *testing.T) {
	f := newFixture(t)
	if err := f.store.PutBridges([]controlplane.Bridge{{ID: "ward-001", Name: "Ward 001", Kind: controlplane.KindWard}}); err != nil {
		t.Fatal(err)
	}
	c, err := f.store.CreateConference(controlplane.Conference{Title: "A", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	first := f.dial(t)
	first.send(&wire.Join{Token: tok, Conference: c.ID})
	if _, ok := first.next().(*wire.Joined); !ok {
		t.Fatal("first join refused")
	}
	second := f.dial(t)
	second.send(&wire.Join{Token: tok})
	if _, ok := second.next().(*wire.Joined); !ok {
		t.Fatal("second join refused")
	}
	if b, ok := first.next().(*wire.Bye); !ok || b.Reason != wire.ByeReplaced {
		t.Fatalf("first connection got %#v, want bye %q", b, wire.ByeReplaced)
	}
	if st := f.sfu.Stats(); st.Peers != 1 {
		t.Fatalf("%d peers for one bridge", st.Peers)
	}
	roster := f.srv.Roster(c.ID)
	if len(roster) != 1 || roster[0].State == wire.StateLeft {
		t.Fatalf("roster after replacement: %+v", roster)
	}
}

// TestBadMessagesAfterJoin: garbage from a joined client gets typed errors
// and leaves its session and media in place.
func TestBadMessagesAfterJoin(t *testing.T) {
	f := newFixture(t)
	c, err := f.store.CreateConference(controlplane.Conference{Title: "A", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	host, err := f.store.IssueToken(controlplane.Grant{Role: controlplane.RoleHost, Conference: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	cl := f.dial(t)
	cl.send(&wire.Join{Token: host})
	if _, ok := cl.next().(*wire.Joined); !ok {
		t.Fatal("host join refused")
	}
	if _, ok := cl.next().(*wire.Roster); !ok {
		t.Fatal("host got no roster")
	}
	for _, raw := range []struct{ msg, code string }{
		{`not json`, wire.CodeBadMessage},
		{`{"type":"dance"}`, wire.CodeUnknownType},
		{`{"type":"offer","pc":"pub","sdp":"this is not SDP"}`, wire.CodeNegotiationFailed},
		{`{"type":"offer","pc":"sub","sdp":"v=0"}`, wire.CodeBadMessage},
		{`{"type":"answer","pc":"sub","sdp":"v=0"}`, wire.CodeNegotiationFailed},
		{`{"type":"candidate","pc":"elsewhere","candidate":{"candidate":""}}`, wire.CodeBadMessage},
		{`{"type":"join","token":"x"}`, wire.CodeAlreadyJoined},
	} {
		if err := cl.conn.WriteMessage(websocket.TextMessage, []byte(raw.msg)); err != nil {
			t.Fatal(err)
		}
		e, ok := cl.next().(*wire.Error)
		if !ok || e.Code != raw.code {
			t.Fatalf("%s: got %#v, want error %q", raw.msg, e, raw.code)
		}
	}
	if st := f.sfu.Stats(); st.Peers != 1 {
		t.Fatalf("bad messages disturbed the session: %d peers", st.Peers)
	}
}
