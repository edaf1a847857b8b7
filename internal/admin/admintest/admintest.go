// Package admintest provides an in-memory admin.Backend for tests of the
// admin API and its clients; it speaks no SIP and runs no module.
package admintest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/server"
)

// Call is one Command the backend was asked to run.
type Call struct {
	Event, Resource, Name string
	Args                  map[string]string
}

// Backend holds what the operator methods report. Terminate and
// RemovePublication remove entries; Command records the call and answers
// with CommandResult and CommandErr.
type Backend struct {
	mu            sync.Mutex
	Subs          []server.SubscriptionInfo
	Pubs          []server.PublicationInfo
	Binds         []server.BindingInfo
	Resources     []server.PresentityInfo
	Exts          []server.ExtensionInfo
	CommandResult string
	CommandErr    error
	Calls         []Call
	Terminated    map[string]string // id → reason
	// ResourceLists are the lists; the list methods edit them as the
	// server does, with its errors.
	ResourceLists []server.ListInfo
}

func (b *Backend) Subscriptions(f server.Filter) []server.SubscriptionInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []server.SubscriptionInfo
	for _, s := range b.Subs {
		if (f.Event == "" || f.Event == s.Event) && (f.Resource == "" || f.Resource == s.Resource) &&
			(f.Watcher == "" || f.Watcher == s.Watcher) {
			out = append(out, s)
		}
	}
	return out
}

func (b *Backend) Publications(f server.Filter) []server.PublicationInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []server.PublicationInfo
	for _, p := range b.Pubs {
		if (f.Event == "" || f.Event == p.Event) && (f.Resource == "" || f.Resource == p.Resource) {
			out = append(out, p)
		}
	}
	return out
}

func (b *Backend) Bindings(aor string) []server.BindingInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []server.BindingInfo
	for _, x := range b.Binds {
		if aor == "" || aor == x.AOR {
			out = append(out, x)
		}
	}
	return out
}

func (b *Backend) Presentities(event string) []server.PresentityInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []server.PresentityInfo
	for _, p := range b.Resources {
		if event == "" || event == p.Event {
			p.Document, p.ContentType = "", ""
			out = append(out, p)
		}
	}
	return out
}

func (b *Backend) Presentity(event, uri string) (server.PresentityInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.Resources {
		if p.Event == event && p.Resource == uri {
			return p, nil
		}
	}
	return server.PresentityInfo{}, fmt.Errorf("%s %s: %w", event, uri, server.ErrNotFound)
}

func (b *Backend) Terminate(id, reason string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Contains([]string{"deactivated", "probation", "rejected", "timeout", "giveup", "noresource", "invariant"}, reason) {
		return fmt.Errorf("reason %q is not a termination reason", reason)
	}
	i := slices.IndexFunc(b.Subs, func(s server.SubscriptionInfo) bool { return s.ID == id })
	if i < 0 {
		return fmt.Errorf("subscription %s: %w", id, server.ErrNotFound)
	}
	b.Subs = slices.Delete(b.Subs, i, i+1)
	if b.Terminated == nil {
		b.Terminated = map[string]string{}
	}
	b.Terminated[id] = reason
	return nil
}

func (b *Backend) RemovePublication(etag string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.IndexFunc(b.Pubs, func(p server.PublicationInfo) bool { return p.ETag == etag })
	if i < 0 {
		return fmt.Errorf("publication %s: %w", etag, server.ErrNotFound)
	}
	b.Pubs = slices.Delete(b.Pubs, i, i+1)
	return nil
}

func (b *Backend) Extensions() []server.ExtensionInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.Exts)
}

func (b *Backend) Command(event, resource, name string, args map[string]string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Calls = append(b.Calls, Call{Event: event, Resource: resource, Name: name, Args: args})
	return b.CommandResult, b.CommandErr
}

// LastCall is the last Command run, or the zero Call.
func (b *Backend) LastCall() Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.Calls) == 0 {
		return Call{}
	}
	return b.Calls[len(b.Calls)-1]
}

