package signaling

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/signaling/wire"
)

// floorFixture: a conference with three invited rooms, their tokens and
// the host's.
type floorFixture struct {
	*fixture
	conf  controlplane.Conference
	host  string
	rooms map[string]string // bridge -> token
}

func newFloorFixture(t *testing.T) *floorFixture {
	t.Helper()
	f := newFixture(t)
	bridges := []controlplane.Bridge{
		{ID: "room-a", Name: "A", Kind: controlplane.KindCommune},
		{ID: "room-b", Name: "B", Kind: controlplane.KindCommune},
		{ID: "room-c", Name: "C", Kind: controlplane.KindWard},
	}
	if err := f.store.PutBridges(bridges); err != nil {
		t.Fatal(err)
	}
	c, err := f.store.CreateConference(controlplane.Conference{Title: "Floor", State: controlplane.StateOpen, AllBridges: true})
	if err != nil {
		t.Fatal(err)
	}
	ff := &floorFixture{fixture: f, conf: c, rooms: map[string]string{}}
	if ff.host, err = f.store.IssueToken(controlplane.Grant{Role: controlplane.RoleHost, Conference: c.ID}); err != nil {
		t.Fatal(err)
	}
	for _, b := range bridges {
		if ff.rooms[b.ID], err = f.store.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: b.ID}); err != nil {
			t.Fatal(err)
		}
	}
	return ff
}

// join dials and joins with token, failing unless admitted.
func (ff *floorFixture) join(t *testing.T, token string) *wsClient {
	t.Helper()
	c := ff.dial(t)
	c.send(&wire.Join{Token: token, Conference: ff.conf.ID})
	if m, ok := c.next().(*wire.Joined); !ok {
		t.Fatalf("join refused: %#v", m)
	}
	c.floors = nil
	return c
}

// control sends an action and returns the error code, or "" and the first
// floor state that done accepts (floor states other participants caused
// are skipped; nil done accepts none, for actions that must be refused).
func (c *wsClient) control(t *testing.T, action controlplane.FloorAction, bridge string, done func(wire.Floor) bool) (string, wire.Floor) {
	t.Helper()
	c.send(&wire.Control{Action: string(action), Bridge: bridge})
	for {
		switch m := c.nextAny().(type) {
		case *wire.Error:
			return m.Code, wire.Floor{}
		case *wire.Floor:
			if done != nil && done(*m) {
				return "", *m
			}
		}
	}
}

