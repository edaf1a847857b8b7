package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/store"
)

// change is one change of state, whatever caused it (a PUBLISH, an
// expiry, a REGISTER, an XMPP presence, a module command, a watcher event,
// the restore at start, an operator's removal), and the one path it takes:
//
//	propose: ask the module (propose, render), stage what it answers
//	commit:  write the staged records and the host's own in one batch
//	apply:   make it live in memory (the resources' locks are held)
//	emit:    queue the NOTIFYs and tell the watcher-info package
//
// Nothing is live before the commit returns nil, so a failure at any step
// leaves no trace; a SIP handler answers between apply and emit, so the
// 2xx leaves before the NOTIFYs it causes. A change of a publication or a
// binding of a resource with renderApart watchers or more asks the module
// for the new state alone, and its emit queues a second change that
// renders it for the watchers, commits their states and sends their
// NOTIFYs (renderLater), without the resource's lock for the commit and
// the NOTIFYs (renderUnlocked): the 2xx waits for the state's commit
// only, and the next PUBLISH does not wait for that rendering's. A
// change never answers SIP: it returns typed errors (refusal, storeError,
// *extension.Error) that the handler hands to answer.
type change struct {
	s       *Server
	batch   store.Batch
	steps   []*step
	applies []func()
	out     []emission
	// noHold sends every notification at once, within a coalescing window
	// or not: it is the rendering that ends a window.
	noHold bool
	since  time.Time // when the change it reports began, if before now (a held window, renderLater)
	// lists are the list subscriptions whose members this change
	// renders for (list.go), locked from commit to apply.
	lists  map[*listDialog]*listChange
	locked []*listDialog
	// journal is every module call of the change, in order, so that one
	// whose resource state another node wrote first (store.ErrConflict)
	// is computed again from that state (commit). handed is set once a
	// module's answer went to the caller (render): it would not see a
	// second one, so such a change is not computed again.
	journal   []proposal
	replaying bool
	handed    bool
	// unlocked: the change is proposed and committed without its
	// resource's lock (renderUnlocked), so it cannot read the resource
	// again to be computed anew: it fails on a conflict.
	unlocked bool
	// later are the resources whose watchers this change's module calls
	// left out (renderApart): a change of their own renders for them
	// once this one is emitted (renderLater).
	later []*resource
	// first backs the first step, module call and apply: most changes
	// (a PUBLISH, a SUBSCRIBE) have one of each, and allocate none of
	// them apart from the change.
	first struct {
		step    step
		steps   [1]*step
		journal [1]proposal
		applies [1]func()
	}
}

// proposal is one module call of a change: propose's input, or a reset.
type proposal struct {
	r      *resource
	in     abi.Request
	reset  bool
	render bool // its answer is the caller's, not r's watchers'
}

// step is what the module said of one resource in a change: the state it
// staged (each call sees the one before it) and its last answer, whose
// notifications go to the resource's watchers.
type step struct {
	r       *resource
	state   []byte
	changed bool
	res     *abi.Response
	final   string // Subscription-State of every NOTIFY: the subscriptions are ending
	held    []bool // per notification of res: held back by a coalescing window
	version uint64 // of state, when staged: r.stored once applied
}

// emission is one thing to send once the change is live: a NOTIFY, or a
// watcher event for the watcher-info package (d changed status).
type emission struct {
	d        *dialog
	subState string
	n        *abi.Notification
	final    bool
	winfo    string // with status: a watcher event instead of a NOTIFY
	status   string
}

func (s *Server) newChange() *change {
	c := &change{s: s}
	c.steps, c.journal, c.applies = c.first.steps[:0], c.first.journal[:0], c.first.applies[:0]
	return c
}

func (c *change) step(r *resource) *step {
	for _, st := range c.steps {
		if st.r == r {
			return st
		}
	}
	st := &c.first.step
	if len(c.steps) > 0 {
		st = &step{}
	}
	*st = step{r: r, state: r.state}
	c.steps = append(c.steps, st)
	return st
}

