package extension

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBackoff is returned, without a call, while a module that kept failing
// is backed off; Error.RetryAfter says for how long.
var ErrBackoff = errors.New("backing off after repeated failures")

// Backoff is when a module that keeps failing stops being called: after
// After failures in a row (0: never), the first and the last within
// Window, calls fail at once with ErrBackoff for First; then one call is
// let through, whose failure doubles the period (up to Max) and whose
// success ends it.
type Backoff struct {
	After              int
	Window, First, Max time.Duration
}

// breaker keeps a module's failures in a row and its back-off. The common
// case, a sound call of a module that is not backed off, reads two atomics
// and takes no lock.
type breaker struct {
	cfg     Backoff
	open    atomic.Bool  // backing off (until, or a probe is out)
	streak  atomic.Int32 // failures in a row, mirrored from run
	refused atomic.Int64

	mu       sync.Mutex
	run      int       // failures in a row
	runStart time.Time // the first of them
	until    time.Time // calls before it are refused
	period   time.Duration
	probing  bool
}

// admit says whether a call may run, and whether it is the probe that
// ends or extends a back-off; if not, how long until one may.
func (b *breaker) admit() (probe bool, wait time.Duration, ok bool) {
	if !b.open.Load() {
		return false, 0, true
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return false, 0, true
	}
	if b.probing || now.Before(b.until) {
		b.refused.Add(1)
		if now.Before(b.until) {
			return false, b.until.Sub(now), false
		}
		return false, time.Second, false // the probe is running
	}
	b.probing = true
	return true, 0, true
}

type outcome int

const (
	succeeded outcome = iota
	failed
	notRun // ErrBusy: the call never reached the module
)

// done records how an admitted call ended; it returns the new back-off
// period when this call started or extended one, for the log.
func (b *breaker) done(probe bool, o outcome) time.Duration {
	if b.cfg.After <= 0 || (o == succeeded && !probe && b.streak.Load() == 0) {
		return 0
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case o == notRun:
		if probe {
			b.probing = false // the next call probes
		}
	case o == succeeded:
		b.run = 0
		b.streak.Store(0)
		if probe {
			b.probing, b.period = false, 0
			b.open.Store(false)
		}
	case probe:
		b.probing = false
		b.period = min(2*b.period, b.cfg.Max)
		b.until = now.Add(b.period)
		return b.period
	case !b.open.Load():
		if b.run == 0 || now.Sub(b.runStart) > b.cfg.Window {
			b.run, b.runStart = 0, now
		}
		b.run++
		b.streak.Store(int32(b.run))
		if b.run >= b.cfg.After {
			b.period = b.cfg.First
			b.until = now.Add(b.period)
			b.open.Store(true)
			return b.period
		}
	}
	return 0
}

// backingOff is when calls will be admitted again, zero if they are.
func (b *breaker) backingOff() time.Time {
	if !b.open.Load() {
		return time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.until
}