// Sample is a backend with one presentity (alice, a publication and a
// watcher), a registrar binding and the presence and conference modules,
// with expiries relative to now.
func Sample(now time.Time) *Backend {
	sub := server.SubscriptionInfo{ID: "d1", Event: "presence", Resource: "sip:alice@example.com",
		Watcher: "sip:bob@example.com", Status: "active", Expires: now.Add(time.Hour), CSeq: 3,
		Transport: "UDP", Source: "127.0.0.1:5062", Contact: "sip:bob@127.0.0.1:5062", Created: now.Add(-time.Minute)}
	pub := server.PublicationInfo{ETag: "e1", Event: "presence", Resource: "sip:alice@example.com",
		ContentType: "application/pidf+xml", Size: 210, Expires: now.Add(30 * time.Minute)}
	backedOff := now.Add(-time.Second)
	return &Backend{
		Subs:  []server.SubscriptionInfo{sub},
		Pubs:  []server.PublicationInfo{pub},
		Binds: []server.BindingInfo{{AOR: "sip:alice@example.com", Contact: "sip:alice@10.0.0.1:5060", Q: "0.5", Expires: now.Add(2 * time.Hour)}},
		Resources: []server.PresentityInfo{{Event: "presence", Resource: "sip:alice@example.com",
			ContentType: "application/pidf+xml", Document: `<presence entity="sip:alice@example.com"/>`,
			Publications: []server.PublicationInfo{pub}, Subscriptions: []server.SubscriptionInfo{sub}}},
		Exts: []server.ExtensionInfo{
			{Name: "pa", File: "/usr/lib/presenced/pa.wasm", SHA256: "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12",
				ABI: "1", Events: []string{"presence", "presence.winfo"}, Commands: []string{"approve", "reject"},
				Instances: 2, MaxInstances: 8, Calls: 10, MeanCall: "120µs"},
			// backed off, its back-off over and the call let through
			// still out
			{Name: "conference", File: "/usr/lib/presenced/conference.wasm", SHA256: "99aa", ABI: "1",
				Events: []string{"conference"}, Commands: []string{"conference_reset"},
				MaxInstances: 8, Errors: 5, FailuresInARow: 5, BackoffUntil: &backedOff, Refused: 3},
		},
	}
}

// Lists implements admin.Backend.
func (b *Backend) Lists() []server.ListInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ResourceLists)
}

// list is the index of list uri, or an error the server would give.
func (b *Backend) list(uri string, editing bool) (int, error) {
	i := slices.IndexFunc(b.ResourceLists, func(l server.ListInfo) bool { return l.URI == uri })
	switch {
	case i < 0:
		return i, fmt.Errorf("list %s: %w", uri, server.ErrNotFound)
	case editing && b.ResourceLists[i].Source == "file":
		return i, fmt.Errorf("list %s is defined in the rls-services file: %w", uri, server.ErrConflict)
	}
	return i, nil
}

// PutList implements admin.Backend.
func (b *Backend) PutList(l rls.List) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := l.Check(); err != nil {
		return fmt.Errorf("%w: %w", server.ErrInvalid, err)
	}
	info := server.ListInfo{URI: l.URI, Packages: l.Packages, Members: l.Members, Source: "admin"}
	i, err := b.list(l.URI, true)
	switch {
	case i < 0:
		b.ResourceLists = append(b.ResourceLists, info)
	case err != nil:
		return err
	default:
		b.ResourceLists[i] = info
	}
	return nil
}

// AddListMember implements admin.Backend.
func (b *Backend) AddListMember(uri string, m rls.Member) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, err := b.list(uri, true)
	if err != nil {
		return err
	}
	l := &b.ResourceLists[i]
	if slices.ContainsFunc(l.Members, func(x rls.Member) bool { return x.URI == m.URI }) {
		return fmt.Errorf("list %s: %s is a member already: %w", uri, m.URI, server.ErrConflict)
	}
	l.Members = append(slices.Clone(l.Members), m)
	return nil
}

// RemoveListMember implements admin.Backend.
func (b *Backend) RemoveListMember(uri, member string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, err := b.list(uri, true)
	if err != nil {
		return err
	}
	l := &b.ResourceLists[i]
	n := len(l.Members)
	l.Members = slices.DeleteFunc(slices.Clone(l.Members), func(x rls.Member) bool { return x.URI == member })
	if len(l.Members) == n {
		return fmt.Errorf("list %s has no member %s: %w", uri, member, server.ErrNotFound)
	}
	return nil
}

// DeleteList implements admin.Backend.
func (b *Backend) DeleteList(uri string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, err := b.list(uri, true)
	if err != nil {
		return err
	}
	b.ResourceLists = slices.Delete(b.ResourceLists, i, i+1)
	return nil
}
