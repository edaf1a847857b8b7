package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/store"
)

// What an operator does with resource lists: the admin API's lists
// endpoints and a reload of the rls-services file.

// ErrConflict is a list change that contradicts what is there: a list
// that exists already, one the rls-services file defines, a member that is
// already one.
var ErrConflict = errors.New("conflict")

// ErrInvalid is a list or member that is not well formed.
var ErrInvalid = errors.New("invalid")

// ListInfo describes one resource list.
type ListInfo struct {
	URI      string       `json:"uri"`
	Packages []string     `json:"packages"`
	Members  []rls.Member `json:"members"`
	// Source is "file" (the rls-services file; changed by editing it and
	// reloading) or "admin" (made through the API, kept in the store).
	Source        string `json:"source"`
	Subscriptions int    `json:"subscriptions"`
}

// normalize reduces a list's URI and its members' to the presentity a
// request-URI reduces to (presentityOf), so that a SUBSCRIBE finds the
// list and a member's resource is the one its PUBLISHes reach.
func normalize(l rls.List) (rls.List, error) {
	if err := l.Check(); err != nil {
		return l, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	reduce := func(uri string) (string, error) {
		var u sip.Uri
		if err := sip.ParseUri(uri, &u); err != nil {
			return "", fmt.Errorf("%w: %q: %w", ErrInvalid, uri, err)
		}
		p, ok := presentityOf(u)
		if !ok {
			return "", fmt.Errorf("%w: %q names no presentity", ErrInvalid, uri)
		}
		return p, nil
	}
	out := rls.List{Packages: slices.Clone(l.Packages)}
	var err error
	if out.URI, err = reduce(l.URI); err != nil {
		return l, err
	}
	for _, m := range l.Members {
		u, err := reduce(m.URI)
		if err != nil {
			return l, err
		}
		out.Members = append(out.Members, rls.Member{URI: u, Name: m.Name})
	}
	if err := out.Check(); err != nil { // two spellings of one member, or of the list itself
		return l, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// listIndex is lists by URI, normalized.
func listIndex(ls []rls.List) (map[string]*rls.List, error) {
	m := map[string]*rls.List{}
	for _, l := range ls {
		n, err := normalize(l)
		if err != nil {
			return nil, err
		}
		if m[n.URI] != nil {
			return nil, fmt.Errorf("%w: list %s is defined twice", ErrInvalid, n.URI)
		}
		m[n.URI] = &n
	}
	return m, nil
}

// Lists describes every resource list, by URI.
func (s *Server) Lists() []ListInfo {
	s.lists.mu.Lock()
	var out []ListInfo
	for source, m := range map[string]map[string]*rls.List{"file": s.lists.file, "admin": s.lists.admin} {
		for _, l := range m {
			out = append(out, ListInfo{URI: l.URI, Packages: orNone(l.Packages), Members: orNone(l.Members), Source: source})
		}
	}
	s.lists.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].URI < out[j].URI })
	for i := range out {
		out[i].Subscriptions = len(s.listDialogsOf(out[i].URI))
	}
	return out
}

