package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// The readiness check before a conference: for ten seconds every invited
// bridge whose terminal is connected receives its own camera back through
// the server (SelfTester), so both directions of its link carry real
// media, and the monitor's samples of it are gathered. Each bridge passes
// or fails with the reasons; the report is kept in the store (the last one
// per conference) and exported as JSON or CSV.

var bucketReadiness = []byte("readiness")

// SelfTester runs the media part of the check (signaling.Server).
type SelfTester interface {
	// SelfTest makes each joined bridge receive its own camera for d and
	// returns the bridges that are not joined.
	SelfTest(conferenceID string, bridges []string, d time.Duration) (absent []string)
}

// Readiness thresholds: what a bridge needs to take part in a conference.
const (
	ReadinessMaxRTT  = 300 * time.Millisecond
	ReadinessMaxLoss = 0.03
	// ReadinessMinEstimate is what the middle layer and sound need, with
	// some room: below it the room would see the hub small or not at all.
	ReadinessMinEstimate = 800_000
	// ReadinessFullLayer is what the hub's full layer and sound need; the
	// headroom reported is the estimate above it.
	ReadinessFullLayer = 2_600_000
)

// ReadinessDuration is how long the check measures.
const ReadinessDuration = 10 * time.Second

// ReadinessRow is one bridge's result.
type ReadinessRow struct {
	Bridge      string  `json:"bridge"`
	Name        string  `json:"name"`
	Area        string  `json:"area,omitempty"`
	Pass        bool    `json:"pass"`
	Reason      string  `json:"reason,omitempty"` // why it failed, "; "-separated
	Connected   bool    `json:"connected"`
	Samples     int     `json:"samples"`
	RTTMs       float64 `json:"rtt_ms"`
	Loss        float64 `json:"loss"` // the worse direction, the worst second
	JitterMs    float64 `json:"jitter_ms"`
	EstimateBps int     `json:"estimate_bps"` // the median of the test's seconds
	HeadroomBps int     `json:"headroom_bps"` // estimate above what the full layer needs (negative: short of it)
	SentBps     int     `json:"sent_bps"`     // mean bitrate sent to the bridge
	RecvBps     int     `json:"recv_bps"`     // mean bitrate received from it
	Camera      *bool   `json:"camera,omitempty"`
	Microphone  *bool   `json:"microphone,omitempty"`
	Path        string  `json:"path,omitempty"`
}

// ReadinessReport is one run of the check on a conference.
type ReadinessReport struct {
	Conference string         `json:"conference"`
	Started    time.Time      `json:"started"`
	Finished   time.Time      `json:"finished,omitzero"`
	Running    bool           `json:"running"`
	By         string         `json:"by"`
	Passed     int            `json:"passed"`
	Failed     int            `json:"failed"`
	Bridges    []ReadinessRow `json:"bridges"`
}

// ErrReadinessRunning: a check of that conference is already running.
var ErrReadinessRunning = errors.New("controlplane: a readiness check is already running for this conference")

// Readiness runs checks.
type Readiness struct {
	store  *Store
	mon    *Monitor
	tester SelfTester
	log    *slog.Logger
	dur    time.Duration
	every  time.Duration

	mu      sync.Mutex
	running map[string]*ReadinessReport
}

// NewReadiness builds the runner.
func NewReadiness(store *Store, mon *Monitor, tester SelfTester, log *slog.Logger) *Readiness {
	if log == nil {
		log = slog.Default()
	}
	return &Readiness{store: store, mon: mon, tester: tester, log: log, dur: ReadinessDuration, every: time.Second,
		running: map[string]*ReadinessReport{}}
}

