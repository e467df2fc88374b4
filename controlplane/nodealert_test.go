package controlplane

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestNodeAlert: the server's own alert (a node cut from etcd) is raised
// once however often it is asked, listed with its node and no bridge,
// posted to the webhook raised and cleared, and kept among the recent
// alerts once cleared; it writes nothing to the store.
func TestNodeAlert(t *testing.T) {
	st, _ := openTemp(t)
	rx := &hookReceiver{t: t, secret: "s"}
	srv := httptest.NewServer(rx)
	t.Cleanup(srv.Close)
	m := NewMonitor(st, MonitorConfig{WebhookURL: srv.URL, WebhookSecret: "s", Log: discardLogger()})
	t.Cleanup(m.Close)
	since := time.Now().Add(-time.Second)
	m.RaiseNodeAlert(AlertEtcd, "node-a", "etcd unreachable", since)
	m.RaiseNodeAlert(AlertEtcd, "node-a", "etcd unreachable", time.Now())
	if al := m.Alerts(false); len(al) != 1 || al[0].Kind != AlertEtcd || al[0].Node != "node-a" || al[0].Bridge != "" ||
		!al[0].Since.Equal(since) || !al[0].Cleared.IsZero() {
		t.Fatalf("active alerts %+v, want node-a's etcd alert once, since %v", al, since)
	}
	m.ClearNodeAlert(AlertEtcd)
	m.ClearNodeAlert(AlertEtcd)
	if al := m.Alerts(false); len(al) != 0 {
		t.Errorf("active alerts after clearing: %+v", al)
	}
	if al := m.Alerts(true); len(al) != 1 || al[0].Cleared.IsZero() {
		t.Errorf("recent alerts %+v, want the etcd alert cleared", al)
	}
	waitCond(t, 5*time.Second, "two webhook deliveries", func() bool { return len(rx.deliveries()) == 2 })
	if d := rx.deliveries(); d[0].Type != "alert.raised" || d[1].Type != "alert.cleared" || d[1].Alert.Node != "node-a" {
		t.Errorf("webhook deliveries %+v", d)
	}
	if evs, err := st.Events("", "", time.Time{}, time.Time{}, 0); err != nil || len(evs) != 0 {
		t.Errorf("events stored: %+v %v, want none", evs, err)
	}
}
