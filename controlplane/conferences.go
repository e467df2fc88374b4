package controlplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is where a conference is in its life.
type State string

// Conference states. Bridges may join only open or live conferences.
const (
	StateScheduled State = "scheduled"
	StateOpen      State = "open"
	StateLive      State = "live"
	StateEnded     State = "ended"
)

// Conference is one official meeting from the hub to its invited bridges.
type Conference struct {
	ID    string    `json:"id"`
	Title string    `json:"title"`
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	State State     `json:"state"`
	// AllBridges invites the whole registry; otherwise Bridges lists the
	// invited bridge IDs.
	AllBridges bool      `json:"all_bridges"`
	Bridges    []string  `json:"bridges,omitempty"`
	Created    time.Time `json:"created"`
	// AutoRecord starts recording when the conference goes live, by
	// "auto" (signaling/autorecord.go).
	AutoRecord bool `json:"auto_record,omitempty"`
}

// Invites reports whether the bridge is invited.
func (c Conference) Invites(bridgeID string) bool {
	return c.AllBridges || slices.Contains(c.Bridges, bridgeID)
}

// Joinable reports whether bridges may join now.
func (c Conference) Joinable() bool {
	return c.State == StateOpen || c.State == StateLive
}

// CreateConference stores a new conference and returns it with its ID.
func (s *Store) CreateConference(c Conference) (Conference, error) {
	if err := s.checkConference(c); err != nil {
		return c, err
	}
	if c.State == "" {
		c.State = StateScheduled
	}
	c.Created = s.now().UTC()
	err := s.db.Update(func(tx kvTx) error {
		seq, err := tx.Bucket(bucketConferences).NextSequence()
		if err != nil {
			return err
		}
		c.ID = fmt.Sprintf("c%d", seq)
		return put(tx, bucketConferences, c.ID, c)
	})
	return c, err
}

// Conference returns one conference.
func (s *Store) Conference(id string) (Conference, error) {
	var c Conference
	err := s.db.View(func(tx kvTx) error { return get(tx, bucketConferences, id, &c) })
	return c, err
}

// Conferences returns every conference.
func (s *Store) Conferences() ([]Conference, error) {
	var out []Conference
	err := s.db.View(func(tx kvTx) error {
		var err error
		out, err = all[Conference](tx, bucketConferences)
		return err
	})
	return out, err
}

// InvitedBridges returns the bridges invited to c that are in the registry.
func (s *Store) InvitedBridges(c Conference) ([]Bridge, error) {
	bs, err := s.Bridges()
	if err != nil {
		return nil, err
	}
	out := bs[:0]
	for _, b := range bs {
		if b.Kind != KindHub && c.Invites(b.ID) {
			out = append(out, b)
		}
	}
	return out, nil
}

// checkConference validates a conference's editable fields against the
// registry.
func (s *Store) checkConference(c Conference) error {
	switch {
	case strings.TrimSpace(c.Title) == "":
		return errors.New("conference title is empty")
	case len(c.Title) > 200:
		return errors.New("conference title is longer than 200 characters")
	case !c.Start.IsZero() && !c.End.IsZero() && !c.End.After(c.Start):
		return errors.New("the conference ends before it starts")
	case c.AllBridges && len(c.Bridges) > 0:
		return errors.New("invite all bridges or a list, not both")
	case !c.AllBridges && len(c.Bridges) == 0:
		return errors.New("invite all bridges or a list of them")
	}
	seen := map[string]bool{}
	for _, id := range c.Bridges {
		if err := checkNotReserved(id); err != nil {
			return err
		}
		b, err := s.Bridge(id)
		if err != nil || b.Kind == KindHub {
			return fmt.Errorf("no bridge %q in the registry", id)
		}
		if seen[id] {
			return fmt.Errorf("bridge %q invited twice", id)
		}
		seen[id] = true
	}
	return nil
}

// UpdateConference changes a conference's title, schedule and invitations
// (not its state, not once it has ended).
func (s *Store) UpdateConference(c Conference) (Conference, error) {
	if err := s.checkConference(c); err != nil {
		return c, err
	}
	var out Conference
	err := s.db.Update(func(tx kvTx) error {
		if err := get(tx, bucketConferences, c.ID, &out); err != nil {
			return err
		}
		if out.State == StateEnded {
			return errors.New("the conference has ended")
		}
		out.Title, out.Start, out.End, out.AllBridges, out.Bridges = c.Title, c.Start, c.End, c.AllBridges, c.Bridges
		out.AutoRecord = c.AutoRecord
		return put(tx, bucketConferences, c.ID, out)
	})
	return out, err
}
