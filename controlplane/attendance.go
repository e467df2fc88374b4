package controlplane

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// The attendance record: for every bridge of a conference, the intervals it
// was in the meeting. An interval is written when the bridge joins and
// closed when it leaves or is lost, each in its own committed bbolt
// transaction before the page hears back, so a server killed at any moment
// keeps every interval it acknowledged. Intervals still open when the
// server stopped are closed at its last heartbeat (see RecoverOpen).

var (
	bucketAttendance = []byte("attendance")
	bucketLive       = []byte("live")
	keyAlive         = []byte("alive")
)

// Why an interval ended.
const (
	EndLeft          = "left"           // the terminal said goodbye
	EndDropped       = "dropped"        // lost without a goodbye
	EndEnded         = "ended"          // the conference ended
	EndRevoked       = "revoked"        // its link or login was revoked or expired
	EndServerStopped = "server_stopped" // the server stopped (or was killed) while the bridge was in
)

// Link states, from best to worst; an interval keeps the worst it saw.
const (
	LinkGood   = "good"
	LinkFair   = "fair"
	LinkPoor   = "poor"
	LinkPaused = "paused"
)

var linkRank = map[string]int{"": 0, LinkGood: 1, LinkFair: 2, LinkPoor: 3, LinkPaused: 4}

// Interval is one stretch of a bridge's presence in a conference.
type Interval struct {
	Join  time.Time `json:"join"`
	Leave time.Time `json:"leave,omitzero"` // zero while the bridge is in
	Cause string    `json:"cause,omitempty"`
	Worst string    `json:"worst,omitempty"` // the worst link state seen
}

type intervalRecord struct {
	Conference string `json:"conference"`
	Bridge     string `json:"bridge"`
	Interval
}

// BridgeAttendance is one invited bridge's part of the record.
type BridgeAttendance struct {
	Bridge    string     `json:"bridge"`
	Name      string     `json:"name"`
	Intervals []Interval `json:"intervals"`
	// Connected is the time spent in the conference, in seconds (open
	// intervals count up to now).
	Connected float64 `json:"connected_seconds"`
	Drops     int     `json:"drops"`
	Worst     string  `json:"worst,omitempty"`
}

// attendanceKey orders a conference's intervals by bridge, then by time:
// conference NUL bridge NUL 8-byte sequence.
func attendanceKey(conference, bridge string, seq uint64) []byte {
	k := make([]byte, 0, len(conference)+len(bridge)+10)
	k = append(k, conference...)
	k = append(k, 0)
	k = append(k, bridge...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// bridgePrefix is the start of every key of the bridge's intervals in
// the conference.
func bridgePrefix(conference, bridge string) []byte {
	k := attendanceKey(conference, bridge, 0)
	return k[:len(k)-8]
}

func attendancePrefix(conference string) []byte {
	return append([]byte(conference), 0)
}

// lastInterval is the key of the bridge's latest interval (nil: none).
func lastInterval(b kvBucket, conference, bridge string) []byte {
	prefix := bridgePrefix(conference, bridge)
	c := b.Cursor()
	var last []byte
	for k, _ := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
		last = k
	}
	return slices.Clone(last)
}

// openInterval finds the bridge's open interval, if any.
func openInterval(b kvBucket, conference, bridge string) (key []byte, rec intervalRecord, ok bool) {
	return intervalOpen(b, lastInterval(b, conference, bridge))
}

// intervalOpen reads the interval at key (nil: none) if it is open.
func intervalOpen(b kvBucket, key []byte) (_ []byte, rec intervalRecord, ok bool) {
	if key == nil {
		return nil, rec, false
	}
	if err := jsonUnmarshal(b.Get(key), &rec); err != nil || !rec.Leave.IsZero() {
		return nil, rec, false
	}
	return key, rec, true
}

// AttendanceJoin opens an interval for the bridge, unless it has one open:
// a bridge whose connection was replaced, or that came back within the
// reconnection grace period, never left.
func (s *Store) AttendanceJoin(conference, bridge string) error {
	now := s.now().UTC()
	return s.db.Update(func(tx kvTx) error {
		b := tx.Bucket(bucketAttendance)
		last := lastInterval(b, conference, bridge)
		if _, _, ok := intervalOpen(b, last); ok {
			return nil
		}
		// The bridge's own sequence, not the bucket's: on etcd, bridges
		// joining at once (a whole conference after a failover) would
		// otherwise all write the bucket's counter and overtake each
		// other's transactions. Unique within the bridge's keys, which
		// is all a key needs.
		seq := uint64(1)
		if last != nil {
			seq = binary.BigEndian.Uint64(last[len(last)-8:]) + 1
		}
		return putRaw(b, attendanceKey(conference, bridge, seq), intervalRecord{
			Conference: conference, Bridge: bridge, Interval: Interval{Join: now, Worst: LinkGood},
		})
	})
}

// Attended says whether the bridge has been in the conference (it has an
// interval, open or closed): a locked conference lets it back in, on
// whichever node serves the conference now.
func (s *Store) Attended(conference, bridge string) bool {
	prefix := bridgePrefix(conference, bridge)
	found := false
	_ = s.db.View(func(tx kvTx) error {
		k, _ := tx.Bucket(bucketAttendance).Cursor().Seek(prefix)
		found = k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix)
		return nil
	})
	return found
}

