package server

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"sync"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/core/store"
)

type resourceKey struct{ event, uri string }

// resource is one presentity of one event package: the module's state
// blob, its live publications and its watchers. Every change to it runs
// under mu, so module calls for one resource are serialised and NOTIFYs
// are queued in the order the changes happened.
type resource struct {
	mu       sync.Mutex
	key      resourceKey
	pkg      *eventPackage
	state    []byte
	pubs     map[string]*publication // by publication ID
	watchers map[string]*dialog      // by dialog ID
	dead     bool                    // removed from Server.resources
	pending  *abi.Response           // a committed module answer not yet applied
}

// publication is a live publication; rec changes only under res.mu.
type publication struct {
	rec   store.Publication
	res   *resource
	timer *time.Timer
}

func (p *publication) stopTimer() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// lockResource returns the resource for key, created if needed, locked.
func (s *Server) lockResource(ep *eventPackage, uri string) *resource {
	key := resourceKey{ep.name, uri}
	for {
		s.mu.Lock()
		r := s.resources[key]
		if r == nil {
			r = &resource{key: key, pkg: ep, pubs: map[string]*publication{}, watchers: map[string]*dialog{}}
			s.resources[key] = r
		}
		s.mu.Unlock()
		r.mu.Lock()
		if !r.dead {
			return r
		}
		r.mu.Unlock() // lost a race with release; look again
	}
}

// release unlocks r, dropping it from the index when nothing is left.
func (s *Server) release(r *resource) {
	if len(r.pubs) == 0 && len(r.watchers) == 0 && len(r.state) == 0 {
		r.dead = true
		s.mu.Lock()
		if s.resources[r.key] == r {
			delete(s.resources, r.key)
		}
		s.mu.Unlock()
	}
	r.mu.Unlock()
}

// call runs op on r's module with r's watchers (or only the ones given)
// and returns the response; r.mu is held.
func (s *Server) call(r *resource, op abi.Op, pub *abi.Publication, only *dialog) (*abi.Response, error) {
	req := &abi.Request{Op: op, Event: r.key.event, Resource: r.key.uri, State: r.state, Publication: pub}
	if only != nil {
		req.Watchers = []abi.Watcher{only.watcher(true)}
	} else {
		req.Watchers = make([]abi.Watcher, 0, len(r.watchers))
		for _, d := range r.watchers {
			req.Watchers = append(req.Watchers, d.watcher(false))
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	return r.pkg.mod.Handle(ctx, req)
}

// stage adds what a module response changes to b: the resource state and
// the per-watcher states of r's watchers (and of extra, a dialog not yet
// among them).
func stage(b *store.Batch, r *resource, res *abi.Response, extra *dialog) {
	if res.StateChanged {
		b.Resources = append(b.Resources, store.Resource{Event: r.key.event, Resource: r.key.uri, State: res.State})
	}
	for i := range res.Notifications {
		n := &res.Notifications[i]
		if !n.StateChanged {
			continue
		}
		d := r.watchers[n.WatcherID]
		if d == nil && extra != nil && extra.rec.ID == n.WatcherID {
			d = extra
		}
		if d != nil {
			rec := d.rec
			rec.State = n.State
			b.Subscriptions = append(b.Subscriptions, rec)
		}
	}
}

// apply makes a committed module response live: the new resource state,
// the per-watcher states, and a NOTIFY for every watcher the module
// rendered for (including extra when given).
func (s *Server) apply(r *resource, res *abi.Response, extra *dialog, subState string) {
	if res.StateChanged {
		r.state = append([]byte(nil), res.State...)
	}
	for i := range res.Notifications {
		n := &res.Notifications[i]
		d := r.watchers[n.WatcherID]
		if d == nil && extra != nil && extra.rec.ID == n.WatcherID {
			d = extra
		}
		if d == nil {
			continue
		}
		if n.StateChanged {
			d.rec.State = append([]byte(nil), n.State...)
		}
		state := subState
		if state == "" {
			state = d.activeState()
		}
		s.enqueue(d, state, n, subState != "")
	}
}

// note finds the notification for dialog id in res.
func note(res *abi.Response, id string) *abi.Notification {
	for i := range res.Notifications {
		if res.Notifications[i].WatcherID == id {
			return &res.Notifications[i]
		}
	}
	return nil
}

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newToken returns an unguessable identifier (SIP-ETags, publication IDs):
// 80 random bits from crypto/rand.
func newToken() string {
	var b [10]byte
	rand.Read(b[:])
	return tokenEncoding.EncodeToString(b[:])
}
