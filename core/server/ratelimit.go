package server

import (
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
