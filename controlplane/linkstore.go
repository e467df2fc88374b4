package controlplane

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// The link-quality record: events (state changes, joins, leaves, drops,
// reconnects, layer changes, technician actions) and per-bridge history
// samples every 5 s. Both are keyed by time so that a query by time range
// is a cursor seek, and both are pruned by age.
var (
	bucketEvents  = []byte("events")
	bucketHistory = []byte("history") // one sub-bucket per bridge
)

// Retention of the link record.
const (
	EventsKeep  = 90 * 24 * time.Hour
	HistoryKeep = 24 * time.Hour
	// maxEvents bounds the event log whatever happens (a flapping bridge).
	maxEvents = 1_000_000
)

// Event kinds.
const (
	EventState     = "state"     // the quality state changed (Cause: good->fair, ...)
	EventJoin      = "join"      // joined the conference
	EventLeave     = "leave"     // left it (said goodbye, or the conference ended)
	EventDrop      = "drop"      // its connection was lost
	EventReconnect = "reconnect" // came back within the grace period
	EventLayer     = "layer"     // the layer served changed (Cause: the allocator's reason)
	EventAction    = "action"    // a technician acted on it
	EventAlert     = "alert"     // an alert was raised or cleared
)

// Event is one entry of the link record.
type Event struct {
	At         time.Time `json:"at"`
	Conference string    `json:"conference"`
	Bridge     string    `json:"bridge"`
	Kind       string    `json:"kind"`
	Cause      string    `json:"cause,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// eventKey orders events by time; the tag keeps two events of the same
// nanosecond apart.
func eventKey(at time.Time, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
	return binary.BigEndian.AppendUint64(k, seq)
}

// An event's tag: this process's random half, then its own count. Not
// the bucket's sequence: on etcd every writer would update that one key,
// and the events of rooms joining at once (a whole conference after a
// failover) overtook each other's transactions, sixteen runs each.
var (
	eventProcess = uint64(rand.Uint32()) << 32
	eventCount   atomic.Uint32
)

// AddEvents stores events in one fsynced transaction and prunes what is
// older than EventsKeep or beyond maxEvents.
func (s *Store) AddEvents(evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := s.now()
	return s.db.Update(func(tx kvTx) error {
		b := tx.Bucket(bucketEvents)
		counted := false
		for _, e := range evs {
			if e.At.IsZero() {
				e.At = now
			}
			n := eventCount.Add(1)
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := b.Put(eventKey(e.At, eventProcess|uint64(n)), v); err != nil {
				return err
			}
			counted = counted || n%1024 == 0
		}
		cutoff := eventKey(now.Add(-EventsKeep), 0)
		excess := 0
		if counted { // counting walks the bucket: only now and then
			excess = b.KeyCount() - maxEvents
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && (bytes.Compare(k, cutoff) < 0 || excess > 0); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			excess--
		}
		return nil
	})
}

// Events returns the events with from <= At < to (zero times: no bound),
// of one bridge ("" for all) and one conference ("" for all), oldest first,
// at most limit (0: no limit; the newest are kept).
func (s *Store) Events(conference, bridge string, from, to time.Time, limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx kvTx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		var k, v []byte
		if from.IsZero() {
			k, v = c.First()
		} else {
			k, v = c.Seek(eventKey(from, 0))
		}
		end := []byte(nil)
		if !to.IsZero() {
			end = eventKey(to, 0)
		}
		for ; k != nil && (end == nil || bytes.Compare(k, end) < 0); k, v = c.Next() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if (bridge != "" && e.Bridge != bridge) || (conference != "" && e.Conference != conference) {
				continue
			}
			out = append(out, e)
			if limit > 0 && len(out) > limit {
				out = out[1:]
			}
		}
		return nil
	})
	return out, err
}

// HistoryPoint is one bridge's link every HistoryEvery, kept HistoryKeep.
type HistoryPoint struct {
	At          time.Time `json:"at"`
	Score       int       `json:"score"`
	State       string    `json:"state"`
	Layer       int       `json:"layer"`
	RTTMs       float64   `json:"rtt_ms"`
	Loss        float64   `json:"loss"` // the worse direction, 0..1
	JitterMs    float64   `json:"jitter_ms"`
	SentBps     int       `json:"sent_bps"`
	RecvBps     int       `json:"recv_bps"`
	EstimateBps int       `json:"estimate_bps"`
}

var stateCodes = []string{"", QualityGood, QualityFair, QualityPoor, QualityLost}

func stateCode(s string) byte {
	for i, x := range stateCodes {
		if x == s {
			return byte(i)
		}
	}
	return 0
}

// encode packs a point into 23 bytes (the key holds the time): 168 bridges
// for 24 h at 5 s are 2.9 million points, so every byte counts.
func (p HistoryPoint) encode() []byte {
	clamp16 := func(f float64) uint16 { return uint16(math.Min(math.Max(math.Round(f), 0), math.MaxUint16)) }
	clamp32 := func(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) }
	b := make([]byte, 0, 23)
	b = append(b, byte(min(max(p.Score, 0), 100)), stateCode(p.State), byte(int8(max(min(p.Layer, 127), -1))))
	b = binary.BigEndian.AppendUint16(b, clamp16(p.RTTMs))
	b = binary.BigEndian.AppendUint16(b, clamp16(p.Loss*10000))
	b = binary.BigEndian.AppendUint16(b, clamp16(p.JitterMs*10))
	b = binary.BigEndian.AppendUint32(b, clamp32(p.SentBps))
	b = binary.BigEndian.AppendUint32(b, clamp32(p.RecvBps))
	b = binary.BigEndian.AppendUint32(b, clamp32(p.EstimateBps))
	return b
}

func decodePoint(k, v []byte) (HistoryPoint, bool) {
	if len(k) != 8 || len(v) < 21 {
		return HistoryPoint{}, false
	}
	p := HistoryPoint{At: time.Unix(0, int64(binary.BigEndian.Uint64(k)))}
	p.Score = int(v[0])
	if int(v[1]) < len(stateCodes) {
		p.State = stateCodes[v[1]]
	}
	p.Layer = int(int8(v[2]))
	p.RTTMs = float64(binary.BigEndian.Uint16(v[3:]))
	p.Loss = float64(binary.BigEndian.Uint16(v[5:])) / 10000
	p.JitterMs = float64(binary.BigEndian.Uint16(v[7:])) / 10
	p.SentBps = int(binary.BigEndian.Uint32(v[9:]))
	p.RecvBps = int(binary.BigEndian.Uint32(v[13:]))
	p.EstimateBps = int(binary.BigEndian.Uint32(v[17:]))
	return p, true
}

// AddHistory stores one point per bridge in one transaction and prunes each
// bridge's points older than HistoryKeep.
func (s *Store) AddHistory(points map[string]HistoryPoint) error {
	if len(points) == 0 {
		return nil
	}
	now := s.now()
	cutoff := binary.BigEndian.AppendUint64(nil, uint64(now.Add(-HistoryKeep).UnixNano()))
	return s.db.Update(func(tx kvTx) error {
		root := tx.Bucket(bucketHistory)
		for bridge, p := range points {
			b, err := root.CreateBucketIfNotExists([]byte(bridge))
			if err != nil {
				return err
			}
			if p.At.IsZero() {
				p.At = now
			}
			if err := b.Put(binary.BigEndian.AppendUint64(nil, uint64(p.At.UnixNano())), p.encode()); err != nil {
				return err
			}
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, cutoff) < 0; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// History returns one bridge's points with from <= At < to (zero: no
// bound), oldest first.
func (s *Store) History(bridge string, from, to time.Time) ([]HistoryPoint, error) {
	var out []HistoryPoint
	err := s.db.View(func(tx kvTx) error {
		b := tx.Bucket(bucketHistory).Bucket([]byte(bridge))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if from.IsZero() {
			k, v = c.First()
		} else {
			k, v = c.Seek(binary.BigEndian.AppendUint64(nil, uint64(from.UnixNano())))
		}
		for ; k != nil; k, v = c.Next() {
			p, ok := decodePoint(k, v)
			if !ok {
				continue
			}
			if !to.IsZero() && !p.At.Before(to) {
				break
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}
