package controlplane

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The link-quality monitor. The media side calls Observe once a second for
// every joined bridge; the monitor scores the sample (quality.go), records
// state changes as events, keeps a sparkline in memory and a point every
// HistoryEvery in the store, raises and clears alerts, and posts them to a
// webhook. The technician dashboard and the metrics read Links and Alerts.

// Alert kinds.
const (
	AlertLost = "lost" // the bridge sent nothing for longer than LostAlertAfter
	AlertPoor = "poor" // the bridge's link was poor for longer than PoorAlertAfter
	// AlertEtcd is about the server itself, a node of a cluster: it
	// cannot reach etcd, so it admits nobody and gives its conferences up
	// when its lease ends (nodealert.go).
	AlertEtcd = "etcd"
)

// MonitorConfig configures alerts and the webhook.
type MonitorConfig struct {
	LostAlertAfter time.Duration // default 10 s
	PoorAlertAfter time.Duration // default 30 s
	HistoryEvery   time.Duration // default 5 s
	// WebhookURL, if set, receives every alert raised or cleared as a JSON
	// POST signed with WebhookSecret (X-Citybridge-Signature: sha256=HEX,
	// an HMAC-SHA256 of the body), retried with backoff.
	WebhookURL    string
	WebhookSecret string
	Client        *http.Client
	Log           *slog.Logger
}

// Alert is one raised alert; Cleared is zero while it is active.
type Alert struct {
	ID         string    `json:"id"`
	Conference string    `json:"conference"`
	Bridge     string    `json:"bridge"`
	Kind       string    `json:"kind"`
	Detail     string    `json:"detail,omitempty"`
	Since      time.Time `json:"since"` // when the condition started
	Raised     time.Time `json:"raised"`
	Cleared    time.Time `json:"cleared,omitzero"`
	// Node is the cluster node whose monitor raised it (its ID is that
	// node's own; a node's own alert, such as etcd out of reach, has no
	// bridge); empty on one machine.
	Node string `json:"node,omitempty"`
}

// BridgeLink is a bridge's link as the monitor sees it now.
type BridgeLink struct {
	Conference string     `json:"conference"`
	Bridge     string     `json:"bridge"`
	Score      int        `json:"score"`
	State      string     `json:"state"`
	Cause      string     `json:"cause,omitempty"`
	Since      time.Time  `json:"since"` // in this state since
	Sample     LinkSample `json:"sample"`
	Spark      []int      `json:"spark"` // the last sparkLen scores, oldest first
	Alert      string     `json:"alert,omitempty"`
}

// sparkLen scores (one a second) are kept for the dashboard's sparklines.
const sparkLen = 60

// maxRecentAlerts cleared alerts stay listed.
const maxRecentAlerts = 200

type linkKey struct{ conference, bridge string }

type linkState struct {
	BridgeLink
	poorSince time.Time // start of the current poor-or-worse spell
	lostSince time.Time
	alerts    map[string]*Alert // active, by kind
	lastPoint time.Time
}

// Monitor scores bridges' links and raises alerts.
type Monitor struct {
	store *Store
	cfg   MonitorConfig
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	links   map[linkKey]*linkState
	recent  []Alert           // cleared alerts, newest last
	node    map[string]*Alert // the server's own active alerts, by kind
	pending map[string]HistoryPoint
	nextID  int

	hooks chan []byte
	done  chan struct{}
	stop  context.CancelFunc
}

// NewMonitor starts a monitor writing to store. Close stops it.
func NewMonitor(store *Store, cfg MonitorConfig) *Monitor {
	if cfg.LostAlertAfter <= 0 {
		cfg.LostAlertAfter = 10 * time.Second
	}
	if cfg.PoorAlertAfter <= 0 {
		cfg.PoorAlertAfter = 30 * time.Second
	}
	if cfg.HistoryEvery <= 0 {
		cfg.HistoryEvery = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		store: store, cfg: cfg, log: cfg.Log, now: time.Now,
		links:   map[linkKey]*linkState{},
		node:    map[string]*Alert{},
		pending: map[string]HistoryPoint{},
		hooks:   make(chan []byte, 256),
		done:    make(chan struct{}),
		stop:    cancel,
	}
	go m.run(ctx)
	return m
}

// Close stops the monitor, writing the history points it holds.
func (m *Monitor) Close() {
	m.stop()
	<-m.done
}