// propose runs in on r's module for every watcher of r (or those in
// in.Watchers; none for a change rendered apart, renderApart) and stages
// its answer; r.mu is held, or r's watchers owned (renderUnlocked). A
// module refusal is a *refusal. It is the only place the host calls a
// module.
func (c *change) propose(r *resource, in abi.Request) (*abi.Response, error) {
	// Without r.mu (renderUnlocked, which warmed r) r's own fields are
	// not read: a PUBLISH may be writing them.
	if !c.unlocked {
		if err := c.s.warm(r); err != nil {
			return nil, err
		}
		// Every watcher is rendered for: those let go of are read back
		// first, unless they are left to a rendering of their own.
		if in.Watchers == nil && !(apart(in.Op) && r.watcherCount() >= renderApart) {
			if err := c.s.thawWatchers(r); err != nil {
				return nil, err
			}
		}
	}
	if !c.replaying {
		c.journal = append(c.journal, proposal{r: r, in: in})
	}
	st := c.step(r)
	in.Event, in.Resource, in.State = r.key.event, r.key.uri, st.state
	later := false
	switch {
	case in.Watchers != nil:
	case apart(in.Op) && r.watcherCount() >= renderApart:
		in.Watchers, later = []abi.Watcher{}, true
	default:
		in.Watchers = make([]abi.Watcher, 0, len(r.watchers))
		for _, d := range r.watchers {
			if !d.isList() { // a list's subscription is rendered by the host, from its members
				in.Watchers = append(in.Watchers, d.watcher(false))
			}
		}
	}
	// The module bounds the call with its own call_timeout; no second
	// deadline here (a timer and a context per call, for nothing).
	res, err := r.pkg.mod.Handle(c.s.ctx, &in)
	if err != nil {
		return nil, err
	}
	if res.Code != 0 {
		return res, c.s.moduleRefusal(r.pkg, res)
	}
	// A rendering never changes the resource's state (abi/ABI.md, op 3;
	// the conformance kit checks it): one that says it does is not taken.
	// So a SUBSCRIBE, which commits its rendering without r's lock
	// (accept), never writes r's state, and every write of a resource's
	// state is made under its lock: one node's writes cannot race, which
	// SQLite, checking no version, relies on (store.Resource).
	if res.StateChanged && in.Op != abi.OpRender {
		st.state, st.changed = res.State, true
		// A state left as it was has nothing new to render.
		if later && !slices.Contains(c.later, r) {
			c.later = append(c.later, r)
		}
	}
	st.res = res
	return res, nil
}

// render asks r's module what d, alone, is to be sent now (full state:
// a new subscription, a refresh, a final NOTIFY) and returns its
// notification, nil if the module rendered nothing for it. The caller
// keeps d's per-watcher state and authorization from it: the answer is not
// applied to r's watchers.
func (c *change) render(r *resource, d *dialog) (*abi.Notification, error) {
	w := d.watcher(true)
	if n := c.reused(r, &w); n != nil {
		// As a call would have left the change: its answer handed over,
		// nothing staged for r.
		if !c.replaying {
			c.journal = append(c.journal, proposal{r: r, in: abi.Request{Op: abi.OpRender, Watchers: []abi.Watcher{w}}, render: true})
		}
		c.handed = true
		c.step(r).res = nil
		return n, nil
	}
	res, err := c.propose(r, abi.Request{Op: abi.OpRender, Watchers: []abi.Watcher{w}})
	if err != nil {
		return nil, err
	}
	c.journal[len(c.journal)-1].render = true
	c.handed = true
	c.step(r).res = nil
	for i := range res.Notifications {
		if n := &res.Notifications[i]; n.WatcherID == d.id() {
			c.keepReuse(r, &w, n)
			return n, nil
		}
	}
	return nil, nil
}

