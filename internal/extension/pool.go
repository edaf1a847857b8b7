package extension

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// pool holds interchangeable instances. Instances are made lazily (a Go
// guest's instance takes about 4 ms to create and 5-8 MiB of linear
// memory once warm), reused while they behave, and dropped after any
// error.
//
// Up to min instances are made as soon as a call finds none idle. Beyond
// that, up to max, the pool grows only when no instance has come back for
// growAfter: its instances are held by long calls (a loop running to its
// deadline), not merely busy, and a call waiting behind them would wait
// the whole deadline. Such a surplus instance is dropped when it comes
// back to find another one idle, once it is surplusLinger old, or once it
// has been idle for surplusLinger (reap). A suspect call (its resource's last call
// overran) uses only the first min instances: it neither grows the pool
// nor takes a surplus instance, which are for the calls the loops would
// otherwise hold up. Waiting blocks on channels; it never spins.
type pool struct {
	idle      chan *instance // idle instances of the first min
	spare     chan *instance // idle surplus instances
	base      chan struct{}  // one token per live instance up to min
	extra     chan struct{}  // one token per live instance above min
	growAfter time.Duration
	linger    time.Duration // surplusLinger unless a test shortens it
	returned  atomic.Uint64 // instances put back or discarded, ever
	make      func(context.Context) (*instance, error)

	mu     sync.Mutex
	closed bool
	reaper bool // a reap is due (armReap)
}

func newPool(min, max int, growAfter time.Duration, mk func(context.Context) (*instance, error)) *pool {
	return &pool{idle: make(chan *instance, min), spare: make(chan *instance, max-min),
		base: make(chan struct{}, min), extra: make(chan struct{}, max-min), growAfter: growAfter, linger: surplusLinger, make: mk}
}

var errClosed = errors.New("extension closed")

// ErrBusy is returned when every instance stayed busy for the whole wait:
// the module is saturated, not broken.
var ErrBusy = errors.New("no free instance")

// idleNow is an idle instance, or nil if none is idle right now. A surplus
// one goes first, so that it comes back to find the others idle and is
// dropped once the calls that needed it are over.
func (p *pool) idleNow(suspect bool) *instance {
	if !suspect && cap(p.spare) > 0 {
		select {
		case in := <-p.spare:
			return in
		default:
		}
	}
	select {
	case in := <-p.idle:
		return in
	default:
		return nil
	}
}

// get waits for an instance, an idle one or a new one.
func (p *pool) get(ctx context.Context, suspect bool) (*instance, error) {
	if in := p.idleNow(suspect); in != nil {
		return in, nil
	}
	if suspect || cap(p.extra) == 0 {
		select {
		case in := <-p.idle:
			return in, nil
		case p.base <- struct{}{}:
			return p.fresh(ctx, false)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		}
	}
	t := time.NewTimer(p.growAfter)
	defer t.Stop()
	seen := p.returned.Load()
	for {
		select {
		case in := <-p.spare:
			return in, nil
		case in := <-p.idle:
			return in, nil
		case p.base <- struct{}{}:
			return p.fresh(ctx, false)
		case <-t.C:
			if now := p.returned.Load(); now != seen {
				// instances come and go, to callers queued before this
				// one: busy, not held
				seen = now
			} else {
				select {
				case p.extra <- struct{}{}:
					return p.fresh(ctx, true)
				default: // at max: wait for one to come back
				}
			}
			t.Reset(p.growAfter)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		}
	}
}

// fresh makes an instance for the token just taken (from extra if surplus).
func (p *pool) fresh(ctx context.Context, surplus bool) (*instance, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	var in *instance
	err := errClosed
	if !closed {
		in, err = p.make(ctx)
	}
	if err != nil {
		p.release(surplus)
		return nil, err
	}
	in.surplus, in.made = surplus, time.Now()
	return in, nil
}

// surplusLinger is how long a surplus instance is kept at least. Under a
// load that saturates the cores, a call waiting for an instance also sees
// none come back for growAfter whenever the scheduler leaves the calls
// holding them unrun that long: the pool grew, the new instance came back
// to find another idle and was dropped, and the next stall made one again,
// 4 ms of CPU and 7 MiB allocated each time (RATIONALE.md "A surplus
// instance is kept ten seconds").
const surplusLinger = 10 * time.Second

func (p *pool) release(surplus bool) {
	if surplus {
		<-p.extra
	} else {
		<-p.base
	}
}

func (p *pool) put(in *instance) {
	p.mu.Lock()
	closed := p.closed
	if !closed && in.surplus {
		p.armReap()
	}
	p.mu.Unlock()
	if closed || (in.surplus && (len(p.idle) > 0 || len(p.spare) > 0) && time.Since(in.made) >= p.linger) {
		p.discard(in)
		return
	}
	p.returned.Add(1)
	if in.surplus {
		in.idle = time.Now()
		p.spare <- in
	} else {
		p.idle <- in
	}
}

// armReap makes sure a reap comes within linger; under p.mu.
func (p *pool) armReap() {
	if !p.reaper {
		p.reaper = true
		time.AfterFunc(p.linger, p.reap)
	}
}

// reap drops the surplus instances that have been idle for linger. put
// drops one only when a call brings it back, and once the load that made
// them is over no call takes them: the pool kept up to max instances
// (some 8 MiB of linear memory each) for good after a burst.
func (p *pool) reap() {
	now := time.Now()
	for n := len(p.spare); n > 0; n-- {
		var in *instance
		select {
		case in = <-p.spare:
		default: // calls took the rest
		}
		if in == nil {
			break
		}
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed || now.Sub(in.idle) >= p.linger { // idle is after made
			p.discard(in)
		} else {
			p.spare <- in // never blocks: live surplus instances are at most cap(p.spare)
		}
	}
	p.mu.Lock()
	p.reaper = false
	if !p.closed && len(p.spare) > 0 {
		p.armReap()
	}
	p.mu.Unlock()
}

func (p *pool) discard(in *instance) {
	in.mod.Close(context.Background())
	p.returned.Add(1)
	p.release(in.surplus)
}

func (p *pool) live() int { return len(p.base) + len(p.extra) }

// close drops the idle instances; busy ones are dropped when returned.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case in := <-p.idle:
			p.discard(in)
		case in := <-p.spare:
			p.discard(in)
		default:
			return
		}
	}
}