// Observe takes one sample of a joined bridge's link.
func (m *Monitor) Observe(conference, bridge string, s LinkSample) {
	if s.At.IsZero() {
		s.At = m.now()
	}
	score, state, cause := Score(s)
	var evs []Event
	m.mu.Lock()
	k := linkKey{conference, bridge}
	ls := m.links[k]
	if ls == nil {
		ls = &linkState{alerts: map[string]*Alert{}}
		ls.Conference, ls.Bridge, ls.Since = conference, bridge, s.At
		m.links[k] = ls
	}
	if ls.State != "" && ls.State != state {
		evs = append(evs, Event{At: s.At, Conference: conference, Bridge: bridge, Kind: EventState,
			Cause: ls.State + "->" + state, Detail: describe(score, cause, s)})
		ls.Since = s.At
	} else if ls.State == "" {
		ls.Since = s.At
	}
	if ls.Sample.Layer != s.Layer && ls.State != "" {
		evs = append(evs, Event{At: s.At, Conference: conference, Bridge: bridge, Kind: EventLayer,
			Cause: s.LayerReason, Detail: fmt.Sprintf("layer %s -> %s", LayerName(ls.Sample.Layer), LayerName(s.Layer))})
	}
	ls.Score, ls.State, ls.Cause, ls.Sample = score, state, cause, s
	ls.Spark = append(ls.Spark, score)
	if len(ls.Spark) > sparkLen {
		ls.Spark = append(ls.Spark[:0], ls.Spark[len(ls.Spark)-sparkLen:]...)
	}
	// Alert conditions.
	if state == QualityLost {
		if ls.lostSince.IsZero() {
			ls.lostSince = s.At.Add(-s.Silent)
		}
	} else {
		ls.lostSince = time.Time{}
	}
	if state == QualityPoor || state == QualityLost {
		if ls.poorSince.IsZero() {
			ls.poorSince = s.At
		}
	} else {
		ls.poorSince = time.Time{}
	}
	var hooks [][]byte
	raise := func(kind string, since time.Time) {
		if ls.alerts[kind] != nil {
			return
		}
		m.nextID++
		a := &Alert{ID: strconv.Itoa(m.nextID), Conference: conference, Bridge: bridge, Kind: kind, Since: since, Raised: s.At}
		ls.alerts[kind] = a
		evs = append(evs, Event{At: s.At, Conference: conference, Bridge: bridge, Kind: EventAlert, Cause: kind, Detail: "raised"})
		hooks = append(hooks, m.hookBody("alert.raised", *a))
	}
	clear := func(kind string) {
		if a := m.clearLocked(ls, kind, s.At); a != nil {
			evs = append(evs, Event{At: s.At, Conference: conference, Bridge: bridge, Kind: EventAlert, Cause: kind, Detail: "cleared"})
			hooks = append(hooks, m.hookBody("alert.cleared", *a))
		}
	}
	if !ls.lostSince.IsZero() && s.At.Sub(ls.lostSince) >= m.cfg.LostAlertAfter {
		raise(AlertLost, ls.lostSince)
	} else if ls.lostSince.IsZero() {
		clear(AlertLost)
	}
	if !ls.poorSince.IsZero() && state == QualityPoor && s.At.Sub(ls.poorSince) >= m.cfg.PoorAlertAfter {
		raise(AlertPoor, ls.poorSince)
	} else if ls.poorSince.IsZero() {
		clear(AlertPoor)
	}
	ls.Alert = ""
	for _, kind := range []string{AlertLost, AlertPoor} {
		if ls.alerts[kind] != nil {
			ls.Alert = kind
			break
		}
	}
	if s.At.Sub(ls.lastPoint) >= m.cfg.HistoryEvery {
		ls.lastPoint = s.At
		loss := max(s.LossDown, s.LossUp)
		m.pending[bridge] = HistoryPoint{At: s.At, Score: score, State: state, Layer: s.Layer, RTTMs: s.RTTMs,
			Loss: loss, JitterMs: max(s.JitterDownMs, s.JitterUpMs), SentBps: s.SentBps, RecvBps: s.RecvBps, EstimateBps: s.EstimateBps}
	}
	m.mu.Unlock()
	if state != QualityGood && len(evs) > 0 && evs[0].Kind == EventState {
		m.log.Info("link state", "conference", conference, "bridge", bridge, "change", evs[0].Cause, "score", score, "cause", cause)
	}
	m.record(evs...)
	m.post(hooks...)
}

// clearLocked ends an active alert of ls.
func (m *Monitor) clearLocked(ls *linkState, kind string, at time.Time) *Alert {
	a := ls.alerts[kind]
	if a == nil {
		return nil
	}
	delete(ls.alerts, kind)
	a.Cleared = at
	m.rememberLocked(*a)
	return a
}

// rememberLocked keeps a cleared alert among the recent ones.
func (m *Monitor) rememberLocked(a Alert) {
	m.recent = append(m.recent, a)
	if len(m.recent) > maxRecentAlerts {
		m.recent = append(m.recent[:0], m.recent[len(m.recent)-maxRecentAlerts:]...)
	}
}

// Forget removes a bridge that left (cause: left, ended, dropped). A drop
// keeps its alerts active: the bridge is still missing; anything else
// clears them.
func (m *Monitor) Forget(conference, bridge, cause string) {
	var hooks [][]byte
	var evs []Event
	at := m.now()
	m.mu.Lock()
	k := linkKey{conference, bridge}
	if ls := m.links[k]; ls != nil {
		if cause != "dropped" {
			for _, kind := range []string{AlertLost, AlertPoor} {
				if a := m.clearLocked(ls, kind, at); a != nil {
					evs = append(evs, Event{At: at, Conference: conference, Bridge: bridge, Kind: EventAlert, Cause: kind, Detail: "cleared: " + cause})
					hooks = append(hooks, m.hookBody("alert.cleared", *a))
				}
			}
			delete(m.links, k)
		} else {
			ls.State, ls.Score, ls.Cause = QualityLost, 0, "dropped"
		}
	}
	m.mu.Unlock()
	m.record(evs...)
	m.post(hooks...)
}