// reset makes r's staged state empty: a watcher-info state rebuilt from
// its events starts from nothing.
func (c *change) reset(r *resource) {
	if !c.replaying {
		c.journal = append(c.journal, proposal{r: r, reset: true})
	}
	st := c.step(r)
	st.state, st.changed = nil, len(r.state) > 0 || r.cold
}

// ending makes every NOTIFY of r's step final with Subscription-State
// subState.
func (c *change) ending(r *resource, subState string) { c.step(r).final = subState }

// then runs f when the change is applied, under the same locks: the
// host's own memory (publications, dialogs, bindings, timers).
func (c *change) then(f func()) { c.applies = append(c.applies, f) }

// notify queues a NOTIFY for d, sent at emit.
func (c *change) notify(d *dialog, subState string, n *abi.Notification, final bool) {
	c.out = append(c.out, emission{d: d, subState: subState, n: n, final: final})
}

// watcherEvent tells d's watcher-info package, at emit, that d changed.
func (c *change) watcherEvent(d *dialog, status, event string) {
	c.out = append(c.out, emission{d: d, winfo: event, status: status})
}

// commitTimeout bounds a commit, and any store call (storeContext, up to
// storeGrain more): past it the request is answered 500, and the store
// guarantees the batch is then never written.
const commitTimeout = 10 * time.Second

// conflictRetries is how many times a change whose resource state another
// node wrote first is computed again before it fails. Each retry is a
// read, a module call and a commit; a resource written so often by
// several nodes at once that three in a row lose is better answered
// "try again" (500 with Retry-After) than held.
const conflictRetries = 3

// commit stages the module's answers beside the host's records and writes
// them in one batch. It is the only place the host writes to the store.
//
// A resource state is written only if the store still holds the version
// it was computed from (r.stored). If another node wrote it first
// (store.ErrConflict, nothing written), the change reads that state,
// calls the module again with the same inputs, and commits anew, at most
// conflictRetries times. A change whose module answer went to its caller
// (render), or whose caller wrote a resource record itself, cannot be
// computed again here and fails on the first conflict.
func (c *change) commit() error {
	base := clip(c.batch) // the caller's records, staged again on each try
	for try := 0; ; try++ {
		c.lockLists()
		for _, st := range c.steps {
			c.stage(st)
		}
		c.stageLists()
		if c.batch.Empty() {
			return nil
		}
		ctx := c.s.storeContext()
		err := c.s.waitCommit(func() error { return c.s.store.Commit(ctx, &c.batch) })
		if err == nil {
			return nil
		}
		c.unlockLists()
		if errors.Is(err, store.ErrConflict) && try < conflictRetries && !c.handed && !c.unlocked && len(base.Resources) == 0 {
			c.batch, c.lists = clip(base), nil
			if err = c.reload(ctx); err == nil {
				if err := c.recompute(); err != nil {
					return err // a module's refusal or failure: nothing was applied
				}
				continue
			}
		}
		// A stale publication is no failure: another node refreshed or
		// removed it first, and the caller says so.
		if !errors.Is(err, store.ErrStalePublication) && c.s.storeLog.allow() {
			c.s.log.Error("store commit failed", "err", err, "tries", try+1)
		}
		return &storeError{err}
	}
}

// clip is b with every slice at its length, so that appending to the
// copy leaves b's records as they are.
func clip(b store.Batch) store.Batch {
	b.Subscriptions, b.DeleteSubscriptions = slices.Clip(b.Subscriptions), slices.Clip(b.DeleteSubscriptions)
	b.SubscriptionStates = slices.Clip(b.SubscriptionStates)
	b.Publications, b.PublicationRefreshes = slices.Clip(b.Publications), slices.Clip(b.PublicationRefreshes)
	b.DeletePublications, b.Resources = slices.Clip(b.DeletePublications), slices.Clip(b.Resources)
	b.Bindings, b.DeleteBindings = slices.Clip(b.Bindings), slices.Clip(b.DeleteBindings)
	b.NotifyCSeqs = slices.Clip(b.NotifyCSeqs)
	return b
}

