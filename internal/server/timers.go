package server

import (
	"container/heap"
	"slices"
	"sync"
	"time"
)

// timers holds every pending expiry of the server (subscriptions,
// publications, bindings) in one heap under one time.Timer. A time.Timer
// each, with its closure, was ~200 bytes of every idle subscription and
// publication (BenchmarkMemory); an expiry is 16 bytes inside its owner
// and a 16-byte slot in the heap. Owners re-check their expiry when
// fired, so a late or spurious call is harmless.
type timers struct {
	mu     sync.Mutex
	h      expiryHeap
	timer  *time.Timer
	closed bool
	s      *Server // what the owners' expired methods are given
	// cold are the expiries of presentities let go of (Server.cool), by
	// value: no owner to point at, 24 bytes each where an expiry and its
	// owner were 88 (RATIONALE.md "Unwatched presentities live in the
	// store"). None is ever removed: one that fires for a presentity read
	// back or gone meanwhile finds nothing due (Server.expireCold).
	cold   coldHeap
	events []string // what a coldExpiry's event indexes
}

// coldExpiry is when the presentity uri is due: at is whole
// milliseconds, and what is below them the index of its event package in
// timers.events (an event field would pad the entry to 32 bytes).
type coldExpiry struct {
	at  int64
	uri string
}

type coldHeap []coldExpiry

func (h coldHeap) Len() int           { return len(h) }
func (h coldHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h coldHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *coldHeap) Push(x any)        { *h = append(*h, x.(coldExpiry)) }
func (h *coldHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = coldExpiry{} // its URI is not kept
	*h = old[:len(old)-1]
	return e
}

// armCold schedules Server.expireCold of key for at (unix nanoseconds).
func (t *timers) armCold(key resourceKey, at int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	i := slices.Index(t.events, key.event)
	if i < 0 {
		i = len(t.events) // a few (under a million): one per event package ever served
		t.events = append(t.events, key.event)
	}
	at = at - at%int64(time.Millisecond) + int64(i)
	heap.Push(&t.cold, coldExpiry{at: at, uri: key.uri})
	if t.cold[0].at == at {
		t.reset()
	}
}

// expiry is one owner's entry, a field of it: owner.expired runs (on its
// own goroutine) once at. The heap holds the owner, an interface, not a
// closure (a closure each was another 32 bytes of every subscription and
// publication), and not the expiry with the owner in it: an owner field
// was 16 bytes of every subscription and publication (their structs a
// size class smaller without it) and a pointer of every dialog to itself
// for the collector to follow.
type expiry struct {
	at  int64 // unix nanoseconds
	pos int   // position in the heap + 1; 0 when not in it
}

// expirer is what owns an expiry: a dialog, a publication, a binding.
type expirer interface {
	expired(s *Server)
	due() *expiry // its expiry
}

type expiryHeap []expirer

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].due().at < h[j].due().at }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].due().pos, h[j].due().pos = i+1, j+1
}
func (h *expiryHeap) Push(x any) {
	o := x.(expirer)
	*h = append(*h, o)
	o.due().pos = len(*h)
}
func (h *expiryHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	o.due().pos = 0
	return o
}

// arm (re)schedules owner's expiry for at.
func (t *timers) arm(owner expirer, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	e := owner.due()
	e.at = at.UnixNano()
	if e.pos > 0 {
		heap.Fix(&t.h, e.pos-1)
	} else {
		heap.Push(&t.h, owner)
	}
	if t.h[0] == owner {
		t.reset()
	}
}

// stop unschedules owner's expiry, if it is scheduled.
func (t *timers) stop(owner expirer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := owner.due(); e.pos > 0 {
		heap.Remove(&t.h, e.pos-1)
	}
}

// reset points the timer at the earliest expiry; t.mu is held.
func (t *timers) reset() {
	var at int64
	switch {
	case len(t.h) > 0 && len(t.cold) > 0:
		at = min(t.h[0].due().at, t.cold[0].at)
	case len(t.h) > 0:
		at = t.h[0].due().at
	case len(t.cold) > 0:
		at = t.cold[0].at
	default:
		return
	}
	d := time.Duration(at - time.Now().UnixNano())
	if t.timer == nil {
		t.timer = time.AfterFunc(d, t.run)
	} else {
		t.timer.Reset(d)
	}
}

// run fires what is due, each on a goroutine of its own as time.AfterFunc
// did, and re-aims the timer.
func (t *timers) run() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	now := time.Now().UnixNano()
	for len(t.h) > 0 && t.h[0].due().at <= now {
		o := heap.Pop(&t.h).(expirer)
		go o.expired(t.s)
	}
	for len(t.cold) > 0 && t.cold[0].at <= now {
		e := heap.Pop(&t.cold).(coldExpiry)
		go t.s.expireCold(resourceKey{t.events[e.at%int64(time.Millisecond)], e.uri})
	}
	t.reset()
}

func (t *timers) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
	}
}
