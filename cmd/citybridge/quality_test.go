package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"citybridge/controlplane"
)

// link reads a bridge's link as the monitor shows it to the technicians.
func link(ts *testServer, bridge string) (controlplane.BridgeLink, bool) {
	return ts.mon.Link(ts.demo.Conference.ID, bridge)
}

func describeLink(b controlplane.BridgeLink, ok bool) string {
	if !ok {
		return "not observed"
	}
	s := b.Sample
	return fmt.Sprintf("%s score %d (%s), loss down %.1f%% up %.1f%%, rtt %.0f ms, jitter %.1f ms, layer %d (%s), silent %v, alert %q",
		b.State, b.Score, b.Cause, 100*s.LossDown, 100*s.LossUp, s.RTTMs, s.JitterDownMs, s.Layer, s.LayerReason, s.Silent, b.Alert)
}

// TestQualityReflectsLoss: 5% random loss on one room's downlink (nftables
// in its network namespace). Within 10 s the monitor reports that bridge's
// loss between 3% and 8% and its state fair or poor, while the hub, a
// bridge on an unimpaired link, stays good throughout.
func TestQualityReflectsLoss(t *testing.T) {
	requireMediaPass(t) // not parallel: it needs the machine's CPU to itself
	nl := newNetLink(t)
	ts := startTestServerOn(t, nl)
	const id = "ward-021"
	host := openTab(t, newBrowser(t), "host", ts.base+"/host#t="+ts.demo.HostToken)
	room := openTab(t, newBrowserIn(t, nl), id, ts.terminalLink(t, id))
	saveScreenshotsOnFailure(t, host, room)

	waitUntil(t, 60*time.Second, id+" decoding the hub and measured good", func() (bool, string) {
		frames, _ := received(t, room, "hub")
		b, ok := link(ts, id)
		return frames > 30 && ok && b.State == controlplane.QualityGood && b.Sample.RTTMs > 0, fmt.Sprintf("frames %d; %s", frames, describeLink(b, ok))
	})

	nl.SetLoss(t, 5)
	start := time.Now()
	var hubWorst string
	checkHub := func() {
		if b, ok := link(ts, controlplane.HubBridge.ID); !ok || b.State != controlplane.QualityGood {
			if hubWorst == "" {
				hubWorst = describeLink(b, ok)
			}
		}
	}
	var series []string // the loss of each sample, for the log
	var lastAt time.Time
	waitUntil(t, 10*time.Second, id+"'s loss reported between 3% and 8%, state fair or poor", func() (bool, string) {
		checkHub()
		b, ok := link(ts, id)
		loss := max(b.Sample.LossDown, b.Sample.LossUp)
		if ok && !b.Sample.At.Equal(lastAt) {
			lastAt = b.Sample.At
			series = append(series, fmt.Sprintf("%.1f%%", 100*loss))
		}
		return ok && loss >= 0.03 && loss <= 0.08 && (b.State == controlplane.QualityFair || b.State == controlplane.QualityPoor),
			describeLink(b, ok)
	})
	b, ok := link(ts, id)
	t.Logf("under 5%% loss, after %v: %s; loss each second: %v", time.Since(start).Round(100*time.Millisecond), describeLink(b, ok), series)
	// It stays so while the loss lasts, and the hub stays good.
	var steady []string
	var losses []float64
	good := 0
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		checkHub()
		b, ok := link(ts, id)
		if ok && !b.Sample.At.Equal(lastAt) {
			lastAt = b.Sample.At
			loss := max(b.Sample.LossDown, b.Sample.LossUp)
			steady = append(steady, fmt.Sprintf("%.1f%% %s", 100*loss, b.State))
			losses = append(losses, loss)
			if b.State == controlplane.QualityGood {
				good++
			}
		}
	}
	t.Logf("the next seconds: %v", steady)
	slices.Sort(losses)
	if len(losses) < 3 || losses[len(losses)/2] < 0.03 || losses[len(losses)/2] > 0.08 || good > 0 {
		t.Errorf("the reported loss did not hold between 3%% and 8%%, fair or poor, while the 5%% loss lasted: %v", steady)
	}
	if hubWorst != "" {
		t.Errorf("the hub, on an unimpaired link, was not good while the room had 5%% loss: %s", hubWorst)
	}
	hb, hok := link(ts, controlplane.HubBridge.ID)
	t.Logf("the hub: %s", describeLink(hb, hok))

	// The state change is in the link record, with its cause.
	evs, err := ts.store.Events(ts.demo.Conference.ID, id, start, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		found = found || (e.Kind == controlplane.EventState && e.Cause != "" && e.Detail != "")
	}
	if !found {
		t.Errorf("no state-change event for %s under loss; events: %+v", id, evs)
	}
	nl.ClearLoss(t)
}