// reload reads the stored state and version of every resource of the
// change, whose locks are held: what another node wrote becomes this
// node's. The watchers here learn of it from the change computed anew,
// which renders from it.
func (c *change) reload(ctx context.Context) error {
	for _, st := range c.steps {
		r := st.r
		rec, err := c.s.store.LoadResource(ctx, r.id, r.key.event, r.key.uri)
		if err != nil {
			return err
		}
		if rec.Version != r.stored {
			r.state, r.stored, r.cold = rec.State, rec.Version, false
			r.version++ // a SUBSCRIBE committing meanwhile renders again
		} else if r.cold {
			r.state, r.cold = rec.State, false
		}
	}
	return nil
}

// recompute runs the change's module calls again, in order and with the
// same inputs, from the resources' states as they are now.
func (c *change) recompute() error {
	for _, st := range c.steps {
		st.state, st.changed, st.res, st.held = st.r.state, false, nil, nil
	}
	c.replaying = true
	defer func() { c.replaying = false }()
	for _, p := range c.journal {
		if p.reset {
			c.reset(p.r)
			continue
		}
		if _, err := c.propose(p.r, p.in); err != nil {
			return err
		}
		if p.render {
			c.step(p.r).res = nil
		}
	}
	return nil
}

// stage adds what st's answer changes to the batch: the resource state,
// and the per-watcher state and authorization of r's watchers (a rejected
// one is deleted). A notification held by a coalescing window stages
// nothing: the module's state for that watcher stays what it was last
// sent, and the rendering at the window's end starts from it.
func (c *change) stage(st *step) {
	r := st.r
	if st.changed {
		// The new state gets a version of its own and names the one it
		// was computed from; a deletion stores none.
		st.version = 0
		if len(st.state) > 0 {
			st.version = newStateVersion()
		}
		c.batch.Resources = append(c.batch.Resources, store.Resource{ID: r.id, Event: r.key.event, Resource: r.key.uri,
			State: st.state, Version: st.version, Prev: r.stored})
	}
	if st.res == nil {
		return
	}
	st.held = make([]bool, len(st.res.Notifications))
	for i := range st.res.Notifications {
		n := &st.res.Notifications[i]
		d := r.watcher(n.WatcherID)
		if d == nil {
			continue
		}
		if d.isBackend() {
			c.stageMember(d, n, st.final)
			continue
		}
		if n.Status == abi.StatusRejected {
			c.batch.DeleteSubscriptions = append(c.batch.DeleteSubscriptions, d.id())
			continue
		}
		if st.final == "" && !c.noHold && (n.Status == "" || n.Status == d.status()) && c.s.hold(d) {
			st.held[i] = true
			continue
		}
		if n.StateChanged || (n.Status != "" && n.Status != d.status()) {
			// d is one of r's watchers, so its record is stored (accept
			// adds it once committed): only what the NOTIFY changes is
			// written.
			ws := store.SubscriptionState{ID: d.id(), State: d.state, Status: d.status()}
			if n.StateChanged {
				ws.State = n.State
			}
			if n.Status != "" {
				ws.Status = n.Status
			}
			c.batch.SubscriptionStates = append(c.batch.SubscriptionStates, ws)
		}
	}
}

