// Command dialog is the "dialog" event package (RFC 4235) for busy lamp
// fields: the dialogs a PBX or proxy PUBLISHes for a presentity, composed
// by dialog id across publishers, sent to each watcher as a full
// dialog-info document with a version of its own, identities only to the
// watchers allowed them, and in the shape each known phone needs.
package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const infoType = "application/dialog-info+xml"

// module holds only its configuration: who sees identities, and which
// watchers get which quirk (README.md, "Quirks"), and the memory it reads
// documents into; its state is the live publications, each kept as the
// dialogs it says.
type module struct {
	pubstate.Handler
	identities, dummy, single, direction sdk.WatcherList
	docs                                 xmldoc.Reader
}

func (m *module) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	c := sdk.ReadConfig(cfg, "dialog")
	expires := c.Seconds("default_expires", 3600)
	m.identities, m.dummy = c.Watchers("identities", sdk.SameDomain), c.Watchers("dummy_dialog", "")
	m.single, m.direction = c.Watchers("single_dialog", ""), c.Watchers("always_direction", "")
	return sdk.Manifest{Packages: []sdk.Package{{Event: "dialog", Accept: []string{infoType}, DefaultExpires: expires}}}, c.Err()
}

// fold puts a publication's dialogs into st.
func (m *module) fold(req *sdk.Request, st *pubstate.State) error {
	p := req.Publication
	full, ds, err := parse(&m.docs, p.Body, req.Resource)
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(st.Pubs, func(q pubstate.Publication) bool { return q.ID == p.ID }); !full && i >= 0 {
		// a partial document changes the dialogs it names (RFC 4235 §4.1)
		_, old, err := parse(&m.docs, st.Pubs[i].Body, req.Resource)
		if err != nil {
			return err
		}
		for _, d := range old {
			if !slices.ContainsFunc(ds, func(n dialog) bool { return n.id == d.id }) {
				ds = append(ds, d)
			}
		}
	}
	// kept in the form watchers get it, so the stored state is read with
	// the same parser, and the most recent publication last
	st.Push(p.ID, document(req.Resource, 0, ds))
	return nil
}

// compose is the presentity's dialogs: every publication's, by id. Where
// two publishers say different states of one dialog, the one furthest
// along wins (states only move forward, so it is the latest, whatever
// order the PUBLISHes came in); between equals, the latest publication.
// While any dialog is live, the terminated ones are left out: a cancelled
// branch of a forked call must not show the line idle while another rings
// or talks.
func compose(docs *xmldoc.Reader, resource string, st *pubstate.State) ([]dialog, error) {
	var all []dialog
	for _, p := range st.Pubs {
		_, ds, err := parse(docs, p.Body, resource)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if i := slices.IndexFunc(all, func(a dialog) bool { return a.id == d.id }); i < 0 {
				all = append(all, d)
			} else if progress[d.state] >= progress[all[i].state] {
				all[i] = d
			}
		}
	}
	if live := slices.DeleteFunc(slices.Clone(all), func(d dialog) bool { return d.state == "terminated" }); len(live) > 0 {
		return live, nil
	}
	return all, nil
}

// interest is which dialog a single_dialog watcher is sent: ringing first
// (it can be picked up), then talking, then being set up, then ended.
var interest = map[string]int{"early": 5, "confirmed": 4, "proceeding": 3, "trying": 2, "terminated": 1}

// view is what one watcher is sent of ds.
func (m *module) view(w sdk.Watcher, resource string, ds []dialog) []dialog {
	if m.single.Has(w.URI, resource) && len(ds) > 1 {
		ds = []dialog{slices.MaxFunc(ds, func(a, b dialog) int { return interest[a.state] - interest[b.state] })}
	}
	if len(ds) == 0 && m.dummy.Has(w.URI, resource) {
		user, _, _ := strings.Cut(strings.TrimPrefix(resource, "sip:"), "@")
		return []dialog{{id: user, direction: "recipient", state: "terminated"}}
	}
	out := slices.Clone(ds)
	for i := range out {
		if !m.identities.Has(w.URI, resource) {
			// who calls, and what it takes to pick the call up
			out[i].callID, out[i].localTag, out[i].remoteTag = "", "", ""
			out[i].local, out[i].remote = party{}, party{}
		}
		if out[i].direction == "" && m.direction.Has(w.URI, resource) {
			out[i].direction = "recipient"
		}
	}
	return out
}

// notify renders for every watcher given; one whose dialogs would not
// change is sent nothing, unless it needs full state.
func (m *module) notify(req *sdk.Request, _, st *pubstate.State) (ns []sdk.Notification, err error) {
	ds, err := compose(&m.docs, req.Resource, st)
	if err != nil {
		return nil, err
	}
	for _, w := range req.Watchers {
		view := m.view(w, req.Resource, ds)
		// of the dialogs this watcher sees, not of the document, whose
		// version always differs
		version, state, send := sdk.NextDocument(w, sdk.VersionStartDialog, sdk.Digest(fmt.Appendf(nil, "%q", view)))
		if send {
			ns = append(ns, sdk.Notification{WatcherID: w.ID, ContentType: infoType,
				Body: document(req.Resource, version, view), State: state, StateChanged: true})
		}
	}
	return ns, nil
}

func init() {
	m := &module{}
	m.Handler = pubstate.Handler{ContentType: infoType, Fold: m.fold, Notify: m.notify}
	sdk.Register(m)
}
func main() {}
