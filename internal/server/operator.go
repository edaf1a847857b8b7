package server

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
)

// What an operator sees of the server: the admin API (internal/admin) is a
// thin JSON layer over these methods.

// SubscriptionInfo describes one subscription.
type SubscriptionInfo struct {
	ID        string    `json:"id"`
	Event     string    `json:"event"`
	EventID   string    `json:"event_id,omitempty"`
	Resource  string    `json:"resource"`
	Watcher   string    `json:"watcher"`
	Status    string    `json:"status"`
	Expires   time.Time `json:"expires"`
	CSeq      uint32    `json:"cseq"`
	Transport string    `json:"transport"`
	Source    string    `json:"source"`
	Contact   string    `json:"contact"`
	Created   time.Time `json:"created"`
}

// PublicationInfo describes one publication.
type PublicationInfo struct {
	ETag        string    `json:"etag"`
	Event       string    `json:"event"`
	Resource    string    `json:"resource"`
	ContentType string    `json:"content_type"`
	Size        int       `json:"size"`
	Expires     time.Time `json:"expires"`
}

// BindingInfo describes one registrar binding.
type BindingInfo struct {
	AOR      string    `json:"aor"`
	Contact  string    `json:"contact"`
	Q        string    `json:"q,omitempty"`
	Expires  time.Time `json:"expires"`
	Instance string    `json:"instance,omitempty"` // +sip.instance, unquoted
	RegID    uint32    `json:"reg_id,omitempty"`
	Path     []string  `json:"path,omitempty"`
}

// PresentityInfo is a resource with its composed state.
type PresentityInfo struct {
	Event         string             `json:"event"`
	Resource      string             `json:"resource"`
	ContentType   string             `json:"content_type,omitempty"`
	Document      string             `json:"document,omitempty"` // what a new, authorized watcher would get
	Publications  []PublicationInfo  `json:"publications"`
	Subscriptions []SubscriptionInfo `json:"subscriptions"`
}

// ExtensionInfo describes one loaded module.
type ExtensionInfo struct {
	Name      string   `json:"name"`
	File      string   `json:"file"`
	SHA256    string   `json:"sha256"`
	ABI       string   `json:"abi"`
	Events    []string `json:"events"`
	Commands  []string `json:"commands"`
	Instances int      `json:"instances"`
	// MaxInstances is max_instances; FailuresInARow count toward a
	// back-off; BackoffUntil is when a backed-off module is called again
	// (null: it is), Refused the calls refused meanwhile.
	MaxInstances   int        `json:"max_instances"`
	Calls          int64      `json:"calls"`
	Errors         int64      `json:"errors"`
	FailuresInARow int        `json:"failures_in_a_row"`
	BackoffUntil   *time.Time `json:"backoff_until"`
	Refused        int64      `json:"refused"`
	MeanCall       string     `json:"mean_call"`
}

// Filter selects subscriptions or publications; empty fields match all.
type Filter struct {
	Event    string
	Resource string
	Watcher  string
}

func (f Filter) match(event, resource, watcher string) bool {
	return (f.Event == "" || f.Event == event) && (f.Resource == "" || f.Resource == resource) &&
		(f.Watcher == "" || f.Watcher == watcher)
}

// ErrNotFound is returned for an unknown subscription, publication or
// presentity.
var ErrNotFound = errors.New("not found")

// resourcesSnapshot lists the live resources; each is then read under its
// own lock.
func (s *Server) resourcesSnapshot() []*resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*resource, 0, s.resources.len())
	for r := range s.resources.all() {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].key, out[j].key
		return a.event < b.event || a.event == b.event && a.uri < b.uri
	})
	return out
}

func subscriptionInfo(d *dialog) SubscriptionInfo {
	d.qmu.Lock()
	cseq := d.cseq
	d.qmu.Unlock()
	st := d.status()
	if st == "" {
		st = abi.StatusActive
	}
	return SubscriptionInfo{ID: d.id(), Event: d.event(), EventID: d.eventID(), Resource: d.resource(),
		Watcher: d.remoteURI(), Status: st, Expires: d.expires(), CSeq: cseq, Transport: d.transport(),
		Source: d.source(), Contact: d.target(), Created: d.createdAt()}
}

func publicationInfo(p *publication) PublicationInfo {
	return PublicationInfo{ETag: p.etag.String(), Event: p.res.key.event, Resource: p.res.key.uri,
		ContentType: p.ctype, Size: int(p.size), Expires: p.expires()}
}

