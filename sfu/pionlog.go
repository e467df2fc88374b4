package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// slogFactory routes pion's internal logs into our structured logger, with
// pion's scope (ice, pc, mux, ...) as an attribute. pion's Trace, Debug
// and Info (chatty state changes) all go to slog Debug; its warnings and
// errors stay warnings and errors, except the routine ones listed in
// routinePion, which go to Debug too.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{log: f.log.With("pion", scope), scope: scope}
}

// routineMessage is one warning or error pion prints in the ordinary
// course of joins and leaves: nothing for an operator to act on.
type routineMessage struct {
	scope  string   // pion's logger scope
	prefix string   // how the message starts
	when   []string // if set, routine only when the message holds one of these
}

// closing is what an error says when it is a socket or stream closed
// under its reader because the connection ended.
var closing = []string{"closed", "EOF", "connection reset by peer"}

// routinePion is the table of pion's known-routine warnings and errors
// (read from pion's sources: ice v4.4, webrtc v4.2). Anything not listed
// keeps pion's level. When pion is updated, TestRoutineICEChatterIsDebug
// (cmd/citybridge) shows what a join and a leave print.
var routinePion = []routineMessage{
	// Trickle ICE: the agent's first check runs before the peer's
	// candidates have arrived. Every join.
	{scope: "ice", prefix: "Failed to ping without candidate pairs"},
	// A candidate's socket closed under its reader or writer, or a packet
	// for a connection the UDP port has just let go: every leave.
	{scope: "ice", prefix: "Failed to read from candidate", when: closing},
	{scope: "ice", prefix: "Failed to write packet", when: closing},
	// A terminal that leaves as its answer arrives: the agent is closed
	// before its checks start.
	{scope: "ice", prefix: "Failed to start connectivity checks", when: closing},
	{scope: "udpmux", prefix: "Failed to write packet", when: closing},
	// Browsers hide their host addresses behind .local names; the server
	// does not resolve them (mDNS is off) and needs not: the terminal
	// reaches the server's addresses, and those checks find its own.
	{scope: "ice", prefix: "Remote mDNS candidate added, but mDNS is disabled"},
	// --media-allow at work: a terminal's other addresses (a VPN, IPv6,
	// a virtual machine's bridge) are ignored, as documented.
	{scope: "ice", prefix: "Ignoring remote candidate filtered by remote IP policy"},
	// A late answer to a check the agent has already given up on (lossy
	// or slow links, ICE restarts).
	{scope: "ice", prefix: "Discard message from (", when: []string{"unknown TransactionID"}},
	{scope: "ice", prefix: "Discard success response from (", when: []string{"unknown TransactionID"}},
	// ICE-TCP: a terminal opened a TCP path and then used UDP, or left.
	{scope: "tcpmux", prefix: "close tcp packet conn by alive timeout"},
	{scope: "tcpmux", prefix: "Error reading first packet from", when: closing},
	{scope: "tcpmux", prefix: "Failed to read streaming packet", when: closing},
	// The connection's SRTP sessions closing under their readers: every
	// leave.
	{scope: "pc", prefix: "Failed to accept RTP", when: closing},
	{scope: "pc", prefix: "Failed to accept RTCP", when: closing},
	// RTCP about a stream before its first RTP packet is bound to a
	// receiver (a sender report at a publisher's start); once per stream.
	{scope: "pc", prefix: "Incoming unhandled RTCP ssrc("},
	// DTLS or SRTP arriving before its handler is set up, or a DTLS
	// close_notify after: queued and handed over (the queue overflowing,
	// "not adding to queue", stays a warning).
	{scope: "mux", prefix: "Warning: mux: no endpoint for packet starting with", when: []string{", adding to queue"}},
}

// routine reports whether pion's message in scope is in routinePion.
func routine(scope, msg string) bool {
	for _, r := range routinePion {
		if r.scope != scope || !strings.HasPrefix(msg, r.prefix) {
			continue
		}
		if len(r.when) == 0 {
			return true
		}
		for _, w := range r.when {
			if strings.Contains(msg, w) {
				return true
			}
		}
	}
	return false
}

type slogLogger struct {
	log   *slog.Logger
	scope string
}

func (l slogLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l slogLogger) emitf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

// problem logs pion's warning or error at level, or at Debug when it is
// routine.
func (l slogLogger) problem(level slog.Level, msg string) {
	if routine(l.scope, msg) {
		level = slog.LevelDebug
	}
	l.emit(level, msg)
}

// problemf is problem with pion's format; nothing is formatted when level
// is off (Debug then is too).
func (l slogLogger) problemf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.problem(level, fmt.Sprintf(format, args...))
	}
}

func (l slogLogger) Trace(msg string)                  { l.emit(slog.LevelDebug-4, msg) }
func (l slogLogger) Tracef(format string, args ...any) { l.emitf(slog.LevelDebug-4, format, args...) }
func (l slogLogger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }
func (l slogLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l slogLogger) Warn(msg string)                   { l.problem(slog.LevelWarn, msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.problemf(slog.LevelWarn, format, args...) }
func (l slogLogger) Error(msg string)                  { l.problem(slog.LevelError, msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.problemf(slog.LevelError, format, args...) }