// apply makes the committed change live: the new resource states, the
// per-watcher states and authorizations, the host's own changes (then);
// and lists what emit sends.
func (c *change) apply() {
	for _, st := range c.steps {
		r := st.r
		r.version++
		if st.changed {
			r.keepState(st.state, st.version)
			if h, ok := c.s.opt.Watch.(ChangeHook); ok {
				h.Changed(r.key.event, r.key.uri)
			}
		}
		if st.res == nil {
			continue
		}
		for i := range st.res.Notifications {
			n := &st.res.Notifications[i]
			d := r.watcher(n.WatcherID)
			if d == nil || d.gone || d.isBackend() { // a back-end's is its list's (applyLists)
				continue
			}
			if st.held[i] {
				c.s.holdUntilWindow(d)
				continue
			}
			if n.StateChanged {
				d.state = append([]byte(nil), n.State...)
			}
			if n.Status == abi.StatusRejected {
				c.s.forget(d)
				c.notify(d, "terminated;reason=rejected", nil, true)
				c.watcherEvent(d, abi.StatusTerminated, "rejected")
				continue
			}
			if n.Status != "" && n.Status != d.status() {
				was := d.status()
				d.setStatus(n.Status)
				if was == abi.StatusPending && n.Status == abi.StatusActive {
					c.watcherEvent(d, abi.StatusActive, "approved")
				}
			}
			if st.final != "" {
				c.notify(d, st.final, n, true)
			} else {
				c.notify(d, d.subState(), n, false)
			}
		}
	}
	c.applyLists()
	for _, f := range c.applies {
		f()
	}
}

// emit sends what apply listed, in order; the resources are still locked
// (or their watchers owned by the rendering that emits, renderUnlocked),
// so NOTIFYs are queued in the order of the changes they report.
func (c *change) emit() {
	for _, e := range c.out {
		if e.winfo != "" {
			c.s.watcherEvent(e.d, e.status, e.winfo)
			continue
		}
		at := c.since
		if at.IsZero() {
			at = time.Now()
		}
		c.s.enqueueAt(e.d, e.subState, e.n, e.final, at)
	}
	c.out = nil
	for _, r := range c.later {
		c.s.renderLater(r)
	}
	c.later = nil
}

// renderApart is the number of watchers from which a change of a
// resource's sources (a publication, a binding) is proposed without them
// and rendered for them by a change of its own once the first is
// answered (renderLater): with a thousand watchers, rendering for them
// and committing their states was ~16 of the ~19 ms a PUBLISH waited for
// its 200. Below it, the second module call and commit (~0.5 ms of CPU)
// cost more than what they take off the answer's path (RATIONALE.md,
// "The 200 before the fan-out").
const renderApart = 128

// apart reports whether a module call of op, given no watchers, composes
// the resource's state alone: the ops whose input is one of its sources.
func apart(op abi.Op) bool {
	return op == abi.OpPublish || op == abi.OpUnpublish || op == abi.OpBinding
}

// renderLater renders r's state for its watchers, each from what it was
// last sent, in a change of its own after the caller's, which holds r.mu:
// the rendering waits for its release, so the caller's answer leaves
// before the NOTIFYs. One rendering is queued per resource at a time, and
// it renders the state as it is when it runs: changes made while it waits
// are rendered together, and the module leaves out a watcher whose
// document is the one it was last sent. A stop before it runs leaves the
// watchers without the last state, which restore sends every subscription
// at the next start.
func (s *Server) renderLater(r *resource) {
	s.renderMu.Lock()
	_, queued := s.renders[r]
	if !queued {
		s.renders[r] = time.Now()
	}
	s.renderMu.Unlock()
	if queued || !s.busy() {
		return
	}
	go func() {
		defer s.wg.Done()
		s.lock(r)
		defer s.release(r)
		s.renderMu.Lock()
		since := s.renders[r]
		delete(s.renders, r)
		s.renderMu.Unlock()
		if r.dead || s.ctx.Err() != nil {
			return
		}
		if err := s.renderUnlocked(r, since); err != nil {
			s.log.Warn("new state not rendered for the watchers: they get it with the next change",
				"resource", r.key.uri, "err", err)
		}
	}()
}

