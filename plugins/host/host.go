// Package host is the broker's side of policy plugins: it runs retention and
// compaction policies as child processes (hashicorp/go-plugin, gRPC
// transport, protocol version pluginpb.ProtocolVersion) and hands the broker
// proxies that implement the plugins interfaces.
//
// Safety rules, in the order they apply:
//
//   - Allow-list: only a regular executable file directly inside
//     Options.Dir (brokkr.plugin.dir) can be named; "", ".", "..", names with
//     a path separator, and symlinks resolving outside the directory are
//     ErrNotAllowed. The name is resolved again at every (re)start.
//   - Lazy start: a proxy starts its process on its first call.
//   - Every call runs under Options.CallTimeout (and the caller's context).
//     Only CallTimeout makes a time-out a fault: a caller's context that
//     ends first (cancelled, or a shorter deadline) just fails the call, so
//     callers should allow at least CallTimeout.
//   - Faults: a crash, a time-out, a transport or decode error, a failed
//     health check (every Options.HealthInterval), and an answer the host
//     refuses (plugins.Validate / plugins.ValidateSurvivors) are counted in
//     Status.Faults, logged once, and returned as errors. All but a refused
//     answer also kill the process; it is restarted on the next call after an
//     exponential back-off (Options.MinBackoff doubling up to MaxBackoff; back
//     to MinBackoff once an incarnation has run for MaxBackoff). While it is
//     down every call fails at once with ErrUnavailable.
//   - A policy's own error (a bad config) is plugins.ErrPolicyFailed; it is
//     no fault and restarts nothing.
//
// The caller deletes nothing on any error. Compaction batches are split into
// chunks of at most pluginpb.ChunkBytes (the same chunks for Scan and
// Survivors), and gRPC messages are bounded by pluginpb.MaxMessageBytes.
package host

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/brokkr/brokkr/plugins"
)

// ErrNotAllowed reports a plugin name that is not a regular executable file
// directly inside the plugin directory, or a host without a plugin
// directory.
var ErrNotAllowed = errors.New("plugin not allowed")

// ErrUnavailable reports a plugin that is down, backing off after a fault,
// or whose host is closed: the caller must delete nothing and try again
// later.
var ErrUnavailable = errors.New("plugin unavailable")

// Options configures a Host. Zero durations take the defaults shown.
type Options struct {
	// Dir is brokkr.plugin.dir, the allow-list. Empty: no plugin can be
	// named.
	Dir string
	// CallTimeout bounds every call to a plugin (default 10s).
	CallTimeout time.Duration
	// StartTimeout bounds a plugin's start and handshake (default 10s).
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a faulted plugin is
	// restarted (default 1s and 1m).
	MinBackoff, MaxBackoff time.Duration
	// HealthInterval is how often a running plugin is health-checked
	// (default 10s).
	HealthInterval time.Duration
	// Logger receives faults and the plugins' own log lines (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o *Options) defaults() error {
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d < 0 {
			return fmt.Errorf("plugin host: %s %v is negative", name, *d)
		}
		if *d == 0 {
			*d = v
		}
		return nil
	}
	for _, e := range []error{
		def(&o.CallTimeout, 10*time.Second, "call time-out"),
		def(&o.StartTimeout, 10*time.Second, "start time-out"),
		def(&o.MinBackoff, time.Second, "minimum back-off"),
		def(&o.MaxBackoff, time.Minute, "maximum back-off"),
		def(&o.HealthInterval, 10*time.Second, "health interval"),
	} {
		if e != nil {
			return e
		}
	}
	if o.MinBackoff > o.MaxBackoff {
		return fmt.Errorf("plugin host: minimum back-off %v above maximum %v", o.MinBackoff, o.MaxBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Host runs plugin processes. It is safe for concurrent use.
type Host struct {
	o   Options
	dir string // Options.Dir, absolute, symlinks resolved; "" when unset

	mu     sync.Mutex
	procs  map[string]*proc
	closed bool
	wg     sync.WaitGroup // health loops and kills
}

// New returns a host for the plugins in o.Dir. It starts no process. A set
// Dir that is not a directory is an error; an empty Dir gives a host that
// refuses every name.
func New(o Options) (*Host, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	h := &Host{o: o, procs: map[string]*proc{}}
	if o.Dir != "" {
		abs, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("brokkr.plugin.dir %q: %w", o.Dir, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("brokkr.plugin.dir %q: %w", o.Dir, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("brokkr.plugin.dir %q: %w", o.Dir, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("brokkr.plugin.dir %q is not a directory", o.Dir)
		}
		h.dir = real
	}
	return h, nil
}

// Resolve returns the path of the executable that name stands for, or an
// error wrapping ErrNotAllowed.
func (h *Host) Resolve(name string) (string, error) {
	if h.dir == "" {
		return "", fmt.Errorf("%w: %q: brokkr.plugin.dir is not set", ErrNotAllowed, name)
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return "", fmt.Errorf("%w: %q is not a plain file name in brokkr.plugin.dir", ErrNotAllowed, name)
	}
	p := filepath.Join(h.dir, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("%w: %q: no such file in brokkr.plugin.dir %s", ErrNotAllowed, name, h.dir)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		t, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", fmt.Errorf("%w: %q: broken symlink", ErrNotAllowed, name)
		}
		if filepath.Dir(t) != h.dir {
			return "", fmt.Errorf("%w: %q is a symlink to %s, outside brokkr.plugin.dir %s", ErrNotAllowed, name, t, h.dir)
		}
		if fi, err = os.Stat(t); err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrNotAllowed, name, err)
		}
		p = t
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %q is not a regular file", ErrNotAllowed, name)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: %q is not executable", ErrNotAllowed, name)
	}
	return p, nil
}

