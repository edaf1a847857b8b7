package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLimit lets at most perSecond log lines through each second and says
// how many it held back, once, when the next second starts.
type rateLimit struct {
	perSecond int
	log       *slog.Logger

	mu         sync.Mutex
	second     int64
	used       int
	suppressed int
}

// limitedHandler passes at most the limiter's rate of records a second to
// the handler it wraps: sipgo logs every unparsable message at ERROR with
// the message itself, so a flood of garbage would otherwise flood the log
// (research/sipgo.md §4 item 7).
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
			l.log.Warn("refusal log lines suppressed", "count", l.suppressed, "limit_per_second", l.perSecond)
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
