package controlplane

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The audit log: every change made through the API or by a chair's floor
// control over signaling, and every login attempt, with who, what, when
// and from where. Entries are kept in the store in the order they happened
// (the key is bbolt's sequence) and the oldest are pruned beyond
// maxAuditEntries.
var bucketAudit = []byte("audit")

// maxAuditEntries bounds the log (a year of a busy city's meetings is far
// below it).
const maxAuditEntries = 500_000

// AuditEntry is one action.
type AuditEntry struct {
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Who    string    `json:"who"`    // the login, or "host link c1", "technician link", "room link ward-001"
	Role   Role      `json:"role"`   // the caller's role; "" for an anonymous login attempt
	Action string    `json:"action"` // "POST /api/bridges/import", "control give_floor", "login"
	Target string    `json:"target"` // the path, or the bridge a control acted on
	Result string    `json:"result"` // "ok", or the refusal ("bad_login")
	Remote string    `json:"remote"` // the caller's address
}

// WhoOf names the caller behind a grant for the audit log.
func WhoOf(g Grant) string {
	switch {
	case g.User != "":
		return g.User
	case g.Role == RoleHost:
		return "host link " + g.Conference
	case g.Role == RoleRoom:
		return "room link " + g.Bridge
	case g.Role == RoleTechnician && g.Name != "":
		return "technician link " + g.Name
	case g.Role == "":
		return "anonymous"
	}
	return string(g.Role) + " link"
}

// Audit appends e to the log (its own fsynced transaction).
func (s *Store) Audit(e AuditEntry) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		e.Seq = seq
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
			return err
		}
		if seq > maxAuditEntries { // drop what fell off the end
			c := b.Cursor()
			oldest := seq - maxAuditEntries
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= oldest; k, _ = c.Next() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// AuditLog returns the entries with from <= At < to (zero times: no
// bound), oldest first.
func (s *Store) AuditLog(from, to time.Time) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if (!from.IsZero() && e.At.Before(from)) || (!to.IsZero() && !e.At.Before(to)) {
				return nil
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// FailedLogins returns the failed login attempts (result bad_login) the
// log holds from since on, newest first. It reads from the end of the log
// and stops at the first older entry.
func (s *Store) FailedLogins(since time.Time) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e.At.Before(since) {
				return nil
			}
			if e.Action == "login" && e.Result == "bad_login" {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// auditLog serves GET /api/audit[?from=RFC3339][&to=RFC3339][&format=csv]
// to administrators.
func (a *API) auditLog(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin); !ok {
		return
	}
	var from, to time.Time
	for name, t := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := r.URL.Query().Get(name); v != "" {
			p, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", name+" must be an RFC 3339 time, e.g. 2026-12-01T08:00:00+07:00")
				return
			}
			*t = p
		}
	}
	entries, err := a.store.AuditLog(from, to)
	if err != nil {
		a.internal(w, err)
		return
	}
	if entries == nil {
		entries = []AuditEntry{}
	}
	if r.URL.Query().Get("format") != "csv" {
		writeJSON(w, http.StatusOK, entries)
		return
	}
	rows := [][]string{{"seq", "at", "who", "role", "action", "target", "result", "remote"}}
	for _, e := range entries {
		rows = append(rows, []string{strconv.FormatUint(e.Seq, 10), e.At.Format(time.RFC3339Nano), e.Who, string(e.Role), e.Action, e.Target, e.Result, e.Remote})
	}
	writeCSV(w, "citybridge-audit.csv", rows)
}

// writeCSV answers with rows (the header first) as a CSV download.
func writeCSV(w http.ResponseWriter, filename string, rows [][]string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	w.Header().Set("Cache-Control", "no-store")
	_ = NewCSVWriter(w).WriteAll(rows)
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// audited records every successful change (any method but GET and HEAD)
// a handler makes, with the caller as authenticated before it ran (a
// logout ends the session it is made with). Login attempts are recorded
// by the login handler itself. A call refused for who made it (401, 403),
// read or change, goes to the server's log instead, with the caller and
// its address: refusals are what anybody can cause, and in the store they
// could push real entries off the end of the audit log.
func (a *API) audited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		read := (r.Method == http.MethodGet || r.Method == http.MethodHead) && !auditedReads[r.Pattern]
		var g Grant
		if !read {
			g, _, _ = a.store.AuthenticateRequest(r)
		}
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		switch {
		case rec.status == http.StatusUnauthorized || rec.status == http.StatusForbidden:
			if read {
				g, _, _ = a.store.AuthenticateRequest(r)
			}
			a.log.Warn("API call refused", "call", r.Pattern, "path", r.URL.Path, "status", rec.status,
				"who", WhoOf(g), "remote", remoteIP(r))
		case read || rec.status == 0 || rec.status >= 400:
		default:
			a.audit(r, g, r.Pattern, r.URL.Path, "ok") // the pattern names the method
		}
	}
}

// auditedReads are the reads that are administrative actions themselves:
// taking a copy of the whole store, and reading the audit log.
var auditedReads = map[string]bool{"GET /api/backup": true, "GET /api/audit": true}

// audit writes one entry; a failure is logged, never shown to the caller
// (the action itself is done).
func (a *API) audit(r *http.Request, g Grant, action, target, result string) {
	e := AuditEntry{Who: WhoOf(g), Role: g.Role, Action: action, Target: target, Result: result, Remote: remoteIP(r)}
	if err := a.store.Audit(e); err != nil {
		a.log.Error("audit log write failed", "action", action, "err", err)
	}
}

// auditMux registers every route through audited.
type auditMux struct {
	a   *API
	mux *http.ServeMux
}

func (m auditMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.mux.HandleFunc(pattern, m.a.audited(h))
}