// webhookReceiver stands for the city's alerting system: it checks each
// delivery's signature and keeps what it was sent.
type webhookReceiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	got    []struct {
		Type  string             `json:"type"`
		Alert controlplane.Alert `json:"alert"`
	}
}

func (h *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if got, want := r.Header.Get("X-Citybridge-Signature"), controlplane.Sign(h.secret, body); got != want {
		h.t.Errorf("webhook delivery signed %q, want %q", got, want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, struct {
		Type  string             `json:"type"`
		Alert controlplane.Alert `json:"alert"`
	}{})
	if err := json.Unmarshal(body, &h.got[len(h.got)-1]); err != nil {
		h.t.Errorf("webhook body %s: %v", body, err)
	}
}

// has reports whether a delivery of typ for bridge arrived.
func (h *webhookReceiver) has(typ, bridge string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.got {
		if d.Type == typ && d.Alert.Bridge == bridge && d.Alert.Kind == controlplane.AlertLost {
			return true
		}
	}
	return false
}

// TestLostBridgeAlert: cutting a room's link makes the bridge lost within
// 5 s; after the configured delay (4 s here) an alert is raised and posted,
// signed, to a webhook receiver; restoring the link clears the state, the
// alert, and posts the clearing.
func TestLostBridgeAlert(t *testing.T) {
	requireMediaPass(t)
	nl := newNetLink(t)
	rx := &webhookReceiver{t: t, secret: "test-webhook-key"}
	hook := httptest.NewServer(rx) // on loopback
	t.Cleanup(hook.Close)
	const delay = 4 * time.Second
	ts := startTestServerWith(t, func(c *Config) {
		onLink(nl)(c)
		c.AlertLostAfter = delay
		c.AlertWebhook, c.AlertWebhookSecret = hook.URL, rx.secret
	})
	const id = "zone-05"
	host := openTab(t, newBrowser(t), "host", ts.base+"/host#t="+ts.demo.HostToken)
	room := openTab(t, newBrowserIn(t, nl), id, ts.terminalLink(t, id))
	saveScreenshotsOnFailure(t, host, room)
	waitUntil(t, 60*time.Second, id+" decoding the hub, its link observed", func() (bool, string) {
		frames, _ := received(t, room, "hub")
		b, ok := link(ts, id)
		return frames > 10 && ok && b.State != controlplane.QualityLost, fmt.Sprintf("frames %d; %s", frames, describeLink(b, ok))
	})

	nl.Cut(t)
	cut := time.Now()
	waitUntil(t, 5*time.Second, id+" lost", func() (bool, string) {
		b, ok := link(ts, id)
		return b.State == controlplane.QualityLost, describeLink(b, ok)
	})
	lostAfter := time.Since(cut)
	if b, _ := link(ts, id); b.Alert != "" && time.Since(cut) < delay {
		t.Errorf("alert %q raised %v after the cut, before the %v delay", b.Alert, time.Since(cut), delay)
	}
	waitUntil(t, delay+5*time.Second, "a lost alert for "+id+" and its webhook delivery", func() (bool, string) {
		b, ok := link(ts, id)
		return b.Alert == controlplane.AlertLost && rx.has("alert.raised", id), describeLink(b, ok)
	})
	alertAfter := time.Since(cut)
	if alertAfter < delay {
		t.Errorf("alert after %v, before the configured %v", alertAfter, delay)
	}
	if a := ts.mon.Alerts(false); len(a) != 1 || a[0].Bridge != id {
		t.Errorf("active alerts %+v, want only %s's", a, id)
	}

	nl.Restore(t)
	restored := time.Now()
	waitUntil(t, 30*time.Second, id+" back, its alert cleared and the clearing posted", func() (bool, string) {
		b, ok := link(ts, id)
		return ok && b.State != controlplane.QualityLost && b.Alert == "" && len(ts.mon.Alerts(false)) == 0 &&
			rx.has("alert.cleared", id), describeLink(b, ok)
	})
	t.Logf("lost %v after the cut, alert %v after it; cleared %v after the restore",
		lostAfter.Round(100*time.Millisecond), alertAfter.Round(100*time.Millisecond), time.Since(restored).Round(100*time.Millisecond))
}
