package controlplane

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is what sort of place a bridge point is.
type Kind string

// The kinds of bridge points.
const (
	KindCommune     Kind = "commune"
	KindWard        Kind = "ward"
	KindSpecialZone Kind = "special_zone"
	KindHub         Kind = "hub"
	// KindViewer is the pseudo-bridge of listen-only viewers (never in
	// the registry).
	KindViewer Kind = "viewer"
)

// Bridge is one connected meeting room ("bridge point").
type Bridge struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Area    string `json:"area,omitempty"`
	Contact string `json:"contact,omitempty"`
}

// bridgeID: short, lower-case, safe in URLs and in SDP stream IDs.
var bridgeID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Validate reports what is wrong with b, if anything.
func (b Bridge) Validate() error {
	switch {
	case !bridgeID.MatchString(b.ID):
		return fmt.Errorf("id %q: want 1-32 of a-z, 0-9 and -, starting with a letter or digit", b.ID)
	case ReservedBridgeID(b.ID):
		return checkNotReserved(b.ID)
	case strings.TrimSpace(b.Name) == "":
		return errors.New("name is empty")
	case len(b.Name) > 120:
		return errors.New("name is longer than 120 characters")
	}
	for _, f := range [...]struct{ field, v string }{{"name", b.Name}, {"area", b.Area}, {"contact", b.Contact}} {
		if err := checkText(f.field, f.v); err != nil {
			return err
		}
	}
	switch b.Kind {
	case KindCommune, KindWard, KindSpecialZone, KindHub:
	default:
		return fmt.Errorf("kind %q: want commune, ward, special_zone or hub", b.Kind)
	}
	return nil
}

// checkText refuses what a registry field cannot hold: text that is not
// UTF-8, white space at either end (the import trims it, so it would not
// survive an export and import) and control characters (tabs, line
// breaks).
func checkText(field, v string) error {
	switch {
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%s starts or ends with white space", field)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Errorf("%s holds a control character (a tab or a line break)", field)
	}
	return nil
}

// Trimmed is b with white space trimmed from its fields, as the import
// reads them.
func (b Bridge) Trimmed() Bridge {
	return Bridge{ID: strings.TrimSpace(b.ID), Name: strings.TrimSpace(b.Name), Kind: Kind(strings.TrimSpace(string(b.Kind))),
		Area: strings.TrimSpace(b.Area), Contact: strings.TrimSpace(b.Contact)}
}

// RowError is one rejected row of a CSV import.
type RowError struct {
	Line int    `json:"line"`
	Err  string `json:"error"`
}

var csvHeader = []string{"id", "name", "kind", "area", "contact"}

// ParseBridgesCSV reads a registry in CSV form (header: id,name,kind,area,
// contact). Good rows are returned; each bad row is reported with its line
// number and does not stop the others. Cells are trimmed, then the quote
// our export puts before a formula-like cell is taken off
// (RestoreCSVCell).
func ParseBridgesCSV(r io.Reader) ([]Bridge, []RowError, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("read CSV header: %w", err)
	}
	for i := range head {
		head[i] = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(head[i], "\ufeff")))
	}
	if !slices.Equal(head, csvHeader) {
		return nil, nil, fmt.Errorf("CSV header %q, want %q", strings.Join(head, ","), strings.Join(csvHeader, ","))
	}
	var (
		out  []Bridge
		bad  []RowError
		seen = map[string]int{}
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// No record to ask FieldPos about: the line is in the error.
			// (FuzzBridgeCSV found a bare quote making FieldPos panic.)
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, nil, fmt.Errorf("read CSV: %w", err) // the reader's fault, not a row's
			}
			bad = append(bad, RowError{Line: pe.StartLine, Err: err.Error()})
			continue
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(csvHeader) {
			bad = append(bad, RowError{Line: line, Err: fmt.Sprintf("%d fields, want %d", len(rec), len(csvHeader))})
			continue
		}
		for i := range rec {
			rec[i] = RestoreCSVCell(strings.TrimSpace(rec[i])) // our export's quote, if any
		}
		b := Bridge{ID: rec[0], Name: rec[1], Kind: Kind(rec[2]), Area: rec[3], Contact: rec[4]}
		if err := b.Validate(); err != nil {
			bad = append(bad, RowError{Line: line, Err: err.Error()})
			continue
		}
		if first, dup := seen[b.ID]; dup {
			bad = append(bad, RowError{Line: line, Err: fmt.Sprintf("id %q already on line %d", b.ID, first)})
			continue
		}
		seen[b.ID] = line
		out = append(out, b)
	}
	return out, bad, nil
}

