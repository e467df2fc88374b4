package sfu

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestPionRoutineLevels: pion's routine warnings (routinePion) come out at
// Debug, anything else at pion's own level, whatever the scope's other
// messages. The joins and leaves that print them are in
// TestRoutineICEChatterIsDebug (cmd/citybridge).
func TestPionRoutineLevels(t *testing.T) {
	for _, c := range []struct {
		scope, msg string
		routine    bool
	}{
		{"ice", "Failed to ping without candidate pairs. Connection is not possible yet.", true},
		{"ice", "Failed to read from candidate udp4 host 127.0.0.1:5000: io: read/write on closed pipe", true},
		{"ice", "Failed to read from candidate udp4 host 127.0.0.1:5000: read: connection refused", false},
		{"ice", "Remote mDNS candidate added, but mDNS is disabled: (x.local)", true},
		{"ice", "Discard message from (10.0.0.1:5000), unknown TransactionID 0x1f", true},
		{"ice", "Discard request with broken integrity from (10.0.0.1:5000), integrity check failed", false},
		{"ice", "Failed to handle decode ICE from 10.0.0.1:5000 to 10.0.0.2:6000: bad", false},
		{"ice", "Failed to start connectivity checks: the agent is closed", true},
		{"ice", "Failed to start connectivity checks: some other trouble", false},
		{"udpmux", "Failed to write packet: io: read/write on closed pipe", true},
		{"pc", "Failed to accept RTP stream is already closed", true},
		{"pc", "Incoming unhandled RTCP ssrc(1234), OnTrack will not be fired", true},
		{"pc", "Failed to ping without candidate pairs", false}, // another scope's message
		{"mux", "Warning: mux: no endpoint for packet starting with 21, adding to queue size(0)", true},
		{"mux", "Warning: mux: no endpoint for packet starting with 128, not adding to queue size(100)", false},
		{"turn", "Expired time-windowed username \"1:ward-001\"", false},
	} {
		var out bytes.Buffer
		l := slogFactory{slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}.NewLogger(c.scope)
		l.Warnf("%s", c.msg)
		l.Error(c.msg)
		got := out.String()
		levels := [3]int{strings.Count(got, "level=DEBUG"), strings.Count(got, "level=WARN"), strings.Count(got, "level=ERROR")}
		want := [3]int{0, 1, 1}
		if c.routine {
			want = [3]int{2, 0, 0}
		}
		if levels != want || strings.Count(got, "pion="+c.scope) != 2 {
			t.Errorf("%s %q as a warning and an error: logged\n%s\nwant debug, warn, error %v", c.scope, c.msg, got, want)
		}
	}
}
