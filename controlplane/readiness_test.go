package controlplane

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeTester stands for the signaling server: some bridges are joined.
type fakeTester struct {
	joined []string
	asked  []string
}

func (f *fakeTester) SelfTest(_ string, bridges []string, _ time.Duration) (absent []string) {
	f.asked = bridges
	for _, b := range bridges {
		if !slices.Contains(f.joined, b) {
			absent = append(absent, b)
		}
	}
	return absent
}

// TestReadinessJudges: a check over four invited bridges fed with
// samples: a good one passes; one on a lossy, slow link, one without a
// microphone and one not connected fail with their reasons; the report
// survives a reopen of the store and exports as CSV.
func TestReadinessJudges(t *testing.T) {
	st, path := openTemp(t)
	bridges := []Bridge{
		{ID: "ward-001", Name: "Ward 1", Kind: KindWard, Area: "north"},
		{ID: "ward-002", Name: "Ward 2", Kind: KindWard, Area: "north"},
		{ID: "ward-003", Name: "Ward 3", Kind: KindWard, Area: "south"},
		{ID: "ward-004", Name: "Ward 4", Kind: KindWard, Area: "south"},
	}
	if err := st.PutBridges(bridges); err != nil {
		t.Fatal(err)
	}
	c, err := st.CreateConference(Conference{Title: "check", Bridges: []string{"ward-001", "ward-002", "ward-003", "ward-004"}})
	if err != nil {
		t.Fatal(err)
	}
	mon := NewMonitor(st, MonitorConfig{})
	t.Cleanup(mon.Close)
	tester := &fakeTester{joined: []string{"ward-001", "ward-002", "ward-003"}}
	r := NewReadiness(st, mon, tester, nil)
	r.dur, r.every = 500*time.Millisecond, 20*time.Millisecond

	yes, no := true, false
	good := LinkSample{RTTMs: 12, JitterDownMs: 2, EstimateBps: 3_000_000, SentBps: 900_000, RecvBps: 1_100_000,
		Layer: LayerHigh, LayerReason: "best", Camera: &yes, Microphone: &yes, Path: "udp"}
	lossy := good
	lossy.LossDown, lossy.RTTMs, lossy.EstimateBps = 0.06, 420, 500_000
	mute := good
	mute.Microphone = &no

	rep, err := r.Start(c, "tech")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Running || len(tester.asked) != 4 {
		t.Fatalf("started report %+v, self-test asked for %v", rep, tester.asked)
	}
	if _, err := r.Start(c, "tech"); err != ErrReadinessRunning {
		t.Fatalf("second start: %v, want ErrReadinessRunning", err)
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			now := time.Now()
			for id, s := range map[string]LinkSample{"ward-001": good, "ward-002": lossy, "ward-003": mute} {
				s.At = now
				mon.Observe(c.ID, id, s)
			}
		}
	}()
	waitCond(t, 5*time.Second, "the check to finish", func() bool {
		rep, _, _ := r.Report(c.ID)
		return !rep.Running && rep.Finished.After(rep.Started)
	})
	close(stop)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	rep, ok, err := st2.readiness(c.ID)
	if err != nil || !ok {
		t.Fatalf("report after reopen: %v %v", ok, err)
	}
	if rep.Passed != 1 || rep.Failed != 3 || len(rep.Bridges) != 4 {
		t.Fatalf("report %+v, want 1 passed, 3 failed", rep)
	}
	want := map[string][]string{
		"ward-001": nil,
		"ward-002": {"round trip 420 ms", "loss 6.0%", "bandwidth 500 kbit/s"},
		"ward-003": {"no microphone"},
		"ward-004": {"terminal not connected"},
	}
	for _, row := range rep.Bridges {
		reasons := want[row.Bridge]
		if row.Pass != (reasons == nil) {
			t.Errorf("%s: pass %v (%s)", row.Bridge, row.Pass, row.Reason)
		}
		for _, w := range reasons {
			if !strings.Contains(row.Reason, w) {
				t.Errorf("%s: reason %q lacks %q", row.Bridge, row.Reason, w)
			}
		}
	}
	g := rep.Bridges[0]
	if g.RTTMs != 12 || g.SentBps != 900_000 || g.RecvBps != 1_100_000 || g.HeadroomBps != 400_000 || g.Path != "udp" {
		t.Errorf("good bridge's figures %+v", g)
	}
	csv := rep.CSVRows()
	if len(csv) != 5 || csv[0][3] != "result" || csv[1][3] != "pass" || csv[4][4] != "terminal not connected" {
		t.Errorf("CSV %v", csv)
	}
}
