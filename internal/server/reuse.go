package server

import (
	"bytes"
	"slices"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
)

// reuse is a module's rendering for one watcher that, by the module's
// word (abi.Notification.ReuseUntilUnixNano), any watcher alike would
// get from the same state: the next new or refreshed subscription to the
// resource is answered from it without a module call, which was a third
// of a SUBSCRIBE's CPU (RATIONALE.md "A rendering reused"). It is r's
// while r's state stays the one it was rendered from.
type reuse struct {
	mod    *extension.Module
	stored uint64 // r.stored when rendered: r's state then
	until  int64  // unix ns
	// the watcher it was rendered for, but for its ID and URI
	accept []string
	state  []byte
	status string
	n      abi.Notification // WatcherID cleared
}

// reused is r's kept rendering, as w's, if it answers w now; r.mu is held.
func (c *change) reused(r *resource, w *abi.Watcher) *abi.Notification {
	m := r.reuse
	if m == nil || r.cold || m.mod != r.pkg.mod || m.stored != r.stored || c.step(r).changed ||
		time.Now().UnixNano() >= m.until || m.status != w.Status ||
		!bytes.Equal(m.state, w.State) || !slices.Equal(m.accept, w.Accept) {
		return nil
	}
	n := m.n
	n.WatcherID = w.ID
	return &n
}

// keepReuse keeps n, the module's rendering for w alone from r's state,
// if the module said other watchers may have it.
func (c *change) keepReuse(r *resource, w *abi.Watcher, n *abi.Notification) {
	if n.ReuseUntilUnixNano <= time.Now().UnixNano() || c.step(r).changed {
		return
	}
	m := &reuse{mod: r.pkg.mod, stored: r.stored, until: n.ReuseUntilUnixNano,
		accept: w.Accept, state: w.State, status: w.Status, n: *n}
	// The body and state alone, not the call's whole output they alias.
	buf := append(append(make([]byte, 0, len(n.Body)+len(n.State)), n.Body...), n.State...)
	m.n.WatcherID, m.n.Body, m.n.State = "", buf[:len(n.Body):len(n.Body)], buf[len(n.Body):]
	if n.Body == nil {
		m.n.Body = nil
	}
	if n.State == nil {
		m.n.State = nil
	}
	r.reuse = m
}
