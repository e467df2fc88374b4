package controlplane

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
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
	return s.db.Update(func(tx kvTx) error {
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
	err := s.EachAudit(from, to, 0, func(e AuditEntry) bool {
		out = append(out, e)
		return true
	})
	return out, err
}

// EachAudit calls f with each entry with from <= At < to (zero times: no
// bound) and a sequence number above after, oldest first, until f returns
// false. It reads in one transaction, an entry at a time: a CSV of the
// whole log never sits in memory.
func (s *Store) EachAudit(from, to time.Time, after uint64, f func(AuditEntry) bool) error {
	return s.db.View(func(tx kvTx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil; k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if (!from.IsZero() && e.At.Before(from)) || (!to.IsZero() && !e.At.Before(to)) {
				continue
			}
			if !f(e) {
				return nil
			}
		}
		return nil
	})
}

// FailedLogins returns the failed login attempts (result bad_login) the
// log holds from since on, newest first. It reads from the end of the log
// and stops at the first older entry.
func (s *Store) FailedLogins(since time.Time) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.db.View(func(tx kvTx) error {
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

// Audit log pages: GET /api/audit answers at most auditPageMax entries
// at a time (auditPage unless limit= says fewer or more), with a Link to
// the next page while there is one.
const (
	auditPage    = 1000
	auditPageMax = 10_000
)

// auditLog serves GET /api/audit[?from=RFC3339][&to=RFC3339][&after=SEQ]
// [&limit=N][&format=csv] to administrators: JSON a page at a time, or
// the whole selection as CSV, streamed.
func (a *API) auditLog(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.allow(w, r, RoleAdmin); !ok {
		return
	}
	q := r.URL.Query()
	var from, to time.Time
	for name, t := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := q.Get(name); v != "" {
			p, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", name+" must be an RFC 3339 time, e.g. 2026-12-01T08:00:00+07:00")
				return
			}
			*t = p
		}
	}
	var after uint64
	limit := auditPage
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "after must be an entry's seq")
			return
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > auditPageMax {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be 1 to "+strconv.Itoa(auditPageMax))
			return
		}
		limit = n
	}
	if q.Get("format") == "csv" {
		a.auditCSV(w, from, to, after)
		return
	}
	entries := []AuditEntry{}
	more := false
	err := a.store.EachAudit(from, to, after, func(e AuditEntry) bool {
		if len(entries) == limit {
			more = true
			return false
		}
		entries = append(entries, e)
		return true
	})
	if err != nil {
		a.internal(w, err)
		return
	}
	if more {
		next := r.URL.Query()
		next.Set("after", strconv.FormatUint(entries[len(entries)-1].Seq, 10))
		next.Set("limit", strconv.Itoa(limit))
		w.Header().Set("Link", "</api/audit?"+next.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, entries)
}

// auditCSV streams the selected entries as a CSV download.
func (a *API) auditCSV(w http.ResponseWriter, from, to time.Time, after uint64) {
	csvHeaders(w, "citybridge-audit.csv")
	cw := NewCSVWriter(w)
	_ = cw.Write([]string{"seq", "at", "who", "role", "action", "target", "result", "remote"})
	err := a.store.EachAudit(from, to, after, func(e AuditEntry) bool {
		return cw.Write([]string{strconv.FormatUint(e.Seq, 10), e.At.Format(time.RFC3339Nano), e.Who, string(e.Role), e.Action, e.Target, e.Result, e.Remote}) == nil
	})
	cw.Flush()
	if err != nil {
		a.log.Error("audit CSV", "err", err) // the header is out: the download ends short
	}
}

// writeCSV answers with rows (the header first) as a CSV download.
func writeCSV(w http.ResponseWriter, filename string, rows [][]string) {
	csvHeaders(w, filename)
	_ = NewCSVWriter(w).WriteAll(rows)
}

// csvHeaders are a CSV download's headers.
func csvHeaders(w http.ResponseWriter, filename string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	w.Header().Set("Cache-Control", "no-store")
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
// taking a copy of the whole store, reading the audit log, and
// downloading a recording.
var auditedReads = map[string]bool{"GET /api/backup": true, "GET /api/audit": true,
	"GET /api/conferences/{id}/recordings/{file}": true}

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
