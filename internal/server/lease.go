package server

import (
	"context"
	"errors"
	"time"

	"github.com/presenced/presenced/internal/store"
)

// On a store several nodes share (store.Leases: PostgreSQL), each
// subscription dialog belongs to one node's epoch, whose lease the node
// renews in the store; only the owner sends the dialog's NOTIFYs or
// writes it (docs/cluster.md, section 3). A node whose lease ran out has
// its dialogs taken by another, which goes on with each: its current
// state, CSeq above what the store recorded, the new node's Contact.

// DefaultLease is how long a node's lease runs without a renewal: the
// longest its dialogs go without a sender when it dies.
const DefaultLease = 5 * time.Second

// leaseRenewals is how many times per lease a node renews it and looks
// for dialogs to take over.
const leaseRenewals = 3

func (s *Server) lease() time.Duration {
	if s.opt.Lease > 0 {
		return s.opt.Lease
	}
	return DefaultLease
}

// join takes a new epoch, before restore loads the store: a restarted
// node is a new epoch, which has at once the dialogs of its name's old
// epoch (that process is gone) still its own, and restore loads those.
func (s *Server) join() error {
	l, ok := store.As[store.Leases](s.store)
	if !ok {
		return nil
	}
	s.leases = l
	_, err := s.rejoin()
	return err
}

// rejoin takes a new epoch and returns the dialogs it kept of this
// node's old one.
func (s *Server) rejoin() ([]store.Subscription, error) {
	ctx := s.storeContext()
	start := time.Now()
	kept, err := s.leases.Join(ctx, s.node, s.lease())
	if err == nil {
		s.leaseUntil.Store(start.Add(s.lease()).UnixNano())
	}
	return kept, err
}

// leased reports whether this node may send: no leases, or its own, as
// last renewed by its clock, has more than a fifth of its time left. A
// node cut from the database stops sending before another can take its
// dialogs; with the CSeq blocks reserved in the store, the two never
// send in one dialog at once.
func (s *Server) leased() bool {
	if s.leases == nil {
		return true
	}
	return time.Now().Add(s.lease()/5).UnixNano() < s.leaseUntil.Load()
}

// keepLease renews the lease and takes over the dialogs of nodes whose
// lease ran out; run leaseRenewals times per lease. A lease found lost
// (the node was paused or cut off longer than it) has every dialog
// dropped from memory, unsent and unwritten, and the node joins again.
func (s *Server) keepLease() {
	ctx, cancel := context.WithTimeout(s.ctx, s.lease()/leaseRenewals)
	defer cancel()
	start := time.Now()
	err := s.leases.Renew(ctx, s.lease())
	switch {
	case err == nil:
		s.leaseUntil.Store(start.Add(s.lease()).UnixNano())
		err = s.takeOver(ctx)
	case errors.Is(err, store.ErrFenced):
		// Those no other node took (all were cut off, say) are this
		// node's again under its new epoch, and made live anew.
		s.log.Warn("lease lost: this node's dialogs are another's now, dropped", "err", err)
		s.abandonAll()
		var kept []store.Subscription
		if kept, err = s.rejoin(); err == nil {
			s.restoreDialogs(kept)
		}
	}
	if err != nil && s.ctx.Err() == nil && s.storeLog.allow() {
		s.log.Error("lease not renewed", "err", err)
	}
}

// expireLeftNow removes the publications of nodes gone (expireLeft); run
// once per lease (the scan reads every publication), apart from
// keepLease, whose renewals many removals must not delay.
func (s *Server) expireLeftNow() {
	ctx := s.storeContext()
	if err := s.expireLeft(ctx); err != nil && s.ctx.Err() == nil && s.storeLog.allow() {
		s.log.Error("publications of nodes gone not removed", "err", err)
	}
}

// every runs f each d until the server closes; s.wg counts it.
func (s *Server) every(d time.Duration, f func()) {
	defer s.wg.Done()
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		f()
	}
}

// takeOver makes live, and notifies, the dialogs of every node whose
// lease ran out.
func (s *Server) takeOver(ctx context.Context) error {
	taken, err := s.leases.TakeOver(ctx)
	if err == nil && len(taken) > 0 {
		s.log.Info("dialogs taken over from a node whose lease ran out", "dialogs", len(taken))
		s.restoreDialogs(taken)
	}
	return err
}

// abandonAll forgets every dialog, sending and writing nothing.
func (s *Server) abandonAll() {
	s.mu.Lock()
	ds := make([]*dialog, 0, len(s.dialogs))
	for _, d := range s.dialogs {
		ds = append(ds, d)
	}
	s.mu.Unlock()
	for _, d := range ds {
		s.abandon(d)
	}
}

// abandon forgets d, a dialog another node owns now, without a word to
// its watcher or to the store: the owner sends for it.
func (s *Server) abandon(d *dialog) {
	d.qmu.Lock()
	d.failed, d.tail = true, nil
	d.qmu.Unlock()
	if d.isList() {
		_, _, unlock := s.lockList(d)
		defer unlock()
		if !d.gone {
			for _, bd := range d.list.backends {
				s.forgetBackend(bd)
			}
			s.forget(d)
		}
		return
	}
	r := d.res
	s.lock(r)
	defer s.release(r)
	if !d.gone {
		s.forget(d)
	}
}
