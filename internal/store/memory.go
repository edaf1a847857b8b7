package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Memory is a Store in the process's memory: nothing survives the process,
// but a server restarted on the same Memory gets its state back, which is
// what the tests of restart logic use.
type Memory struct {
	mu   sync.Mutex
	subs map[string]Subscription
	pubs map[string]Publication
	res  map[[2]string]Resource
	bind map[string]Binding
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{subs: map[string]Subscription{}, pubs: map[string]Publication{}, res: map[[2]string]Resource{}, bind: map[string]Binding{}}
}

// Commit implements Store. Records are copied so callers may reuse theirs.
func (m *Memory) Commit(_ context.Context, b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Checked before anything is applied: a conflict writes nothing.
	for _, r := range b.Resources {
		if r.ID == 0 {
			return fmt.Errorf("commit not written: resource %s: %w", r.Resource, ErrNoID)
		}
		if m.res[[2]string{r.Event, r.Resource}].Version != r.Prev {
			return fmt.Errorf("commit not written: %w", ErrConflict)
		}
	}
	for _, ref := range b.DeletePublications {
		if p, ok := m.pubs[ref.ID]; !ok || p.ETag != ref.ETag {
			return fmt.Errorf("commit not written: publication %s: %w", ref.ID, ErrStalePublication)
		}
	}
	for _, s := range b.Subscriptions {
		s.RouteSet = slices.Clone(s.RouteSet)
		s.Accept = slices.Clone(s.Accept)
		s.State = slices.Clone(s.State)
		if old, ok := m.subs[s.ID]; ok && old.LocalCSeq > s.LocalCSeq {
			s.LocalCSeq = old.LocalCSeq // a dialog's CSeq never goes back
		}
		m.subs[s.ID] = s
	}
	for _, v := range b.SubscriptionStates {
		if s, ok := m.subs[v.ID]; ok {
			s.State, s.Status = slices.Clone(v.State), v.Status
			m.subs[v.ID] = s
		}
	}
	for _, id := range b.DeleteSubscriptions {
		delete(m.subs, id)
	}
	for _, p := range b.Publications {
		m.pubs[p.ID] = p
	}
	for _, r := range b.PublicationRefreshes {
		if p, ok := m.pubs[r.ID]; ok {
			p.ETag, p.Expires = r.ETag, r.Expires
			m.pubs[r.ID] = p
		}
	}
	for _, ref := range b.DeletePublications {
		delete(m.pubs, ref.ID)
	}
	for _, bd := range b.Bindings {
		bd.Path = slices.Clone(bd.Path)
		m.bind[bd.ID] = bd
	}
	for _, id := range b.DeleteBindings {
		delete(m.bind, id)
	}
	for _, c := range b.NotifyCSeqs {
		if sub, ok := m.subs[c.ID]; ok && c.CSeq > sub.LocalCSeq {
			sub.LocalCSeq = c.CSeq
			m.subs[c.ID] = sub
		}
	}
	for _, r := range b.Resources {
		key := [2]string{r.Event, r.Resource}
		if len(r.State) == 0 {
			delete(m.res, key)
			continue
		}
		r.State, r.Prev = slices.Clone(r.State), 0
		m.res[key] = r
	}
	return nil
}

// Load implements Store.
func (m *Memory) Load(context.Context) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &Snapshot{}
	for _, v := range m.subs {
		s.Subscriptions = append(s.Subscriptions, v)
	}
	for _, v := range m.pubs {
		s.Publications = append(s.Publications, v)
	}
	for _, v := range m.res {
		s.Resources = append(s.Resources, v)
	}
	for _, v := range m.bind {
		s.Bindings = append(s.Bindings, v)
	}
	return s, nil
}

// LoadResource implements Store. Memory, which servers may share (the
// tests of a cluster), finds a resource by its URI, as PostgreSQL does.
func (m *Memory) LoadResource(_ context.Context, _ uint64, event, resource string) (Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.res[[2]string{event, resource}]
	if !ok {
		return Resource{Event: event, Resource: resource}, nil
	}
	r.State = slices.Clone(r.State)
	return r, nil
}

// LoadPublications implements Store, by URI as LoadResource.
func (m *Memory) LoadPublications(_ context.Context, _ uint64, event, resource string) ([]Publication, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []Publication
	for _, p := range m.pubs {
		if p.Event == event && p.Resource == resource {
			ps = append(ps, p)
		}
	}
	// In the order they were made, as a server holds them (ids are
	// time-ordered).
	slices.SortFunc(ps, func(a, b Publication) int { return strings.Compare(a.ID, b.ID) })
	return ps, nil
}

// LoadSubscriptions implements Store.
func (m *Memory) LoadSubscriptions(_ context.Context, ids []string) ([]Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var subs []Subscription
	for _, id := range ids {
		if v, ok := m.subs[id]; ok {
			v.State = slices.Clone(v.State)
			subs = append(subs, v)
		}
	}
	return subs, nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
