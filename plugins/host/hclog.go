package host

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// slogHclog is an hclog.Logger that forwards to a *slog.Logger, so that
// go-plugin's own log lines and the plugin's stderr (which go-plugin
// re-logs through the client's logger) end up in the broker's log.
type slogHclog struct {
	l    *slog.Logger
	name string
	args []any
}

func newHclog(l *slog.Logger, name string) hclog.Logger { return &slogHclog{l: l, name: name} }

func slogLevel(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (s *slogHclog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	all := make([]any, 0, 2+len(s.args)+len(args))
	if s.name != "" {
		all = append(all, "logger", s.name)
	}
	all = append(all, s.args...)
	all = append(all, args...)
	s.l.Log(context.Background(), slogLevel(level), msg, all...)
}

func (s *slogHclog) Trace(msg string, args ...any) { s.Log(hclog.Trace, msg, args...) }
func (s *slogHclog) Debug(msg string, args ...any) { s.Log(hclog.Debug, msg, args...) }
func (s *slogHclog) Info(msg string, args ...any)  { s.Log(hclog.Info, msg, args...) }
func (s *slogHclog) Warn(msg string, args ...any)  { s.Log(hclog.Warn, msg, args...) }
func (s *slogHclog) Error(msg string, args ...any) { s.Log(hclog.Error, msg, args...) }

func (s *slogHclog) enabled(lv hclog.Level) bool {
	return s.l.Enabled(context.Background(), slogLevel(lv))
}
func (s *slogHclog) IsTrace() bool { return s.enabled(hclog.Trace) }
func (s *slogHclog) IsDebug() bool { return s.enabled(hclog.Debug) }
func (s *slogHclog) IsInfo() bool  { return s.enabled(hclog.Info) }
func (s *slogHclog) IsWarn() bool  { return s.enabled(hclog.Warn) }
func (s *slogHclog) IsError() bool { return s.enabled(hclog.Error) }

func (s *slogHclog) ImpliedArgs() []any { return s.args }

func (s *slogHclog) With(args ...any) hclog.Logger {
	return &slogHclog{l: s.l, name: s.name, args: append(append([]any(nil), s.args...), args...)}
}

func (s *slogHclog) Name() string { return s.name }

func (s *slogHclog) Named(name string) hclog.Logger {
	n := name
	if s.name != "" {
		n = s.name + "." + name
	}
	return &slogHclog{l: s.l, name: n, args: s.args}
}

func (s *slogHclog) ResetNamed(name string) hclog.Logger {
	return &slogHclog{l: s.l, name: name, args: s.args}
}

// SetLevel is a no-op: the slog handler decides what is shown.
func (s *slogHclog) SetLevel(hclog.Level) {}

func (s *slogHclog) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if s.enabled(lv) {
			return lv
		}
	}
	return hclog.Error
}

func (s *slogHclog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(s.StandardWriter(opts), "", 0)
}

func (s *slogHclog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return lineWriter{s} }

type lineWriter struct{ s *slogHclog }

func (w lineWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.s.Info(line)
		}
	}
	return len(p), nil
}
