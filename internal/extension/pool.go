package extension

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// pool holds up to max interchangeable instances. Instances are made
// lazily (a Go guest's instance takes about 4 ms to create and ~9 MiB of
// host heap once warm), reused while they behave, and dropped after any
// error. Waiting blocks on channels; it never spins.
type pool struct {
	idle  chan *instance
	slots chan struct{} // one token per live instance
	make  func(context.Context) (*instance, error)

	mu     sync.Mutex
	closed bool
}

func newPool(max int, mk func(context.Context) (*instance, error)) *pool {
	return &pool{idle: make(chan *instance, max), slots: make(chan struct{}, max), make: mk}
}

var errClosed = errors.New("extension closed")

// ErrBusy is returned when every instance stayed busy for the whole wait:
// the module is saturated, not broken.
var ErrBusy = errors.New("no free instance")

// idleNow is an idle instance, or nil if none is idle right now.
func (p *pool) idleNow() *instance {
	select {
	case in := <-p.idle:
		return in
	default:
		return nil
	}
}

func (p *pool) get(ctx context.Context) (*instance, error) {
	if in := p.idleNow(); in != nil {
		return in, nil
	}
	select {
	case in := <-p.idle:
		return in, nil
	case p.slots <- struct{}{}:
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			<-p.slots
			return nil, errClosed
		}
		in, err := p.make(ctx)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

func (p *pool) put(in *instance) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.discard(in)
		return
	}
	p.idle <- in
}

func (p *pool) discard(in *instance) {
	in.mod.Close(context.Background())
	<-p.slots
}

func (p *pool) live() int { return len(p.slots) }

// close drops the idle instances; busy ones are dropped when returned.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case in := <-p.idle:
			p.discard(in)
		default:
			return
		}
	}
}