// Start begins a check of every bridge invited to c and returns at once;
// Report follows it. by names who asked.
func (r *Readiness) Start(c Conference, by string) (ReadinessReport, error) {
	bridges, err := r.store.InvitedBridges(c)
	if err != nil {
		return ReadinessReport{}, err
	}
	r.mu.Lock()
	if r.running[c.ID] != nil {
		r.mu.Unlock()
		return ReadinessReport{}, ErrReadinessRunning
	}
	rep := &ReadinessReport{Conference: c.ID, Started: time.Now(), Running: true, By: by}
	r.running[c.ID] = rep
	r.mu.Unlock()
	ids := make([]string, len(bridges))
	for i, b := range bridges {
		ids[i] = b.ID
	}
	absent := map[string]bool{}
	for _, b := range r.tester.SelfTest(c.ID, ids, r.dur) {
		absent[b] = true
	}
	r.log.Info("readiness check started", "conference", c.ID, "bridges", len(bridges), "not_joined", len(absent), "by", by)
	go r.run(rep, bridges, absent)
	return *rep, nil
}

// acc gathers one bridge's samples.
type acc struct {
	n, lost            int
	rtt, jitter        float64
	loss               float64
	sent, recv         int
	estimates          []int
	camera, microphone *bool
	path               string
	lastAt             time.Time
}

func (r *Readiness) run(rep *ReadinessReport, bridges []Bridge, absent map[string]bool) {
	accs := make(map[string]*acc, len(bridges))
	for _, b := range bridges {
		accs[b.ID] = &acc{}
	}
	// The first fifth (2 s) brings the echo up; the rest is measured.
	warm := r.dur / 5
	tick := time.NewTicker(r.every)
	defer tick.Stop()
	end := rep.Started.Add(r.dur)
	for now := range tick.C {
		if now.Sub(rep.Started) >= warm {
			for _, b := range bridges {
				if absent[b.ID] {
					continue
				}
				l, ok := r.mon.Link(rep.Conference, b.ID)
				a := accs[b.ID]
				if !ok || l.Sample.At.Equal(a.lastAt) {
					continue
				}
				a.lastAt = l.Sample.At
				s := l.Sample
				a.n++
				if l.State == QualityLost {
					a.lost++
				}
				a.rtt += s.RTTMs
				a.jitter += max(s.JitterDownMs, s.JitterUpMs)
				a.loss = max(a.loss, s.LossDown, s.LossUp)
				a.sent += s.SentBps
				a.recv += s.RecvBps
				a.estimates = append(a.estimates, s.EstimateBps)
				if s.Camera != nil {
					a.camera = s.Camera
				}
				if s.Microphone != nil {
					a.microphone = s.Microphone
				}
				if s.Path != "" {
					a.path = s.Path
				}
			}
		}
		if !now.Before(end) {
			break
		}
	}
	rows := make([]ReadinessRow, 0, len(bridges))
	passed := 0
	for _, b := range bridges {
		row := judge(b, accs[b.ID], absent[b.ID])
		if row.Pass {
			passed++
		}
		rows = append(rows, row)
	}
	r.mu.Lock()
	rep.Bridges, rep.Passed, rep.Failed = rows, passed, len(rows)-passed
	rep.Finished, rep.Running = time.Now(), false
	final := *rep
	delete(r.running, rep.Conference)
	r.mu.Unlock()
	if err := r.store.putReadiness(final); err != nil {
		r.log.Error("storing the readiness report", "conference", final.Conference, "err", err)
	}
	r.log.Info("readiness check done", "conference", final.Conference, "passed", final.Passed, "failed", final.Failed)
}

