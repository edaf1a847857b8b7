package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// storeDeadline hands out the context that bounds a store call by
// commitTimeout: one context, with one timer, for all the calls begun in
// the same second, its deadline commitTimeout to commitTimeout plus a
// second after each call began. A context and a timer of its own per
// call, registered with s.ctx and taken out again, cost each PUBLISH and
// SUBSCRIBE about 2 µs and 4 allocations (RATIONALE.md "A store call's
// deadline is shared by the second").
type storeDeadline struct {
	cur atomic.Pointer[sharedDeadline]
	mu  sync.Mutex // held to make the next one
}

type sharedDeadline struct {
	ctx context.Context
	// cancel is not called: the deadline ends ctx and frees its timer,
	// once every call that took it is over or cut short.
	cancel context.CancelFunc
	until  int64 // unix nanoseconds: handed out until then
}

// storeGrain is how long one deadline is handed out: how much later than
// commitTimeout a store call may be cut short.
const storeGrain = time.Second

// storeContext is the context a store call of a request, a change or an
// expiry takes: s.ctx with a deadline commitTimeout away at least. It
// needs no cancel: it ends at its deadline or with s.ctx.
func (s *Server) storeContext() context.Context {
	now := time.Now()
	if d := s.storeDue.cur.Load(); d != nil && now.UnixNano() < d.until {
		return d.ctx
	}
	s.storeDue.mu.Lock()
	defer s.storeDue.mu.Unlock()
	if d := s.storeDue.cur.Load(); d != nil && now.UnixNano() < d.until {
		return d.ctx
	}
	ctx, cancel := context.WithDeadline(s.ctx, now.Add(commitTimeout+storeGrain))
	s.storeDue.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel, until: now.Add(storeGrain).UnixNano()})
	return ctx
}
