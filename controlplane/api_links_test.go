package controlplane

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMedia records the actions asked of it; joined lists the bridges
// that have a session.
type fakeMedia struct {
	mu      sync.Mutex
	joined  map[string]bool
	actions []string
}

func (f *fakeMedia) PinLayer(conferenceID, bridge, layer string) error { return nil }

func (f *fakeMedia) TechAction(conferenceID, bridge, action string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.joined[bridge] {
		return ErrNotJoined
	}
	f.actions = append(f.actions, conferenceID+" "+bridge+" "+action)
	return nil
}

// linksFixture is an API with two bridges in conference c1, a monitor that
// saw both, and credentials of every kind.
type linksFixture struct {
	st    *Store
	mon   *Monitor
	media *fakeMedia
	mux   *http.ServeMux
	creds map[string]func(*http.Request)
	logs  *bytes.Buffer // the API's log; handlers run on the test's goroutine
}

func newLinksFixture(t *testing.T) *linksFixture {
	t.Helper()
	st, _ := openTemp(t)
	if err := st.PutBridges([]Bridge{
		{ID: "ward-001", Name: "Phường Một", Kind: KindWard, Area: "Quận 1"},
		{ID: "ward-002", Name: "Phường Hai", Kind: KindWard, Area: "Quận 3"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateConference(Conference{ID: "c1", Title: "Giao ban", AllBridges: true}); err != nil {
		t.Fatal(err)
	}
	mon := NewMonitor(st, MonitorConfig{LostAlertAfter: 2 * time.Second, Log: discardLogger()})
	t.Cleanup(mon.Close)
	media := &fakeMedia{joined: map[string]bool{"ward-001": true}}
	logs := &bytes.Buffer{}
	api := NewAPI(st, func(string) map[string]string { return nil }, slog.New(slog.NewTextHandler(logs, nil)))
	api.SetMedia(media)
	api.SetMonitor(mon)
	mux := http.NewServeMux()
	api.Register(mux)

	bearer := func(g Grant) func(*http.Request) {
		tok, err := st.IssueToken(g)
		if err != nil {
			t.Fatal(err)
		}
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	login := func(name string, role Role) func(*http.Request) {
		u, err := st.AddUser(name, role, "", "long-enough-1")
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := st.NewSession(u)
		if err != nil {
			t.Fatal(err)
		}
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: SessionCookie, Value: tok}) }
	}
	return &linksFixture{st: st, mon: mon, media: media, mux: mux, logs: logs, creds: map[string]func(*http.Request){
		"anonymous":       func(*http.Request) {},
		"room link":       bearer(Grant{Role: RoleRoom, Bridge: "ward-001"}),
		"host link":       bearer(Grant{Role: RoleHost, Conference: "c1"}),
		"host login":      login("chair", RoleHost),
		"technician link": bearer(Grant{Role: RoleTechnician}),
		"technician":      login("fixer", RoleTechnician),
		"admin":           login("boss", RoleAdmin),
	}}
}

func (f *linksFixture) do(method, path, caller string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://cb.example"+path, nil)
	req.Header.Set("Origin", "https://cb.example")
	f.creds[caller](req)
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

// TestLinksAPIAuthorization: every link route answers technicians (link or
// login) and administrators; anonymous callers get 401, room and host
// links and host logins 403, and a refused action reaches neither the
// media side nor the event log.
func TestLinksAPIAuthorization(t *testing.T) {
	f := newLinksFixture(t)
	routes := []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/links", 200},
		{"GET", "/api/bridges/ward-001/history", 200},
		{"GET", "/api/events", 200},
		{"GET", "/api/alerts?recent=1", 200},
		{"POST", "/api/conferences/c1/bridges/ward-001/actions/keyframe", 202},
	}
	allowed := map[string]bool{"technician link": true, "technician": true, "admin": true}
	for _, rt := range routes {
		for caller := range f.creds {
			rec := f.do(rt.method, rt.path, caller)
			want := rt.want
			switch {
			case caller == "anonymous":
				want = http.StatusUnauthorized
			case !allowed[caller]:
				want = http.StatusForbidden
			}
			if rec.Code != want {
				t.Errorf("%s %s as %s: %d %s, want %d", rt.method, rt.path, caller, rec.Code, rec.Body, want)
			}
		}
	}
	if got := len(f.media.actions); got != len(allowed) {
		t.Errorf("media side saw %d actions %v, want %d (one per allowed caller)", got, f.media.actions, len(allowed))
	}
	evs, err := f.st.Events("c1", "ward-001", time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(allowed) {
		t.Errorf("%d action events %+v, want %d", len(evs), evs, len(allowed))
	}
}

// TestLinksView: GET /api/links joins every link the monitor knows with
// the registry and lists the active alerts; LinksView is the same document.
func TestLinksView(t *testing.T) {
	f := newLinksFixture(t)
	t0 := time.Now().Add(-time.Minute)
	for s := range 5 {
		at := t0.Add(time.Duration(s) * time.Second)
		f.mon.Observe("c1", "ward-001", LinkSample{At: at, RTTMs: 20, Layer: LayerHigh, LayerReason: "best", Path: "udp"})
		f.mon.Observe("c1", "ward-002", LinkSample{At: at, Silent: time.Duration(s+1) * time.Second, Layer: LayerNone})
		f.mon.Observe("c1", "gone-009", LinkSample{At: at, RTTMs: 400, LossDown: 0.08, Layer: LayerLow, LayerReason: "bandwidth"})
	}
	rec := f.do("GET", "/api/links", "technician link")
	if rec.Code != 200 {
		t.Fatalf("GET /api/links: %d %s", rec.Code, rec.Body)
	}
	var v LinksView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Links) != 3 {
		t.Fatalf("%d links, want 3: %+v", len(v.Links), v.Links)
	}
	byID := map[string]LinkView{}
	for _, l := range v.Links {
		byID[l.Bridge] = l
	}
	one, two, gone := byID["ward-001"], byID["ward-002"], byID["gone-009"]
	if one.Name != "Phường Một" || one.Area != "Quận 1" || one.Kind != KindWard || one.State != QualityGood ||
		one.Score < 80 || len(one.Spark) != 5 || one.Sample.Path != "udp" {
		t.Errorf("ward-001: %+v", one)
	}
	if two.State != QualityLost || two.Alert != AlertLost || two.Name != "Phường Hai" {
		t.Errorf("ward-002 silent for 5 s: %+v, want lost with a lost alert", two)
	}
	if gone.Name != "gone-009" || gone.State != QualityPoor {
		t.Errorf("a bridge not in the registry: %+v, want its ID as its name and poor", gone)
	}
	if len(v.Alerts) != 1 || v.Alerts[0].Bridge != "ward-002" || v.Alerts[0].Kind != AlertLost {
		t.Errorf("alerts %+v, want ward-002's lost alert", v.Alerts)
	}
	rec = f.do("GET", "/api/alerts", "admin")
	var al []Alert
	if err := json.Unmarshal(rec.Body.Bytes(), &al); err != nil || len(al) != 1 || al[0].Bridge != "ward-002" {
		t.Errorf("GET /api/alerts: %s", rec.Body)
	}

	// ward-002 comes back: its alert is cleared, listed only with recent=1.
	f.mon.Observe("c1", "ward-002", LinkSample{At: t0.Add(6 * time.Second), RTTMs: 20, Layer: LayerHigh})
	if rec := f.do("GET", "/api/alerts", "technician"); strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("GET /api/alerts after recovery: %s, want []", rec.Body)
	}
	rec = f.do("GET", "/api/alerts?recent=1", "technician")
	al = nil
	if err := json.Unmarshal(rec.Body.Bytes(), &al); err != nil || len(al) != 1 || al[0].Cleared.IsZero() {
		t.Errorf("GET /api/alerts?recent=1 after recovery: %s, want the cleared alert", rec.Body)
	}
}