// AttendanceLeave closes the bridge's open interval at the time it left
// (for a bridge lost and not back within the grace period, when it was
// lost), with cause.
func (s *Store) AttendanceLeave(conference, bridge, cause string, at time.Time) error {
	return s.db.Update(func(tx kvTx) error {
		b := tx.Bucket(bucketAttendance)
		k, rec, ok := openInterval(b, conference, bridge)
		if !ok {
			return nil
		}
		rec.Leave, rec.Cause = at.UTC(), cause
		if rec.Leave.Before(rec.Join) {
			rec.Leave = rec.Join
		}
		return putRaw(b, k, rec)
	})
}

// AttendanceLink records a link state seen during the bridge's open
// interval; the interval keeps the worst.
func (s *Store) AttendanceLink(conference, bridge, state string) error {
	if _, known := linkRank[state]; !known {
		return fmt.Errorf("unknown link state %q", state)
	}
	return s.db.Update(func(tx kvTx) error {
		b := tx.Bucket(bucketAttendance)
		k, rec, ok := openInterval(b, conference, bridge)
		if !ok || linkRank[state] <= linkRank[rec.Worst] {
			return nil
		}
		rec.Worst = state
		return putRaw(b, k, rec)
	})
}

// Heartbeat records that the server is alive now; RecoverOpen closes the
// intervals a killed server left open at the last heartbeat.
func (s *Store) Heartbeat() error {
	return s.db.Update(func(tx kvTx) error {
		return tx.Bucket(bucketMeta).Put(keyAlive, []byte(s.now().UTC().Format(time.RFC3339Nano)))
	})
}

// RecoverOpen closes every interval left open by a server that stopped
// without closing them, at its last heartbeat (or the interval's own
// start, if later), with EndServerStopped. Called once at start-up, before
// anyone can join. It returns how many it closed.
func (s *Store) RecoverOpen() (int, error) {
	n := 0
	err := s.db.Update(func(tx kvTx) error {
		alive, _ := time.Parse(time.RFC3339Nano, string(tx.Bucket(bucketMeta).Get(keyAlive)))
		var err error
		n, err = closeOpen(tx.Bucket(bucketAttendance), nil, alive, EndServerStopped)
		return err
	})
	return n, err
}