// Record stores events (joins, leaves, technician actions), logging a
// failure to store them.
func (m *Monitor) Record(evs ...Event) { m.record(evs...) }

func (m *Monitor) record(evs ...Event) {
	if len(evs) == 0 {
		return
	}
	if err := m.store.AddEvents(evs...); err != nil {
		m.log.Error("storing link events", "err", err, "events", len(evs))
	}
}

// Links returns every observed bridge's link, by conference then bridge.
func (m *Monitor) Links() []BridgeLink {
	m.mu.Lock()
	out := make([]BridgeLink, 0, len(m.links))
	for _, ls := range m.links {
		b := ls.BridgeLink
		b.Spark = append([]int(nil), ls.Spark...)
		out = append(out, b)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Conference != out[j].Conference {
			return out[i].Conference < out[j].Conference
		}
		return out[i].Bridge < out[j].Bridge
	})
	return out
}

// Link returns one bridge's link.
func (m *Monitor) Link(conference, bridge string) (BridgeLink, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.links[linkKey{conference, bridge}]
	if ls == nil {
		return BridgeLink{}, false
	}
	b := ls.BridgeLink
	b.Spark = append([]int(nil), ls.Spark...)
	return b, true
}

// Alerts returns the active alerts, then (with recent) the cleared ones
// still remembered, newest first within each group.
func (m *Monitor) Alerts(recent bool) []Alert {
	m.mu.Lock()
	var out []Alert
	for _, ls := range m.links {
		for _, a := range ls.alerts {
			out = append(out, *a)
		}
	}
	for _, a := range m.node {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Raised.After(out[j].Raised) })
	if recent {
		for i := len(m.recent) - 1; i >= 0; i-- {
			out = append(out, m.recent[i])
		}
	}
	m.mu.Unlock()
	return out
}

func (m *Monitor) run(ctx context.Context) {
	defer close(m.done)
	flush := time.NewTicker(m.cfg.HistoryEvery)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			m.flushHistory()
			return
		case <-flush.C:
			m.flushHistory()
		case body := <-m.hooks:
			m.deliver(ctx, body)
		}
	}
}

func (m *Monitor) flushHistory() {
	m.mu.Lock()
	points := m.pending
	m.pending = map[string]HistoryPoint{}
	m.mu.Unlock()
	if err := m.store.AddHistory(points); err != nil {
		m.log.Error("storing link history", "err", err, "bridges", len(points))
	}
}

// webhookPayload is what the webhook receives.
type webhookPayload struct {
	Type  string    `json:"type"` // alert.raised, alert.cleared
	Alert Alert     `json:"alert"`
	Sent  time.Time `json:"sent"`
}

func (m *Monitor) hookBody(typ string, a Alert) []byte {
	if m.cfg.WebhookURL == "" {
		return nil
	}
	b, _ := json.Marshal(webhookPayload{Type: typ, Alert: a, Sent: m.now()})
	return b
}

func (m *Monitor) post(bodies ...[]byte) {
	for _, b := range bodies {
		if b == nil {
			continue
		}
		select {
		case m.hooks <- b:
		default:
			m.log.Warn("alert webhook queue full: delivery dropped", "url", m.cfg.WebhookURL)
		}
	}
}

// Sign returns the X-Citybridge-Signature value of a webhook body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// webhookBackoff is the wait before each retry of a failed delivery.
var webhookBackoff = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}

// deliver posts one body, retrying with backoff on a network error or a
// non-2xx answer. Deliveries are in order; one that fails every retry is
// logged and dropped.
func (m *Monitor) deliver(ctx context.Context, body []byte) {
	for attempt := 0; ; attempt++ {
		err := m.postOnce(ctx, body)
		if err == nil {
			return
		}
		if attempt >= len(webhookBackoff) || ctx.Err() != nil {
			m.log.Error("alert webhook failed", "url", m.cfg.WebhookURL, "attempts", attempt+1, "err", err)
			return
		}
		m.log.Warn("alert webhook failed, retrying", "url", m.cfg.WebhookURL, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(webhookBackoff[attempt]):
		}
	}
}

func (m *Monitor) postOnce(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "citybridge")
	req.Header.Set("X-Citybridge-Signature", Sign(m.cfg.WebhookSecret, body))
	resp, err := m.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// LayerName names a layer for people.
func LayerName(l int) string {
	switch l {
	case LayerLow:
		return "low"
	case LayerMid:
		return "mid"
	case LayerHigh:
		return "high"
	}
	return "none"
}

func describe(score int, cause string, s LinkSample) string {
	return fmt.Sprintf("score %d (%s): rtt %.0f ms, loss %.1f%%/%.1f%% down/up, jitter %.1f ms, layer %s",
		score, orDash(cause), s.RTTMs, 100*s.LossDown, 100*s.LossUp, max(s.JitterDownMs, s.JitterUpMs), LayerName(s.Layer))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
