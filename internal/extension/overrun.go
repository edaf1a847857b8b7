package extension

import (
	"sync"
	"sync/atomic"
	"time"
)

// overruns are the resources whose last call ran to its deadline, for a
// while: their calls may not grow the pool (pool.get), so a loop that its
// clients send again holds at most the module's first instances, and the
// surplus ones serve everyone else. Each looping call burns a core until
// its deadline: with four of them on two cores, the calls they did not
// hold waited longer (BenchmarkPublishBesideALoop, RATIONALE.md).
type overruns struct {
	n  atomic.Int32 // len(at), read without the lock by the common case
	mu sync.Mutex
	at map[string]time.Time
}

const (
	// overrunMemory is how long a resource is remembered after its call
	// overran, unless a call for it succeeds first.
	overrunMemory = time.Minute
	// maxOverruns bounds the memory: past it, new overruns are not
	// remembered until old ones expire.
	maxOverruns = 4096
)

// overrunKey names a resource of an event package. It is made only when
// an overrun is remembered: a sound call of a module with none builds no
// string.
func overrunKey(event, resource string) string { return event + " " + resource }

func (o *overruns) has(event, resource string) bool {
	if o.n.Load() == 0 {
		return false
	}
	key := overrunKey(event, resource)
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.at[key]
	if ok && time.Since(t) > overrunMemory {
		o.delete(key)
		return false
	}
	return ok
}

func (o *overruns) add(event, resource string) {
	key := overrunKey(event, resource)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.at == nil {
		o.at = map[string]time.Time{}
	}
	if len(o.at) >= maxOverruns {
		for k, t := range o.at {
			if time.Since(t) > overrunMemory {
				o.delete(k)
			}
		}
		if len(o.at) >= maxOverruns {
			return
		}
	}
	o.at[key] = time.Now()
	o.n.Store(int32(len(o.at)))
}

// clear forgets the resource: a call for it succeeded.
func (o *overruns) clear(event, resource string) {
	if o.n.Load() == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delete(overrunKey(event, resource))
}

func (o *overruns) delete(key string) {
	delete(o.at, key)
	o.n.Store(int32(len(o.at)))
}