// Subscriptions lists the live subscriptions that match f.
func (s *Server) Subscriptions(f Filter) []SubscriptionInfo {
	var out []SubscriptionInfo
	for _, r := range s.resourcesSnapshot() {
		s.lock(r)
		for _, d := range s.listed(r) {
			if f.match(d.event(), d.resource(), d.remoteURI()) {
				out = append(out, subscriptionInfo(d))
			}
		}
		r.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// listed is every watcher of r for a listing (watchersOf); r.mu is
// held. A listing has no answer to refuse if the store fails: it lists
// those held, and the failure is logged.
func (s *Server) listed(r *resource) []*dialog {
	ds, err := s.watchersOf(r)
	if err != nil {
		s.log.Warn("subscriptions let go of left out of a listing", "resource", r.key.uri, "err", err)
	}
	return ds
}

// Publications lists the live publications that match f (Watcher unused).
func (s *Server) Publications(f Filter) []PublicationInfo {
	var out []PublicationInfo
	s.eachResource(f.Event, func(r *resource) bool {
		for p := range r.publications() {
			if f.match(r.key.event, r.key.uri, "") {
				out = append(out, publicationInfo(p))
			}
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		return out[i].Resource < out[j].Resource || out[i].Resource == out[j].Resource && out[i].ETag < out[j].ETag
	})
	return out
}

// Bindings lists the registrar bindings of aor, or of everyone if "".
func (s *Server) Bindings(aor string) []BindingInfo {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	var out []BindingInfo
	for a, m := range s.bindings {
		if aor != "" && a != aor {
			continue
		}
		for _, b := range m {
			out = append(out, BindingInfo{AOR: b.rec.AOR, Contact: b.rec.Contact, Q: b.rec.Q, Expires: b.rec.Expires,
				Instance: b.rec.Instance, RegID: b.rec.RegID, Path: b.rec.Path})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].AOR < out[j].AOR || out[i].AOR == out[j].AOR && out[i].Contact < out[j].Contact
	})
	return out
}

// Presentities lists the resources of event ("" for all) that have state,
// publications or watchers.
func (s *Server) Presentities(event string) []PresentityInfo {
	var out []PresentityInfo
	s.eachResource(event, func(r *resource) bool {
		out = append(out, s.presentity(r, false))
		return true
	})
	return out
}

// Presentity returns one resource with the document a new, authorized
// watcher would get now.
func (s *Server) Presentity(event, uri string) (PresentityInfo, error) {
	r := s.lockHeld(resourceKey{event, uri}, s.lock)
	if r == nil {
		return PresentityInfo{}, fmt.Errorf("%s %s: %w", event, uri, ErrNotFound)
	}
	defer s.release(r)
	return s.presentity(r, true), nil
}

// Render returns what a new watcher watcherURI of uri would be sent now by
// the module serving event: its authorization (active, pending, rejected)
// and, when active, the document. Nothing is committed: it is for watchers
// that are not SIP subscriptions, such as the XMPP component's subscribers.
func (s *Server) Render(event, uri, watcherURI string) (status, ctype string, body []byte, err error) {
	ep := s.cat().packages[event]
	if ep == nil {
		return "", "", nil, fmt.Errorf("event package %q is not served", event)
	}
	r := s.lockResource(ep, uri)
	defer s.release(r)
	w := &dialog{res: r}
	w.setIdentity(identity{id: "gateway", remoteURI: watcherURI})
	n, err := s.newChange().render(r, w)
	var rf *refusal
	if errors.As(err, &rf) {
		return "", "", nil, fmt.Errorf("extension %s refused to render %s for %s: %w", ep.mod.Name(), uri, watcherURI, err)
	}
	if err != nil {
		return "", "", nil, err
	}
	if n == nil {
		return abi.StatusPending, "", nil, nil
	}
	status = n.Status
	if status == "" {
		status = abi.StatusActive
	}
	if status != abi.StatusActive {
		return status, "", nil, nil
	}
	return status, n.ContentType, n.Body, nil
}

// presentity describes r; r.mu is held. With render, the module renders
// for a synthetic active watcher (the presentity itself).
func (s *Server) presentity(r *resource, render bool) PresentityInfo {
	info := PresentityInfo{Event: r.key.event, Resource: r.key.uri,
		Publications: []PublicationInfo{}, Subscriptions: []SubscriptionInfo{}}
	for p := range r.publications() {
		info.Publications = append(info.Publications, publicationInfo(p))
	}
	for _, d := range s.listed(r) {
		info.Subscriptions = append(info.Subscriptions, subscriptionInfo(d))
	}
	if render {
		// A change proposed and never committed: it changes nothing.
		admin := &dialog{auth: statusOf(abi.StatusActive), res: r}
		admin.setIdentity(identity{id: "admin", remoteURI: r.key.uri})
		if n, err := s.newChange().render(r, admin); err == nil && n != nil {
			info.ContentType, info.Document = n.ContentType, string(n.Body)
		}
	}
	return info
}

// terminationReasons are the reasons RFC 6665 §4.2.2 defines.
var terminationReasons = []string{"deactivated", "probation", "rejected", "timeout", "giveup", "noresource", "invariant"}

// Terminate ends a subscription now with a final NOTIFY
// "terminated;reason=REASON" carrying the current state.
func (s *Server) Terminate(id, reason string) error {
	if !slices.Contains(terminationReasons, reason) {
		return fmt.Errorf("reason %q is not one of %s", reason, strings.Join(terminationReasons, ", "))
	}
	d, err := s.lockDialog(id)
	switch {
	case err != nil:
		return fmt.Errorf("subscription %s: %w", id, err)
	case d == nil:
		return fmt.Errorf("subscription %s: %w", id, ErrNotFound)
	case d.isList():
		if err := s.dropList(d, true, false, reason); err != nil {
			return fmt.Errorf("subscription %s: %w", id, err)
		}
		return nil
	}
	r := d.res
	defer s.release(r)
	if d.gone {
		return fmt.Errorf("subscription %s: %w", id, ErrNotFound)
	}
	c, err := s.end(r, d, reason)
	if err != nil {
		return fmt.Errorf("subscription %s: %w", id, err)
	}
	c.emit()
	return nil
}

// RemovePublication removes the publication with etag, as a PUBLISH with
// Expires: 0 would, and tells the watchers.
//
// There is no index by ETag (see publish): an operator's removal looks
// through every presentity.
func (s *Server) RemovePublication(etag string) error {
	err := fmt.Errorf("publication %s: %w", etag, ErrNotFound)
	s.eachResource("", func(r *resource) bool {
		p := r.pubByETag(etag)
		if p != nil {
			err = s.removeByOperator(r, p)
		}
		return p == nil
	})
	return err
}

// removeByOperator is RemovePublication once p is found; r.mu is held.
func (s *Server) removeByOperator(r *resource, p *publication) error {
	c, err := s.unpublish(r, p)
	if err != nil {
		return fmt.Errorf("publication %s: %w", p.etag, err)
	}
	c.emit()
	return nil
}

// Extensions describes the loaded modules.
func (s *Server) Extensions() []ExtensionInfo {
	var out []ExtensionInfo
	for _, m := range s.cat().modules {
		st := m.Stats()
		info := ExtensionInfo{Name: m.Name(), File: m.Path(), SHA256: m.SHA256(), ABI: m.ABI(),
			Instances: st.Instances, MaxInstances: st.MaxInstances, Calls: st.Calls, Errors: st.Failures,
			FailuresInARow: st.FailuresInARow, Refused: st.Refused, Commands: m.Manifest().Commands}
		if !st.BackoffUntil.IsZero() {
			info.BackoffUntil = &st.BackoffUntil
		}
		if info.Commands == nil {
			info.Commands = []string{}
		}
		for _, p := range m.Manifest().Packages {
			info.Events = append(info.Events, p.Event)
		}
		if st.Calls > 0 {
			info.MeanCall = (st.Total / time.Duration(st.Calls)).String()
		}
		out = append(out, info)
	}
	return out
}

// Reload swaps in a new set of modules. Subscriptions, publications and
// state stay: they are the host's, and the new modules take them over on
// their next call. A set that no longer serves an event package with live
// resources is refused, and the running set stays. It returns the modules
// replaced, for the caller to drain.
func (s *Server) Reload(mods []*extension.Module) ([]*extension.Module, error) {
	c, err := newCatalog(s.opt, mods)
	if err != nil {
		return nil, err
	}
	live := map[string]int{}
	for _, key := range s.resourceKeys("") {
		if c.packages[key.event] == nil {
			live[key.event]++
		}
	}
	for event, n := range live {
		return nil, fmt.Errorf("the new modules do not serve %q, which has %d live resources", event, n)
	}
	old := s.catalog.Swap(c)
	for _, r := range s.resourcesSnapshot() {
		s.lock(r)
		r.pkg = c.packages[r.key.event]
		r.mu.Unlock()
	}
	var replaced []*extension.Module
	for _, m := range old.modules {
		if !slices.Contains(mods, m) {
			replaced = append(replaced, m)
		}
	}
	return replaced, nil
}
