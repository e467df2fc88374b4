package controlplane

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// hookReceiver is a webhook endpoint that checks the signature of every
// delivery and can refuse the first ones.
type hookReceiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	refuse int // answer 503 to this many deliveries first
	got    []webhookPayload
	tries  int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tries++
	if got, want := r.Header.Get("X-Citybridge-Signature"), Sign(h.secret, body); got != want {
		h.t.Errorf("webhook signature %q, want %q", got, want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if h.refuse > 0 {
		h.refuse--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var p webhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		h.t.Errorf("webhook body: %v", err)
	}
	h.got = append(h.got, p)
}

func (h *hookReceiver) deliveries() []webhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhookPayload(nil), h.got...)
}

func waitCond(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMonitorAlerts: a bridge going silent is lost at once, raises a lost
// alert after LostAlertAfter (not before), posted to the webhook after a
// refused first delivery; a poor spell raises a poor alert after
// PoorAlertAfter; recovery clears both, and every change is an event in the
// store, queried by bridge and time range.
func TestMonitorAlerts(t *testing.T) {
	saved := webhookBackoff
	webhookBackoff = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}
	t.Cleanup(func() { webhookBackoff = saved })
	st, _ := openTemp(t)
	rx := &hookReceiver{t: t, secret: "s3cret", refuse: 1}
	srv := httptest.NewServer(rx)
	t.Cleanup(srv.Close)
	m := NewMonitor(st, MonitorConfig{LostAlertAfter: 4 * time.Second, PoorAlertAfter: 10 * time.Second,
		WebhookURL: srv.URL, WebhookSecret: "s3cret"})
	t.Cleanup(m.Close)

	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	good := LinkSample{RTTMs: 5, Layer: LayerHigh, LayerReason: "best"}
	for s := 0; s < 5; s++ {
		g := good
		g.At = at(s)
		m.Observe("c1", "ward-001", g)
		g.At = at(s)
		m.Observe("c1", "ward-002", g)
	}
	// ward-001 goes silent at second 5.
	for s := 5; s < 14; s++ {
		l := good
		l.At, l.Silent = at(s), time.Duration(s-5)*time.Second
		m.Observe("c1", "ward-001", l)
		if s == 8 { // silent for 3 s: lost, no alert yet
			if b, _ := m.Link("c1", "ward-001"); b.State != QualityLost || b.Alert != "" {
				t.Fatalf("silent 3 s: state %s alert %q, want lost and no alert yet", b.State, b.Alert)
			}
		}
	}
	b, _ := m.Link("c1", "ward-001")
	if b.Alert != AlertLost {
		t.Fatalf("lost since second 5 and observed at second 13: alert %q, want lost", b.Alert)
	}
	if a := m.Alerts(false); len(a) != 1 || a[0].Bridge != "ward-001" || a[0].Kind != AlertLost || !a[0].Since.Equal(at(5)) {
		t.Fatalf("active alerts %+v, want one lost alert for ward-001 since second 5", a)
	}
	if b, _ := m.Link("c1", "ward-002"); b.State != QualityGood || b.Alert != "" {
		t.Fatalf("the other bridge: %+v", b)
	}
	// It comes back with 10% loss: poor, and after 10 s a poor alert.
	for s := 14; s < 26; s++ {
		p := good
		p.At, p.LossDown = at(s), 0.10
		m.Observe("c1", "ward-001", p)
	}
	b, _ = m.Link("c1", "ward-001")
	if b.State != QualityPoor || b.Alert != AlertPoor || b.Cause != "loss" {
		t.Fatalf("after 12 s at 10%% loss: %s alert %q cause %q, want poor, a poor alert, loss", b.State, b.Alert, b.Cause)
	}
	// Restored.
	g := good
	g.At = at(26)
	m.Observe("c1", "ward-001", g)
	if a := m.Alerts(false); len(a) != 0 {
		t.Fatalf("restored, yet active alerts %+v", a)
	}
	if a := m.Alerts(true); len(a) != 2 || a[0].Cleared.IsZero() {
		t.Fatalf("recent alerts %+v, want two cleared", a)
	}
	waitCond(t, 10*time.Second, "four webhook deliveries", func() bool { return len(rx.deliveries()) == 4 })
	var types []string
	for _, d := range rx.deliveries() {
		types = append(types, d.Type+" "+d.Alert.Kind)
	}
	want := []string{"alert.raised lost", "alert.cleared lost", "alert.raised poor", "alert.cleared poor"}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("webhook deliveries %v, want %v", types, want)
		}
	}
	if rx.tries != 5 {
		t.Errorf("%d webhook requests, want 5 (one refused and retried)", rx.tries)
	}

	evs, err := st.Events("", "ward-001", at(0), at(27), 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind+":"+e.Cause)
	}
	wantKinds := []string{"state:good->lost", "alert:lost", "state:lost->poor", "alert:lost", "alert:poor", "state:poor->good", "alert:poor"}
	if len(kinds) != len(wantKinds) {
		t.Fatalf("events %v, want %v", kinds, wantKinds)
	}
	for i := range kinds {
		if kinds[i] != wantKinds[i] {
			t.Fatalf("events %v, want %v", kinds, wantKinds)
		}
	}
	if evs, _ := st.Events("", "ward-001", at(14), at(20), 0); len(evs) != 3 {
		t.Errorf("events of seconds 14-20: %d, want 3", len(evs))
	}
	if evs, _ := st.Events("", "ward-002", time.Time{}, time.Time{}, 0); len(evs) != 0 {
		t.Errorf("the good bridge has events: %+v", evs)
	}
}

// TestHistoryKeptAndPruned: points every 5 s survive a reopen of the file,
// come back in a time range, and those older than 24 h are pruned.
func TestHistoryKeptAndPruned(t *testing.T) {
	st, path := openTemp(t)
	now := time.Now()
	st.now = func() time.Time { return now }
	old := map[string]HistoryPoint{"ward-001": {At: now.Add(-25 * time.Hour), Score: 50, State: QualityPoor}}
	if err := st.AddHistory(old); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		p := HistoryPoint{At: now.Add(time.Duration(i-10) * 5 * time.Second), Score: 90 - i, State: QualityGood,
			Layer: LayerMid, RTTMs: 12, Loss: 0.0123, JitterMs: 3.4, SentBps: 1_500_000, RecvBps: 600_000, EstimateBps: 2_000_000}
		if err := st.AddHistory(map[string]HistoryPoint{"ward-001": p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.History("ward-001", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 {
		t.Fatalf("%d points, want the 10 of the last day (the one 25 h old pruned)", len(all))
	}
	p := all[9]
	if p.Score != 81 || p.State != QualityGood || p.Layer != LayerMid || p.RTTMs != 12 || p.Loss != 0.0123 ||
		p.JitterMs != 3.4 || p.SentBps != 1_500_000 || p.RecvBps != 600_000 || p.EstimateBps != 2_000_000 {
		t.Fatalf("point read back %+v", p)
	}
	part, _ := st.History("ward-001", now.Add(-30*time.Second), now.Add(-10*time.Second))
	if len(part) != 4 {
		t.Fatalf("%d points in a 20 s range, want 4", len(part))
	}
}