func orNone[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// PutList creates list l, or replaces one made through the API; its
// subscribers are sent the new full state. A list the rls-services file
// defines is refused (ErrConflict): the file is where it changes.
func (s *Server) PutList(l rls.List) error {
	n, err := normalize(l)
	if err != nil {
		return err
	}
	return s.changeList(n.URI, func(*rls.List) (*rls.List, error) { return &n, nil })
}

// AddListMember adds member m to list uri.
func (s *Server) AddListMember(uri string, m rls.Member) error {
	return s.changeList(uri, func(old *rls.List) (*rls.List, error) {
		if old == nil {
			return nil, fmt.Errorf("list %s: %w", uri, ErrNotFound)
		}
		var u sip.Uri
		if sip.ParseUri(m.URI, &u) == nil {
			if p, ok := presentityOf(u); ok && old.Has(p) {
				return nil, fmt.Errorf("list %s: %s is a member already: %w", uri, p, ErrConflict)
			}
		}
		out, err := normalize(rls.List{URI: old.URI, Packages: old.Packages, Members: append(slices.Clone(old.Members), m)})
		return &out, err
	})
}

// RemoveListMember removes member from list uri.
func (s *Server) RemoveListMember(uri, member string) error {
	return s.changeList(uri, func(old *rls.List) (*rls.List, error) {
		if old == nil {
			return nil, fmt.Errorf("list %s: %w", uri, ErrNotFound)
		}
		var u sip.Uri
		if sip.ParseUri(member, &u) == nil {
			if p, ok := presentityOf(u); ok {
				member = p
			}
		}
		if !old.Has(member) {
			return nil, fmt.Errorf("list %s has no member %s: %w", uri, member, ErrNotFound)
		}
		n := rls.List{URI: old.URI, Packages: old.Packages,
			Members: slices.DeleteFunc(slices.Clone(old.Members), func(m rls.Member) bool { return m.URI == member })}
		return &n, nil
	})
}

// DeleteList deletes list uri; its subscriptions end (noresource).
func (s *Server) DeleteList(uri string) error {
	return s.changeList(uri, func(old *rls.List) (*rls.List, error) {
		if old == nil {
			return nil, fmt.Errorf("list %s: %w", uri, ErrNotFound)
		}
		return nil, nil
	})
}

// changeList runs one operator's change of the list at uri (reduced as a
// request-URI is): edit gets the list made through the API (nil if none)
// and returns its new definition (nil deletes it). The new definition is
// committed before it is live, and then every subscription to the list
// is sent its new full state.
func (s *Server) changeList(uri string, edit func(*rls.List) (*rls.List, error)) error {
	var u sip.Uri
	if sip.ParseUri(uri, &u) == nil {
		if p, ok := presentityOf(u); ok {
			uri = p
		}
	}
	s.lists.op.Lock()
	defer s.lists.op.Unlock()
	s.lists.mu.Lock()
	file, old := s.lists.file[uri], s.lists.admin[uri]
	s.lists.mu.Unlock()
	if file != nil {
		return fmt.Errorf("list %s is defined in the rls-services file; change it there and reload: %w", uri, ErrConflict)
	}
	// The record is written only over the version this node holds: if
	// another node changed the list first (store.ErrConflict), its list
	// is read and edited instead, as the change path does with module
	// state.
	var n *rls.List
	for try := 0; ; try++ {
		var err error
		if n, err = edit(old); err != nil {
			return err
		}
		st := s.lists.stored[uri]
		if st.id == 0 {
			st.id = s.resourceIDs.next()
		}
		rec := store.Resource{ID: st.id, Event: listEvent, Resource: uri, Prev: st.version}
		if n != nil {
			rec.State, _ = json.Marshal(n)
			rec.Version = newStateVersion()
		}
		c := s.newChange()
		c.batch.Resources = []store.Resource{rec}
		err = c.commit()
		if err == nil {
			s.lists.stored[uri] = storedList{st.id, rec.Version}
			break
		}
		if !errors.Is(err, store.ErrConflict) || try == conflictRetries {
			return fmt.Errorf("list %s: %w", uri, err)
		}
		if old, err = s.reloadList(uri); err != nil {
			return fmt.Errorf("list %s: %w", uri, err)
		}
	}
	s.lists.mu.Lock()
	if n == nil {
		delete(s.lists.admin, uri)
	} else {
		s.lists.admin[uri] = n
	}
	s.lists.mu.Unlock()
	s.syncListsOf(uri)
	return nil
}

// SetLists replaces the lists of the rls-services file (a reload); the
// subscriptions to each list that changed get its new full state, those
// to a list gone end (noresource). A file naming a list made through the
// API is refused, and the running lists stay.
func (s *Server) SetLists(ls []rls.List) error {
	m, err := listIndex(ls)
	if err != nil {
		return err
	}
	s.lists.op.Lock()
	defer s.lists.op.Unlock()
	s.lists.mu.Lock()
	for u := range m {
		if s.lists.admin[u] != nil {
			s.lists.mu.Unlock()
			return fmt.Errorf("list %s is in the rls-services file and was made through the admin API; delete one: %w", u, ErrConflict)
		}
	}
	old := s.lists.file
	s.lists.file = m
	s.lists.mu.Unlock()
	for u, l := range old {
		if n := m[u]; n == nil || !sameList(l, n) {
			s.syncListsOf(u)
		}
	}
	return nil
}

func sameList(a, b *rls.List) bool {
	return a.URI == b.URI && slices.Equal(a.Packages, b.Packages) && slices.Equal(a.Members, b.Members)
}

// restoreList takes a list made through the API from its stored record.
func (s *Server) restoreList(rec store.Resource) {
	// Its id is kept even if it does not read: a list made again under
	// that URI is written over it.
	s.lists.stored[rec.Resource] = storedList{id: rec.ID}
	var l rls.List
	if err := json.Unmarshal(rec.State, &l); err != nil || l.URI != rec.Resource {
		s.log.Warn("stored list does not read, left in the store", "list", rec.Resource, "err", err)
		return
	}
	s.lists.mu.Lock()
	defer s.lists.mu.Unlock()
	if s.lists.file[l.URI] != nil {
		s.log.Warn("list made through the admin API is also in the rls-services file; the file's is served", "list", l.URI)
	}
	s.lists.admin[l.URI] = &l
	s.lists.stored[l.URI] = storedList{rec.ID, rec.Version}
}

// reloadList reads list uri's record as the store holds it now, after
// another node wrote it, and makes it this node's; s.lists.op is held.
func (s *Server) reloadList(uri string) (*rls.List, error) {
	ctx := s.storeContext()
	st := s.lists.stored[uri]
	rec, err := s.store.LoadResource(ctx, st.id, listEvent, uri)
	if err != nil {
		return nil, err
	}
	var l *rls.List
	if len(rec.State) > 0 {
		l = &rls.List{}
		if err := json.Unmarshal(rec.State, l); err != nil {
			return nil, fmt.Errorf("stored list does not read: %w", err)
		}
	}
	s.lists.stored[uri] = storedList{st.id, rec.Version}
	s.lists.mu.Lock()
	if l == nil {
		delete(s.lists.admin, uri)
	} else {
		s.lists.admin[uri] = l
	}
	s.lists.mu.Unlock()
	return l, nil
}

// restoreListDialog makes list subscription rec live again with its
// back-ends, from the state it stored; restore then syncs it.
func (s *Server) restoreListDialog(ep *eventPackage, rec store.Subscription, st listState) *dialog {
	r := s.lockResource(ep, rec.Resource)
	d := newDialog(rec, r)
	l := &listDialog{d: d, st: st, backends: map[string]*dialog{}}
	d.list = l
	r.addWatcher(d)
	s.link(d)
	s.armTimer(d, rec.Expires)
	r.mu.Unlock()
	for _, ms := range st.Members {
		if ms.Status == "terminated" || !s.servesDomain(ms.URI) {
			continue
		}
		m := s.lockResource(ep, ms.URI)
		bd := newBackend(l, m, ms)
		m.addWatcher(bd)
		l.backends[ms.URI] = bd
		if s.opt.Watch != nil {
			s.opt.Watch.Watch(bd.event(), bd.resource())
		}
		m.mu.Unlock()
	}
	return d
}
