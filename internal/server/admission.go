package server

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// admit applies overload control before any work: at most MaxInFlight
// requests are handled at once and each source IP gets
// RequestsPerSecondPerSource; the excess is answered 503 with Retry-After
// at once, which costs far less than serving it (sipgo alone collapsed
// under twice its sustainable rate: offered 22,000 SUBSCRIBE/s it completed
// 4,601/s with 74,365 goroutines). A request it admits counts in
// s.inFlight until the handler returns.
func (s *Server) admit(req *sip.Request, tx sip.ServerTransaction) bool {
	n := s.inFlight.Add(1)
	if max := s.opt.Limits.MaxInFlight; max > 0 && n > int64(max) {
		s.inFlight.Add(-1)
		s.reply(req, tx, 503, "server busy", sip.NewHeader("Retry-After", "1"))
		return false
	}
	if s.sources != nil && req.Transport() != "UDP" { // UDP: refuseEarly took the token
		host, _, err := net.SplitHostPort(req.Source())
		if err != nil {
			host = req.Source()
		}
		if !s.sources.allow(host) {
			s.inFlight.Add(-1)
			s.reply(req, tx, 503, fmt.Sprintf("more than %d requests a second from %s", s.opt.Limits.RequestsPerSecondPerSource, host),
				sip.NewHeader("Retry-After", "1"))
			return false
		}
	}
	return true
}

// sourceLimiter is a token bucket per source address: rate tokens a
// second, bursts up to one second's worth. Idle entries are dropped, so a
// scan of many addresses does not grow it without bound.
type sourceLimiter struct {
	rate float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSourceLimiter(perSecond int) *sourceLimiter {
	return &sourceLimiter{rate: float64(perSecond), buckets: map[string]*bucket{}, swept: time.Now()}
}

func (l *sourceLimiter) allow(source string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > 10*time.Second {
		for k, b := range l.buckets {
			if now.Sub(b.last) > 10*time.Second {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[source]
	if b == nil {
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[source] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
