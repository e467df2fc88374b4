package sfu

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// slogFactory routes pion's internal logs into our structured logger, with
// pion's scope (ice, dtls, sctp, ...) as an attribute. pion's Trace,
// Debug and Info (chatty state changes) all go to slog Debug.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.log.With("pion", scope)}
}

type slogLogger struct{ log *slog.Logger }

func (l slogLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l slogLogger) emitf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l slogLogger) Trace(msg string)                  { l.emit(slog.LevelDebug-4, msg) }
func (l slogLogger) Tracef(format string, args ...any) { l.emitf(slog.LevelDebug-4, format, args...) }
func (l slogLogger) Debug(msg string)                  { l.emit(slog.LevelDebug, msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.emitf(slog.LevelDebug, format, args...) }
func (l slogLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l slogLogger) Warn(msg string)                   { l.emit(slog.LevelWarn, msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelWarn, format, args...) }
func (l slogLogger) Error(msg string)                  { l.emit(slog.LevelError, msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.emitf(slog.LevelError, format, args...) }
