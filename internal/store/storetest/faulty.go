package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/internal/store"
)

// Faulty is a store.Store whose commits fail on demand: between Fail and
// Heal every non-empty Commit returns the error given and writes nothing.
// It is safe for concurrent use. Load and Close are the wrapped store's.
type Faulty struct {
	store.Store

	// A Commit holds mu read-locked from its check of err to the end of
	// the wrapped commit, so that once Fail returns no commit succeeds
	// that had not already.
	mu    sync.RWMutex
	err   error
	delay time.Duration

	commits, refused atomic.Int64
}

// NewFaulty wraps s; its commits succeed until Fail.
func NewFaulty(s store.Store) *Faulty { return &Faulty{Store: s} }

// Fail makes every Commit from now on return err and write nothing. It
// returns once the commits already under way are done.
func (f *Faulty) Fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// Heal makes commits reach the wrapped store again.
func (f *Faulty) Heal() { f.Fail(nil) }

// Delay makes every Commit wait d before it is written or refused; a
// Commit whose ctx ends first returns ctx.Err() and writes nothing, as a
// store.Store must.
func (f *Faulty) Delay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// Commits is how many commits the wrapped store has written.
func (f *Faulty) Commits() int { return int(f.commits.Load()) }

// Refused is how many commits failed without reaching the wrapped store:
// by Fail, or by their deadline during a Delay.
func (f *Faulty) Refused() int { return int(f.refused.Load()) }

// Commit implements store.Store.
func (f *Faulty) Commit(ctx context.Context, b *store.Batch) error {
	if b.Empty() {
		return nil // a no-op for every backend: nothing to fail or count
	}
	f.mu.RLock()
	delay := f.delay
	f.mu.RUnlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			f.refused.Add(1)
			return ctx.Err()
		}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.err != nil {
		f.refused.Add(1)
		return f.err
	}
	if err := f.Store.Commit(ctx, b); err != nil {
		return err
	}
	f.commits.Add(1)
	return nil
}