// PutBridges adds or replaces bridges in the registry.
func (s *Store) PutBridges(bs []Bridge) error {
	for _, b := range bs {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("bridge %q: %w", b.ID, err)
		}
	}
	return s.db.Update(func(tx kvTx) error {
		for _, b := range bs {
			if err := put(tx, bucketBridges, b.ID, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Bridge returns one bridge.
func (s *Store) Bridge(id string) (Bridge, error) {
	var b Bridge
	err := s.db.View(func(tx kvTx) error { return get(tx, bucketBridges, id, &b) })
	return b, err
}

// Bridges returns the registry, ordered by ID.
func (s *Store) Bridges() ([]Bridge, error) {
	var out []Bridge
	err := s.db.View(func(tx kvTx) error {
		var err error
		out, err = all[Bridge](tx, bucketBridges)
		return err
	})
	return out, err
}

// ImportResult counts what an import did.
type ImportResult struct {
	Added     int        `json:"added"`
	Updated   int        `json:"updated"`
	Unchanged int        `json:"unchanged"`
	Errors    []RowError `json:"errors"`
}

// ImportBridgesCSV imports a registry file. Any bad row imports nothing
// unless partial is set, when the good rows go in and the bad ones are
// reported. A row equal to what the registry holds changes nothing, so
// importing the same file twice is a no-op. ok is false when nothing was
// imported because of bad rows.
func (s *Store) ImportBridgesCSV(r io.Reader, partial bool) (res ImportResult, ok bool, err error) {
	bridges, bad, err := ParseBridgesCSV(r)
	if err != nil {
		return res, false, err
	}
	res.Errors = bad
	if res.Errors == nil {
		res.Errors = []RowError{}
	}
	if len(bad) > 0 && !partial {
		return res, false, nil
	}
	err = s.db.Update(func(tx kvTx) error {
		b := tx.Bucket(bucketBridges)
		res.Added, res.Updated, res.Unchanged = 0, 0, 0 // a transaction may run again
		for _, br := range bridges {
			next, err := json.Marshal(br)
			if err != nil {
				return err
			}
			switch prev := b.Get([]byte(br.ID)); {
			case prev == nil:
				res.Added++
			case bytes.Equal(prev, next):
				res.Unchanged++
				continue
			default:
				res.Updated++
			}
			if err := b.Put([]byte(br.ID), next); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err == nil, err
}

// WriteBridgesCSV writes the registry in the form ParseBridgesCSV reads,
// cells neutralised against formula injection (CSVWriter), which the
// import undoes: the values read back are the values written.
func WriteBridgesCSV(w io.Writer, bs []Bridge) error {
	cw := NewCSVWriter(w)
	_ = cw.Write(csvHeader)
	for _, b := range bs {
		if b.Kind == KindHub {
			continue
		}
		_ = cw.Write([]string{b.ID, b.Name, string(b.Kind), b.Area, b.Contact})
	}
	cw.Flush()
	return cw.Error()
}

// DeleteBridge removes a bridge from the registry and revokes its
// terminal links.
func (s *Store) DeleteBridge(id string) error {
	if _, err := s.RevokeTerminalLinks(id); err != nil {
		return err
	}
	return s.db.Update(func(tx kvTx) error {
		if tx.Bucket(bucketBridges).Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return tx.Bucket(bucketBridges).Delete([]byte(id))
	})
}
