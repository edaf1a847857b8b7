package server

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
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
		s.reply(req, tx, 503, "server busy: max_in_flight requests handled", sip.NewHeader("Retry-After", "1"))
		return false
	}
	if s.sources != nil {
		host, proxied := s.clientAddr(req)
		// Over UDP refuseEarly took the token, unless the request came
		// through a trusted proxy; a trusted source is not limited.
		limited := (req.Transport() != "UDP" || proxied) && !s.trusted(host)
		if limited && !s.sources.allow(host) {
			s.inFlight.Add(-1)
			s.reply(req, tx, 503, fmt.Sprintf("more than %d requests a second from %s", s.opt.Limits.RequestsPerSecondPerSource, host),
				sip.NewHeader("Retry-After", "1"))
			return false
		}
	}
	return true
}

// trusted reports whether host (an IP address) is a trusted source.
func (s *Server) trusted(host string) bool {
	if len(s.opt.Limits.TrustedSources) == 0 {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.opt.Limits.TrustedSources {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the host a request is accounted to and logged as: its
// source IP or, when that is a trusted source (a proxy), the client the
// Vias name below the proxy's own: going down from the second Via, the
// address of the first (its received parameter, else its sent-by host)
// that is not itself trusted, or the last one's if all are. A proxy sets
// received on the Via below its own when the sent-by is not where the
// request came from (RFC 3261 §18.2.1), so that is the client's address
// as the proxy saw it. proxied reports a trusted source; a request from
// an untrusted one is its own source, whatever its Vias claim.
func (s *Server) clientAddr(req *sip.Request) (host string, proxied bool) {
	host, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		host = req.Source()
	}
	if !s.trusted(host) {
		return host, false
	}
	vias := req.GetHeaders("Via")
	for i := 1; i < len(vias); i++ {
		v, ok := vias[i].(*sip.ViaHeader)
		if !ok {
			break
		}
		host = v.Host
		if r, ok := v.Params.Get("received"); ok && r != "" {
			host = r
		}
		host = strings.Trim(host, "[]")
		if !s.trusted(host) {
			break
		}
	}
	return host, true
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
		// A copy: a proxied client's address is a part of the request's
		// headers (its Via), which the key would keep (parseRequest).
		l.buckets[strings.Clone(source)] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