// TestFloorRules: the server, not the page, enforces who may do what with
// the floor; refused actions change nothing; the state survives the
// conference's live state being rebuilt from the store.
func TestFloorRules(t *testing.T) {
	ff := newFloorFixture(t)
	host := ff.join(t, ff.host)
	a := ff.join(t, ff.rooms["room-a"])
	b := ff.join(t, ff.rooms["room-b"])

	// Rooms are muted when they join, and may not unmute themselves.
	if f, ok := a.nextAny().(*wire.Floor); !ok || len(f.Unmuted) != 0 || f.State != "open" {
		t.Fatalf("room A's first message after joined %#v: want the floor state, everyone muted", f)
	}
	for _, tc := range []struct {
		who    *wsClient
		name   string
		action controlplane.FloorAction
		bridge string
		code   string
	}{
		{a, "room unmutes itself without the floor", controlplane.ActionUnmute, "", wire.CodeNoFloor},
		{a, "room gives itself the floor", controlplane.ActionGiveFloor, "room-a", wire.CodeForbidden},
		{a, "room mutes another room", controlplane.ActionMute, "room-b", wire.CodeForbidden},
		{a, "room mutes everyone", controlplane.ActionMuteAll, "", wire.CodeForbidden},
		{a, "room locks", controlplane.ActionLock, "", wire.CodeForbidden},
		{a, "room ends the conference", controlplane.ActionEnd, "", wire.CodeForbidden},
		{a, "room shares a screen", controlplane.ActionShareScreen, "", wire.CodeForbidden},
		{host, "host raises a hand", controlplane.ActionRaiseHand, "", wire.CodeForbidden},
		{host, "host gives the floor to a stranger", controlplane.ActionGiveFloor, "room-zz", wire.CodeUnknownBridge},
		{host, "unknown action", "dance", "", wire.CodeBadMessage},
	} {
		if code, _ := tc.who.control(t, tc.action, tc.bridge, nil); code != tc.code {
			t.Errorf("%s: got %q, want %q", tc.name, code, tc.code)
		}
	}
	if live, _ := ff.store.LiveState(ff.conf.ID); live.Holder != "" || len(live.Unmuted) != 0 || live.Locked {
		t.Fatalf("refused actions changed the stored state: %+v", live)
	}

	// Hands: A raises, the host sees the queue and grants it.
	if code, f := a.control(t, controlplane.ActionRaiseHand, "", func(f wire.Floor) bool { return len(f.Hands) > 0 }); code != "" || !slices.Equal(f.Hands, []string{"room-a"}) {
		t.Fatalf("raise hand: %q %+v", code, f)
	}
	code, f := host.control(t, controlplane.ActionGiveFloor, "room-a", func(f wire.Floor) bool { return f.Holder == "room-a" })
	if code != "" || f.Holder != "room-a" || !slices.Equal(f.Unmuted, []string{"room-a"}) || len(f.Hands) != 0 {
		t.Fatalf("give floor: %q %+v", code, f)
	}
	// With the floor, A may mute and unmute itself; B still may not.
	if code, f := a.control(t, controlplane.ActionMute, "", func(f wire.Floor) bool { return len(f.Unmuted) == 0 }); code != "" || len(f.Unmuted) != 0 {
		t.Fatalf("holder mutes itself: %q %+v", code, f)
	}
	if code, f := a.control(t, controlplane.ActionUnmute, "", func(f wire.Floor) bool { return len(f.Unmuted) > 0 }); code != "" || !slices.Equal(f.Unmuted, []string{"room-a"}) {
		t.Fatalf("holder unmutes itself: %q %+v", code, f)
	}
	if code, _ := b.control(t, controlplane.ActionUnmute, "", nil); code != wire.CodeNoFloor {
		t.Fatalf("room B unmutes without the floor: %q", code)
	}
	// Passing the floor mutes the previous holder.
	if code, f := host.control(t, controlplane.ActionGiveFloor, "room-b", func(f wire.Floor) bool { return f.Holder == "room-b" }); code != "" || f.Holder != "room-b" || !slices.Equal(f.Unmuted, []string{"room-b"}) {
		t.Fatalf("floor to B: %q %+v", code, f)
	}
	if code, f := host.control(t, controlplane.ActionLock, "", func(f wire.Floor) bool { return f.Locked }); code != "" || !f.Locked {
		t.Fatalf("lock: %q %+v", code, f)
	}
	// Locked: C (never joined) is refused; A, who was in, may come back.
	c := ff.dial(t)
	c.send(&wire.Join{Token: ff.rooms["room-c"], Conference: ff.conf.ID})
	if e, ok := c.next().(*wire.Error); !ok || e.Code != wire.CodeConferenceLocked {
		t.Fatalf("join while locked: %#v, want %s", e, wire.CodeConferenceLocked)
	}
	ff.join(t, ff.rooms["room-a"])

	// The state is in the store, so a new live conference (a restarted
	// server) starts from it.
	live, err := ff.store.LiveState(ff.conf.ID)
	if err != nil || live.Holder != "room-b" || !live.Locked || !slices.Equal(live.Unmuted, []string{"room-b"}) {
		t.Fatalf("stored floor state %+v, %v", live, err)
	}
	conf, err := newConference(ff.srv, ff.conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conf.router.Close)
	if got := conf.floorMessage(); got.Holder != "room-b" || !got.Locked || !slices.Equal(got.Unmuted, []string{"room-b"}) {
		t.Fatalf("rebuilt conference's floor %+v", got)
	}

	// The host ends the conference: everyone is sent away, no one joins.
	if code, _ := host.control(t, controlplane.ActionEnd, "", func(f wire.Floor) bool { return f.State == "ended" }); code != "" {
		t.Fatalf("end: %q", code)
	}
	for {
		if bye, ok := b.nextAny().(*wire.Bye); ok {
			if bye.Reason != wire.ByeEnded {
				t.Fatalf("bye %q, want %q", bye.Reason, wire.ByeEnded)
			}
			break
		}
	}
	late := ff.dial(t)
	late.send(&wire.Join{Token: ff.rooms["room-b"], Conference: ff.conf.ID})
	if e, ok := late.next().(*wire.Error); !ok || e.Code != wire.CodeConferenceClosed {
		t.Fatalf("join after the end: %#v", e)
	}
}

