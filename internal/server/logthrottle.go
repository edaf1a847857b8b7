package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// rateLimit lets at most perSecond log lines through each second and says
// how many it held back, once, when the next second starts.
type rateLimit struct {
	perSecond int
	log       *slog.Logger
	what      string // the lines it holds back, for the line that counts them

	mu         sync.Mutex
	second     int64
	used       int
	suppressed int
}

// limitedHandler passes at most the limiter's rate of records a second to
// the handler it wraps: sipgo logs every unparsable message at ERROR with
// the message itself, so a flood of garbage would otherwise flood the log
// (up to 64 KB a line).
type limitedHandler struct {
	slog.Handler
	limit *rateLimit
}

func (h limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.limit.allow() {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h limitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return limitedHandler{h.Handler.WithAttrs(attrs), h.limit}
}

func (h limitedHandler) WithGroup(name string) slog.Handler {
	return limitedHandler{h.Handler.WithGroup(name), h.limit}
}

func (l *rateLimit) allow() bool {
	now := time.Now().Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now != l.second {
		if l.suppressed > 0 {
			l.log.Warn("log lines suppressed", "what", l.what, "count", l.suppressed, "limit_per_second", l.perSecond)
		}
		l.second, l.used, l.suppressed = now, 0, 0
	}
	if l.used < l.perSecond {
		l.used++
		return true
	}
	l.suppressed++
	return false
}

// sipgo's default logger is process-wide and unsynchronised: setting it
// from each Server.Start raced with sipgo reading it when several servers
// run in one process (the tests). It is set once, to a handler that
// forwards to the handler of the server started last (a daemon runs one).
var (
	sipgoOnce   sync.Once
	sipgoTarget atomic.Pointer[slog.Handler]
)

func setSipgoLog(h slog.Handler) {
	sipgoTarget.Store(&h)
	sipgoOnce.Do(func() { sip.SetDefaultLogger(slog.New(&forwardHandler{})) })
}

// forwardHandler hands each record to sipgoTarget, with the attributes and
// groups sipgo added to its loggers (With) applied to it. The handler so
// derived is kept until another server starts: sipgo logs on every
// request (mostly Debug, refused by Enabled), and building it per call
// would put WithAttrs allocations on that path.
type forwardHandler struct {
	ops     []func(slog.Handler) slog.Handler
	derived atomic.Pointer[derivedHandler]
}

type derivedHandler struct {
	base *slog.Handler // the sipgoTarget it was derived from
	h    slog.Handler
}

func (f *forwardHandler) target() slog.Handler {
	base := sipgoTarget.Load()
	if d := f.derived.Load(); d != nil && d.base == base {
		return d.h
	}
	h := *base
	for _, op := range f.ops {
		h = op(h)
	}
	f.derived.Store(&derivedHandler{base, h})
	return h
}

// Enabled asks the target itself: attributes and groups do not change
// which levels a handler takes.
func (f *forwardHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return (*sipgoTarget.Load()).Enabled(ctx, l)
}

func (f *forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	return f.target().Handle(ctx, r)
}

func (f *forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return f.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

func (f *forwardHandler) WithGroup(name string) slog.Handler {
	return f.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (f *forwardHandler) with(op func(slog.Handler) slog.Handler) *forwardHandler {
	return &forwardHandler{ops: append(f.ops[:len(f.ops):len(f.ops)], op)}
}
