package controlplane

import (
	"bytes"
	"fmt"
)

// Demo is what the first start on an empty store created: the tokens are
// shown to the operator once and never again.
type Demo struct {
	Conference      Conference
	Bridges         int
	HostToken       string
	TechnicianToken string
	// AdminPassword is the password of the "admin" login created with
	// the demo (shown once; change it on the admin page).
	AdminPassword string
}

// SeedDemo fills an empty store with the sample registry (CSV), one open
// conference inviting every bridge, a host token for it and a technician
// token. It returns ok=false, doing nothing, when the store was seeded
// before.
func (s *Store) SeedDemo(registryCSV []byte, title string) (demo Demo, ok bool, err error) {
	var seeded bool
	if err := s.db.View(func(tx kvTx) error {
		seeded = tx.Bucket(bucketMeta).Get(keySeeded) != nil
		return nil
	}); err != nil || seeded {
		return Demo{}, false, err
	}
	bridges, bad, err := ParseBridgesCSV(bytes.NewReader(registryCSV))
	if err != nil {
		return Demo{}, false, err
	}
	if len(bad) > 0 {
		return Demo{}, false, fmt.Errorf("sample registry line %d: %s", bad[0].Line, bad[0].Err)
	}
	if err := s.PutBridges(bridges); err != nil {
		return Demo{}, false, err
	}
	c, err := s.CreateConference(Conference{Title: title, State: StateOpen, AllBridges: true})
	if err != nil {
		return Demo{}, false, err
	}
	host, err := s.IssueToken(Grant{Role: RoleHost, Conference: c.ID})
	if err != nil {
		return Demo{}, false, err
	}
	tech, err := s.IssueToken(Grant{Role: RoleTechnician, Name: SeedTechnicianName})
	if err != nil {
		return Demo{}, false, err
	}
	adminPassword := NewToken()[:16]
	if _, err := s.AddUser("admin", RoleAdmin, "Administrator", adminPassword); err != nil {
		return Demo{}, false, err
	}
	err = s.db.Update(func(tx kvTx) error {
		return tx.Bucket(bucketMeta).Put(keySeeded, []byte(s.now().UTC().Format("2006-01-02T15:04:05Z")))
	})
	return Demo{Conference: c, Bridges: len(bridges), HostToken: host, TechnicianToken: tech, AdminPassword: adminPassword}, true, err
}