// TestAttendanceRecord: join, drop, rejoin and leave make intervals with
// their causes.
func TestAttendanceRecord(t *testing.T) {
	ff := newFloorFixture(t)
	ff.srv.cfg.ReconnectGrace = 300 * time.Millisecond
	a := ff.join(t, ff.rooms["room-a"])
	_ = a.conn.Close() // lost without a goodbye, and not back within the grace period
	waitUntil(t, "room A dropped", func() bool { return ff.srv.Roster(ff.conf.ID)[0].State == wire.StateDropped })
	a = ff.join(t, ff.rooms["room-a"])
	a.send(&wire.Leave{})
	waitUntil(t, "room A left", func() bool { return ff.srv.Roster(ff.conf.ID)[0].State == wire.StateLeft })
	rec, err := ff.store.Attendance(ff.conf.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got controlplane.BridgeAttendance
	for _, r := range rec {
		if r.Bridge == "room-a" {
			got = r
		}
	}
	if len(got.Intervals) != 2 || got.Intervals[0].Cause != controlplane.EndDropped || got.Intervals[1].Cause != controlplane.EndLeft || got.Drops != 1 {
		t.Fatalf("room A's record %+v: want a dropped then a left interval", got)
	}
	if len(rec) != 3 || len(rec[1].Intervals) != 0 {
		t.Fatalf("record %+v: want three invited bridges, B never joined", rec)
	}
}

// waitUntil polls cond for up to five seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestResumeKeepsPlace: a room whose connection is lost shows as
// reconnecting; joining again with its resume token within the grace
// period gives it back the same media session and the same attendance
// interval. Without the token, or after the grace period, it starts over.
func TestResumeKeepsPlace(t *testing.T) {
	ff := newFloorFixture(t)
	ff.srv.cfg.ReconnectGrace = 2 * time.Second
	a := ff.dial(t)
	a.send(&wire.Join{Token: ff.rooms["room-a"], Conference: ff.conf.ID})
	joined, ok := a.next().(*wire.Joined)
	if !ok || joined.Resume == "" || joined.Resumed {
		t.Fatalf("first join: %#v", joined)
	}
	router, _ := ff.sfu.Router(ff.conf.ID)
	peer := router.Peer("room-a")
	_ = a.conn.Close()
	state := func() string { return ff.srv.Roster(ff.conf.ID)[0].State }
	waitUntil(t, "room A reconnecting", func() bool { return state() == wire.StateReconnecting })
	if router.Peer("room-a") != peer {
		t.Fatal("the media session went away with the signaling connection")
	}

	// A stranger's resume token does not take the place: a wrong token
	// is a fresh join (new media session).
	b := ff.dial(t)
	b.send(&wire.Join{Token: ff.rooms["room-a"], Conference: ff.conf.ID, Resume: "not-the-token"})
	jb, ok := b.next().(*wire.Joined)
	if !ok || jb.Resumed {
		t.Fatalf("join with a wrong resume token: %#v", jb)
	}
	if router.Peer("room-a") == peer {
		t.Fatal("a wrong resume token kept the old media session")
	}
	peer = router.Peer("room-a")
	_ = b.conn.Close()
	waitUntil(t, "room A reconnecting again", func() bool { return state() == wire.StateReconnecting })

	// The right token within the grace period: same peer, same interval.
	b2, _ := ff.store.Attendance(ff.conf.ID)
	c := ff.dial(t)
	c.send(&wire.Join{Token: ff.rooms["room-a"], Conference: ff.conf.ID, Resume: jb.Resume})
	j, ok := c.next().(*wire.Joined)
	if !ok || !j.Resumed {
		t.Fatalf("resume: %#v", j)
	}
	if router.Peer("room-a") != peer || ff.sfu.Stats().Peers != 1 {
		t.Fatalf("resume did not keep the media session (peers %d)", ff.sfu.Stats().Peers)
	}
	rec, _ := ff.store.Attendance(ff.conf.ID)
	if len(rec[0].Intervals) != 1 || !rec[0].Intervals[0].Leave.IsZero() || len(b2[0].Intervals) != 1 {
		t.Fatalf("attendance after a resume: %+v, want one open interval", rec[0])
	}

	// Lost again and not back: dropped after the grace period, the
	// interval ending when the connection was lost.
	lost := time.Now()
	_ = c.conn.Close()
	waitUntil(t, "room A dropped", func() bool { return state() == wire.StateDropped })
	if time.Since(lost) < 2*time.Second {
		t.Fatalf("dropped %v after the loss, before the 2 s grace period", time.Since(lost))
	}
	rec, _ = ff.store.Attendance(ff.conf.ID)
	iv := rec[0].Intervals
	if len(iv) != 1 || iv[0].Cause != controlplane.EndDropped || iv[0].Leave.Sub(lost).Abs() > 500*time.Millisecond {
		t.Fatalf("attendance after the grace period: %+v, want one interval dropped at %v", iv, lost.UTC())
	}
	if router.Peer("room-a") != nil {
		t.Fatal("the media session outlived the grace period")
	}
}

// TestFloorWords: signaling maps the control plane's floor words onto its
// messages without changing them: the pages' floor message is the JSON
// the API returns for the same state, and a refused floor action carries
// the same code on the wire as in the API.
func TestFloorWords(t *testing.T) {
	for _, f := range []controlplane.FloorState{
		{
			State: controlplane.StateLive, Holder: "room-a", HolderName: "Phường A", Unmuted: []string{"room-a", "room-b"},
			Locked: true, Hands: []string{"room-c"}, Screen: "screen", Speaker: "room-b",
		},
		{State: controlplane.StateOpen, Unmuted: []string{}, Hands: []string{}}, // as floorState builds it
	} {
		api, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		page, err := json.Marshal(floorToWire(f))
		if err != nil {
			t.Fatal(err)
		}
		if string(page) != string(api) {
			t.Errorf("floor message %s, API %s", page, api)
		}
	}
	for _, why := range []controlplane.RefusalReason{
		controlplane.RefusedBadAction, controlplane.RefusedForbidden, controlplane.RefusedUnknownBridge,
		controlplane.RefusedNoFloor, controlplane.RefusedEnded, controlplane.RefusedBadState,
	} {
		if code := refusalCode(why); code != string(why) {
			t.Errorf("refused %s: wire code %s", why, code)
		}
	}
}