func (h *Host) proc(name string) (*proc, error) {
	path, err := h.Resolve(name)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("%w: %q: plugin host closed", ErrUnavailable, name)
	}
	p := h.procs[name]
	if p == nil {
		p = &proc{h: h, name: name, path: path, backoff: h.o.MinBackoff}
		h.procs[name] = p
	}
	return p, nil
}

// Retention returns the retention policy served by the plugin binary name
// in the plugin directory. The process starts on the first call; every
// proxy for the same name shares one process.
func (h *Host) Retention(name string) (plugins.RetentionPolicy, error) {
	p, err := h.proc(name)
	if err != nil {
		return nil, err
	}
	return &retentionProxy{p: p}, nil
}

// Compaction returns the compaction policy served by the plugin binary name
// in the plugin directory, as Retention does.
func (h *Host) Compaction(name string) (plugins.CompactionPolicy, error) {
	p, err := h.proc(name)
	if err != nil {
		return nil, err
	}
	return &compactionProxy{p: p}, nil
}

// Status is one plugin's state, for metrics and `brokkr topic describe`.
type Status struct {
	Name    string // the file name in the plugin directory
	Path    string // the executable run
	Running bool   // a process is up
	// Restarts counts starts after the first; Faults counts crashes,
	// time-outs, transport and decode errors, failed health checks and
	// refused answers; Calls counts calls sent to the plugin.
	Restarts, Faults, Calls int64
	LastError               string    // the last fault or policy error
	LastFault               time.Time // zero when none
	BackoffUntil            time.Time // calls fail with ErrUnavailable until then
}

// Status returns the state of every plugin named so far, by name.
func (h *Host) Status() []Status {
	h.mu.Lock()
	ps := make([]*proc, 0, len(h.procs))
	for _, p := range h.procs {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	out := make([]Status, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close kills every plugin process and waits for them; later calls fail
// with ErrUnavailable.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	ps := make([]*proc, 0, len(h.procs))
	for _, p := range h.procs {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	for _, p := range ps {
		p.shutdown()
	}
	h.wg.Wait()
	return nil
}

// track runs f in a goroutine that Close waits for; after Close it runs f
// synchronously instead (Close's Wait may already have returned).
func (h *Host) track(f func()) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		f()
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		f()
	}()
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}