// Attendance returns the record of a conference: every invited bridge (and
// any other that joined), in registry order, with its intervals.
func (s *Store) Attendance(conferenceID string) ([]BridgeAttendance, error) {
	c, err := s.Conference(conferenceID)
	if err != nil {
		return nil, err
	}
	invited, err := s.InvitedBridges(c)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	byBridge := map[string]*BridgeAttendance{}
	var out []*BridgeAttendance
	for _, b := range invited {
		a := &BridgeAttendance{Bridge: b.ID, Name: b.Name, Intervals: []Interval{}}
		byBridge[b.ID] = a
		out = append(out, a)
	}
	err = s.db.View(func(tx kvTx) error {
		prefix := attendancePrefix(conferenceID)
		c := tx.Bucket(bucketAttendance).Cursor()
		for k, v := c.Seek(prefix); k != nil && string(k[:min(len(k), len(prefix))]) == string(prefix); k, v = c.Next() {
			var rec intervalRecord
			if err := jsonUnmarshal(v, &rec); err != nil {
				return err
			}
			a := byBridge[rec.Bridge]
			if a == nil {
				a = &BridgeAttendance{Bridge: rec.Bridge, Name: rec.Bridge}
				if rec.Bridge == HubBridge.ID {
					a.Name = HubBridge.Name
				}
				byBridge[rec.Bridge] = a
				out = append(out, a)
			}
			a.Intervals = append(a.Intervals, rec.Interval)
			end := rec.Leave
			if end.IsZero() {
				end = now
			}
			a.Connected += end.Sub(rec.Join).Seconds()
			if rec.Cause == EndDropped {
				a.Drops++
			}
			if linkRank[rec.Worst] > linkRank[a.Worst] {
				a.Worst = rec.Worst
			}
		}
		return nil
	})
	res := make([]BridgeAttendance, len(out))
	for i, a := range out {
		a.Connected = float64(int64(a.Connected*10)) / 10
		res[i] = *a
	}
	return res, err
}

// WriteAttendanceCSV writes the record as CSV: one row per interval (a
// bridge that never joined has one row with no times).
func WriteAttendanceCSV(w io.Writer, rec []BridgeAttendance) error {
	cw := NewCSVWriter(w)
	_ = cw.Write([]string{"bridge", "name", "join", "leave", "cause", "worst", "bridge_connected_seconds", "bridge_drops"})
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, a := range rec {
		total := strconv.FormatFloat(a.Connected, 'f', 1, 64)
		drops := strconv.Itoa(a.Drops)
		if len(a.Intervals) == 0 {
			_ = cw.Write([]string{a.Bridge, a.Name, "", "", "never_joined", "", total, drops})
			continue
		}
		for _, iv := range a.Intervals {
			_ = cw.Write([]string{a.Bridge, a.Name, ts(iv.Join), ts(iv.Leave), iv.Cause, iv.Worst, total, drops})
		}
	}
	cw.Flush()
	return cw.Error()
}

// LiveState is the part of a running conference that must survive a
// server restart: who holds the floor, who is unmuted, the lock and the
// raised hands, and whether it is being recorded (a restart resumes the
// recording).
type LiveState struct {
	Holder    string   `json:"holder,omitempty"`
	Unmuted   []string `json:"unmuted,omitempty"`
	Locked    bool     `json:"locked,omitempty"`
	Hands     []string `json:"hands,omitempty"`
	Recording bool     `json:"recording,omitempty"`
}

// Equal says whether two live states are the same (Unmuted sorted).
func (st LiveState) Equal(o LiveState) bool {
	return st.Holder == o.Holder && st.Locked == o.Locked && st.Recording == o.Recording &&
		slices.Equal(st.Unmuted, o.Unmuted) && slices.Equal(st.Hands, o.Hands)
}

// SaveLiveState stores a conference's live state.
func (s *Store) SaveLiveState(conferenceID string, st LiveState) error {
	return s.db.Update(func(tx kvTx) error { return put(tx, bucketLive, conferenceID, st) })
}

// LiveState returns a conference's stored live state (zero if none).
func (s *Store) LiveState(conferenceID string) (LiveState, error) {
	var st LiveState
	err := s.db.View(func(tx kvTx) error { return get(tx, bucketLive, conferenceID, &st) })
	if err == ErrNotFound {
		err = nil
	}
	return st, err
}

// conferenceMoves are the state changes a conference may make.
var conferenceMoves = map[State][]State{
	StateScheduled: {StateOpen, StateLive, StateEnded},
	StateOpen:      {StateLive, StateEnded},
	StateLive:      {StateEnded},
}

// SetConferenceState moves a conference to state to, if its life allows it
// (scheduled → open → live → ended; ended is final).
func (s *Store) SetConferenceState(id string, to State) (Conference, error) {
	var c Conference
	err := s.db.Update(func(tx kvTx) error {
		if err := get(tx, bucketConferences, id, &c); err != nil {
			return err
		}
		if c.State == to {
			return nil
		}
		if !slices.Contains(conferenceMoves[c.State], to) {
			return fmt.Errorf("a conference that is %s cannot become %s", c.State, to)
		}
		c.State = to
		return put(tx, bucketConferences, id, c)
	})
	return c, err
}