// judge turns a bridge's samples into pass or fail, with every reason.
func judge(b Bridge, a *acc, absent bool) ReadinessRow {
	row := ReadinessRow{Bridge: b.ID, Name: b.Name, Area: b.Area}
	var why []string
	if absent || a.n == 0 {
		row.Reason = "terminal not connected"
		return row
	}
	n := float64(a.n)
	row.Connected, row.Samples = true, a.n
	row.RTTMs = math.Round(a.rtt/n*10) / 10
	row.JitterMs = math.Round(a.jitter/n*10) / 10
	row.Loss = a.loss
	row.SentBps, row.RecvBps = a.sent/a.n, a.recv/a.n
	// The median: the estimate starts where every link starts and
	// settles on what this one carries.
	slices.Sort(a.estimates)
	row.EstimateBps = a.estimates[len(a.estimates)/2]
	row.HeadroomBps = row.EstimateBps - ReadinessFullLayer
	row.Camera, row.Microphone, row.Path = a.camera, a.microphone, a.path
	if a.lost > 0 {
		why = append(why, fmt.Sprintf("link lost for %d s of the test", a.lost))
	}
	if row.RecvBps == 0 {
		why = append(why, "sends no media")
	}
	if row.SentBps == 0 && a.camera != nil && *a.camera {
		// Without a camera there is no picture to send back: the missing
		// camera is the reason, not the downlink.
		why = append(why, "receives no media")
	}
	if a.camera == nil || !*a.camera {
		why = append(why, "no camera")
	}
	if a.microphone == nil || !*a.microphone {
		why = append(why, "no microphone")
	}
	if row.RTTMs > float64(ReadinessMaxRTT/time.Millisecond) {
		why = append(why, fmt.Sprintf("round trip %.0f ms (at most %d)", row.RTTMs, ReadinessMaxRTT/time.Millisecond))
	}
	if row.Loss > ReadinessMaxLoss {
		why = append(why, fmt.Sprintf("loss %.1f%% (at most %.0f%%)", 100*row.Loss, 100*ReadinessMaxLoss))
	}
	if row.EstimateBps < ReadinessMinEstimate {
		why = append(why, fmt.Sprintf("bandwidth %d kbit/s (at least %d)", row.EstimateBps/1000, ReadinessMinEstimate/1000))
	}
	row.Pass = len(why) == 0
	row.Reason = strings.Join(why, "; ")
	return row
}

// Report returns the running or last check of a conference.
func (r *Readiness) Report(conferenceID string) (ReadinessReport, bool, error) {
	r.mu.Lock()
	if rep := r.running[conferenceID]; rep != nil {
		cp := *rep
		r.mu.Unlock()
		return cp, true, nil
	}
	r.mu.Unlock()
	return r.store.readiness(conferenceID)
}

func (s *Store) putReadiness(rep ReadinessReport) error {
	v, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx kvTx) error {
		return tx.Bucket(bucketReadiness).Put([]byte(rep.Conference), v)
	})
}

func (s *Store) readiness(conferenceID string) (rep ReadinessReport, ok bool, err error) {
	err = s.db.View(func(tx kvTx) error {
		v := tx.Bucket(bucketReadiness).Get([]byte(conferenceID))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &rep)
	})
	return rep, ok, err
}

// CSVRows is the report as CSV records, the header first.
func (rep ReadinessReport) CSVRows() [][]string {
	out := [][]string{{"bridge", "name", "area", "result", "reason", "rtt_ms", "loss_percent", "jitter_ms",
		"estimate_kbps", "headroom_kbps", "sent_kbps", "received_kbps", "camera", "microphone", "path"}}
	yesNo := func(b *bool) string {
		switch {
		case b == nil:
			return ""
		case *b:
			return "yes"
		}
		return "no"
	}
	for _, r := range rep.Bridges {
		result := "fail"
		if r.Pass {
			result = "pass"
		}
		out = append(out, []string{r.Bridge, r.Name, r.Area, result, r.Reason,
			fmt.Sprintf("%.1f", r.RTTMs), fmt.Sprintf("%.2f", 100*r.Loss), fmt.Sprintf("%.1f", r.JitterMs),
			fmt.Sprint(r.EstimateBps / 1000), fmt.Sprint(r.HeadroomBps / 1000), fmt.Sprint(r.SentBps / 1000),
			fmt.Sprint(r.RecvBps / 1000), yesNo(r.Camera), yesNo(r.Microphone), r.Path})
	}
	return out
}
