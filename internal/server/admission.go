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

// admit applies overload control before any work: past max_in_flight
// requests (tooBusy) or past RequestsPerSecondPerSource from one source
// the request is answered 503 with Retry-After at once, which costs far
// less than serving it (sipgo alone collapsed under twice its sustainable
// rate: offered 22,000 SUBSCRIBE/s it completed 4,601/s with 74,365
// goroutines). A request it admits counts in s.inFlight until the handler
// returns.
func (s *Server) admit(req *sip.Request, tx sip.ServerTransaction) bool {
	if why := s.tooBusy(s.inFlight.Add(1)); why != "" {
		s.inFlight.Add(-1)
		s.reply(req, tx, 503, why, sip.NewHeader("Retry-After", "1"))
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

// inFlightAll is how many times max_in_flight requests may be held in
// all, those waiting for their commit included.
const inFlightAll = 2

// commitLagFree is how long the last commit may have waited for requests
// waiting for theirs to be left out of max_in_flight: a stall of the
// disk's flush is shorter, and a writer that fell behind is longer.
const commitLagFree = 100 * time.Millisecond

// tooBusy is why a request that would make n requests held (handled or
// queued, itself included) is refused, or "". max_in_flight bounds the
// requests that need the cores. One waiting for its commit does not
// need them (waitCommit), so while commits keep up (the last waited
// under commitLagFree) those are not counted, and a stall of the disk's
// flush, tens of milliseconds with the cores idle, does not refuse what
// they could serve; when the writer falls behind they count again, or
// the workers admitted would take the writer's share of the cores and
// its commits would fall further behind. All together stay under
// inFlightAll times it, which bounds their memory.
func (s *Server) tooBusy(n int64) string {
	max := int64(s.opt.Limits.MaxInFlight)
	if max <= 0 {
		return ""
	}
	held := n
	if time.Duration(s.commitLag.Load()) < commitLagFree {
		held -= s.committing.Load()
	}
	switch {
	case held > max:
		return "server busy: max_in_flight requests handled and queued"
	case n > inFlightAll*max:
		return "server busy: max_in_flight requests handled and queued, most waiting for the store"
	}
	return ""
}

// waitCommit runs commit, a wait for the store's group commit, counted
// in s.committing, and keeps how long it waited (s.commitLag): the UDP
// workers grow by one while it waits, so the queue is served during a
// stall of the disk (udpTransactions.grow).
func (s *Server) waitCommit(commit func() error) error {
	s.udp.grow(s.committing.Add(1))
	start := time.Now()
	err := commit()
	s.commitLag.Store(int64(time.Since(start)))
	s.committing.Add(-1)
	return err
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