// renderUnlocked is renderWatchers for renderLater: r.mu is held when it
// is called and when it returns, but not during the rendering's module
// call, its commit and its NOTIFYs, all of a crowd's rendering but its
// apply. Meanwhile r.rendering is set, and lock, which every change of r
// takes r.mu with, waits for it to be cleared, so the rendering owns r's
// watchers as if it held r.mu: no watcher comes, goes or is rendered for,
// and the next rendering starts from the per-watcher states this one
// applied, its NOTIFYs queued after these. Only a change of r's
// publications proposed apart (lockSources) goes ahead: it writes r's
// state and publications and none of its watchers, and the rendering
// reads none of those but the state, taken before the lock is let go (a
// change replaces r.state, never writes into it); its own rendering waits
// for this one. A rendering with a list's back-end among the watchers
// holds r.mu throughout: its commit locks the lists (change.lockLists),
// which are locked after their members.
func (s *Server) renderUnlocked(r *resource, since time.Time) error {
	if err := s.thawWatchers(r); err != nil {
		return err
	}
	if !watched(r) {
		return nil
	}
	for _, d := range r.watchers {
		if d.isBackend() {
			return s.renderWatchers(r, since)
		}
	}
	if err := s.warm(r); err != nil {
		return err
	}
	c := s.newChange()
	c.since, c.unlocked = since, true
	c.step(r) // the state rendered: r's now
	r.rendering = true
	r.mu.Unlock()
	_, err := c.propose(r, abi.Request{Op: abi.OpRender})
	if err == nil {
		err = c.commit()
	}
	r.mu.Lock()
	if err == nil {
		c.apply()
	}
	r.mu.Unlock()
	if err == nil {
		c.emit()
	}
	r.mu.Lock()
	r.rendering = false
	s.renderMu.Lock()
	s.rendered.Broadcast()
	s.renderMu.Unlock()
	return err
}

// renderWatchers renders r's state for every watcher of r, each from what
// it was last sent, through one change whose NOTIFYs report a change at
// since (zero: now). r.mu is held.
func (s *Server) renderWatchers(r *resource, since time.Time) error {
	if err := s.thawWatchers(r); err != nil {
		return err
	}
	if !watched(r) {
		return nil
	}
	c := s.newChange()
	c.since = since
	if _, err := c.propose(r, abi.Request{Op: abi.OpRender}); err != nil {
		return err
	}
	return c.run()
}

// watched reports whether r has a watcher to render for: a list's
// subscription is rendered from its members. r.mu is held.
func watched(r *resource) bool {
	for _, d := range r.watchers {
		if !d.isList() {
			return true
		}
	}
	return false
}

// lock takes r.mu for a change of r, once no rendering owns r's watchers
// (renderUnlocked).
func (s *Server) lock(r *resource) {
	r.mu.Lock()
	for r.rendering {
		// renderMu is taken before r.mu is let go, and the rendering
		// signals under it after clearing r.rendering under r.mu: the
		// signal cannot fall between the test and the wait.
		s.renderMu.Lock()
		r.mu.Unlock()
		s.rendered.Wait()
		s.renderMu.Unlock()
		r.mu.Lock()
	}
}

// lockSources takes r.mu for a change of r's publications (a PUBLISH
// with SIP-If-Match). While a rendering owns r's watchers it goes ahead
// if the change is proposed apart from them (renderApart: the watchers
// cannot drop below it meanwhile, lock holds their changes back), and
// waits like lock otherwise.
func (s *Server) lockSources(r *resource) {
	r.mu.Lock()
	if r.rendering && len(r.watchers) < renderApart {
		r.mu.Unlock()
		s.lock(r)
	}
}

// settle commits, applies, answers (a SIP handler's 2xx) and emits: the
// order every change takes, so that nothing is answered before it is
// durable and no NOTIFY leaves before the answer.
func (c *change) settle(answer func()) error {
	if err := c.commit(); err != nil {
		return err
	}
	c.apply()
	answer()
	c.emit()
	return nil
}

// run settles a change nobody answers for.
func (c *change) run() error { return c.settle(func() {}) }