// TestRefusedCallsLogged: a call refused for who made it, read or change,
// is a warning in the server's log naming the call, the status, the caller
// and its address, and is not in the audit log; an allowed read leaves no
// such line.
func TestRefusedCallsLogged(t *testing.T) {
	f := newLinksFixture(t)
	for _, c := range []struct {
		method, path, caller string
		status               int
		who                  string
	}{
		{"GET", "/api/links", "anonymous", 401, "anonymous"},
		{"POST", "/api/conferences/c1/bridges/ward-001/actions/keyframe", "room link", 403, "room link ward-001"},
		{"GET", "/api/events", "host login", 403, "chair"},
	} {
		f.logs.Reset()
		if rec := f.do(c.method, c.path, c.caller); rec.Code != c.status {
			t.Fatalf("%s %s as %s: %d, want %d", c.method, c.path, c.caller, rec.Code, c.status)
		}
		line := f.logs.String()
		for _, want := range []string{"level=WARN", `msg="API call refused"`, `call="` + c.method + " /api/", "path=" + c.path,
			"status=" + strconv.Itoa(c.status), `who="` + c.who + `"`, "remote=192.0.2.1"} {
			if !strings.Contains(line, want) && !strings.Contains(line, strings.ReplaceAll(want, `"`, "")) {
				t.Errorf("%s %s as %s: the log %q lacks %s", c.method, c.path, c.caller, line, want)
			}
		}
	}
	f.logs.Reset()
	if rec := f.do("GET", "/api/links", "technician"); rec.Code != 200 || strings.Contains(f.logs.String(), "refused") {
		t.Errorf("an allowed read: %d, log %q", rec.Code, f.logs.String())
	}
	log, err := f.st.AuditLog(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 0 {
		t.Errorf("the audit log holds %+v: refused calls and reads stay out of it", log)
	}
}

// TestLinksViewNoMonitor: without a monitor the view is empty lists, not
// nulls.
func TestLinksViewNoMonitor(t *testing.T) {
	st, _ := openTemp(t)
	api := NewAPI(st, func(string) map[string]string { return nil }, discardLogger())
	v, err := api.LinksView()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if string(b) != `{"links":[],"alerts":[]}` {
		t.Errorf("LinksView without a monitor: %s", b)
	}
}

// TestBridgeHistoryAPI: the history route answers the stored points in
// range (the last hour by default), 404 for an unknown bridge and 400 for
// a bad time.
func TestBridgeHistoryAPI(t *testing.T) {
	f := newLinksFixture(t)
	now := time.Now()
	pts := []time.Time{now.Add(-3 * time.Hour), now.Add(-30 * time.Minute), now.Add(-time.Minute)}
	for i, at := range pts {
		if err := f.st.AddHistory(map[string]HistoryPoint{"ward-001": {At: at, Score: 90 - i, State: QualityGood, Layer: LayerHigh, RTTMs: 12}}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) (int, []HistoryPoint) {
		rec := f.do("GET", path, "technician")
		var out []HistoryPoint
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return rec.Code, out
	}
	if code, got := get("/api/bridges/ward-001/history"); code != 200 || len(got) != 2 || got[0].Score != 89 || got[1].Score != 88 {
		t.Errorf("default range: %d %+v, want the 2 points of the last hour, oldest first", code, got)
	}
	from := now.Add(-4 * time.Hour).Format(time.RFC3339)
	to := now.Add(-time.Hour).Format(time.RFC3339)
	if code, got := get("/api/bridges/ward-001/history?from=" + from + "&to=" + to); code != 200 || len(got) != 1 || got[0].Score != 90 {
		t.Errorf("from %s to %s: %d %+v, want the first point", from, to, code, got)
	}
	if code, got := get("/api/bridges/ward-002/history"); code != 200 || got == nil || len(got) != 0 {
		t.Errorf("a bridge without history: %d %+v, want []", code, got)
	}
	if code, _ := get("/api/bridges/nope/history"); code != 404 {
		t.Errorf("unknown bridge: %d, want 404", code)
	}
	if code, _ := get("/api/bridges/ward-001/history?from=yesterday"); code != 400 {
		t.Errorf("bad from: %d, want 400", code)
	}
}

// TestEventsAPI: events filtered by bridge, conference, time and limit,
// and the CSV export with its header row.
func TestEventsAPI(t *testing.T) {
	f := newLinksFixture(t)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	var evs []Event
	for i := range 6 {
		b := "ward-001"
		if i%2 == 1 {
			b = "ward-002"
		}
		evs = append(evs, Event{At: t0.Add(time.Duration(i) * time.Minute), Conference: "c1", Bridge: b, Kind: EventJoin, Detail: "n" + string(rune('0'+i))})
	}
	evs = append(evs, Event{At: t0.Add(10 * time.Minute), Conference: "c2", Bridge: "ward-001", Kind: EventState, Cause: "good->fair", Detail: `score 70 (loss): "x", y`})
	if err := f.st.AddEvents(evs...); err != nil {
		t.Fatal(err)
	}
	get := func(q string) []Event {
		t.Helper()
		rec := f.do("GET", "/api/events"+q, "technician link")
		if rec.Code != 200 {
			t.Fatalf("GET /api/events%s: %d %s", q, rec.Code, rec.Body)
		}
		var out []Event
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	details := func(evs []Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, e.Detail)
		}
		return strings.Join(s, ",")
	}
	if got := get(""); len(got) != 7 {
		t.Errorf("all events: %d, want 7", len(got))
	}
	if got := details(get("?bridge=ward-001&conference=c1")); got != "n0,n2,n4" {
		t.Errorf("ward-001 in c1: %s", got)
	}
	if got := details(get("?bridge=ward-002&limit=2")); got != "n3,n5" {
		t.Errorf("ward-002, limit 2: %s, want the newest two", got)
	}
	from, to := t0.Add(time.Minute).Format(time.RFC3339), t0.Add(3*time.Minute).Format(time.RFC3339)
	if got := details(get("?from=" + from + "&to=" + to)); got != "n1,n2" {
		t.Errorf("minutes 1 to 3: %s", got)
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?from=soon"} {
		if rec := f.do("GET", "/api/events"+q, "technician"); rec.Code != 400 {
			t.Errorf("GET /api/events%s: %d, want 400", q, rec.Code)
		}
	}
	rec := f.do("GET", "/api/events?conference=c2&format=csv", "admin")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	rows, err := csv.NewReader(rec.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || strings.Join(rows[0], ",") != "at,conference,bridge,kind,cause,detail" ||
		rows[1][2] != "ward-001" || rows[1][4] != "good->fair" || rows[1][5] != `score 70 (loss): "x", y` {
		t.Errorf("CSV rows %q", rows)
	}
	if at, err := time.Parse(time.RFC3339Nano, rows[1][0]); err != nil || !at.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("CSV time %q: %v", rows[1][0], err)
	}
}

// TestTechActionAPI: an action in TechActions goes to the media side and
// into the event log with who asked; an unknown action is 400, a bridge
// not joined 409 not_joined, an unknown conference 404, and none of those
// reach the media side.
func TestTechActionAPI(t *testing.T) {
	f := newLinksFixture(t)
	for _, action := range TechActions {
		rec := f.do("POST", "/api/conferences/c1/bridges/ward-001/actions/"+action, "technician")
		var got techActionAnswer
		if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &got) != nil || got.Action != action {
			t.Errorf("%s: %d %s", action, rec.Code, rec.Body)
		}
	}
	refused := []struct {
		path string
		code int
		want string
	}{
		{"/api/conferences/c1/bridges/ward-001/actions/explode", 400, "bad_request"},
		{"/api/conferences/c1/bridges/ward-002/actions/reload", 409, "not_joined"},
		{"/api/conferences/c9/bridges/ward-001/actions/reload", 404, "not_found"},
	}
	for _, r := range refused {
		rec := f.do("POST", r.path, "technician link")
		var e apiError
		if rec.Code != r.code || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != r.want {
			t.Errorf("POST %s: %d %s, want %d %s", r.path, rec.Code, rec.Body, r.code, r.want)
		}
	}
	if len(f.media.actions) != len(TechActions) {
		t.Errorf("media side saw %v, want only the %d accepted actions", f.media.actions, len(TechActions))
	}
	evs, err := f.st.Events("", "", time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(TechActions) {
		t.Fatalf("events %+v, want one per accepted action", evs)
	}
	for i, e := range evs {
		if e.Kind != EventAction || e.Cause != TechActions[i] || e.Detail != "fixer" || e.Bridge != "ward-001" || e.Conference != "c1" {
			t.Errorf("event %d: %+v, want action %s by fixer", i, e, TechActions[i])
		}
	}
}
