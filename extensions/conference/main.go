// Command conference is the "conference" event package (RFC 4575): it
// keeps a merged conference-info document per publication of a conference
// (full documents replace it, partial ones are merged into it), composes
// the publications of a conference into one document, and sends each
// watcher either that document or, with use_partial_states, what changed
// since the watcher's last NOTIFY, with a version of its own.
package main

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/extensions/conference/confinfo"
	"github.com/presenced/presenced/sdk"
)

const (
	infoType = confinfo.MediaType
	cmdReset = "conference_reset"
)

type conference struct {
	partial bool // use_partial_states
}

func (c *conference) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	r := sdk.ReadConfig(cfg, "conference")
	expires := r.Seconds("default_expires", 3600)
	c.partial = r.Bool("use_partial_states", false)
	return sdk.Manifest{
		Packages: []sdk.Package{{Event: "conference", Accept: []string{infoType}, DefaultExpires: expires}},
		Commands: []string{cmdReset},
	}, r.Err()
}

func (c *conference) Publish(req *sdk.Request) (*sdk.Response, error) {
	p := req.Publication
	if err := sdk.CheckContentType(p.ContentType, infoType); err != nil {
		return nil, err
	}
	doc, err := confinfo.Parse(p.Body, req.Resource)
	if err != nil {
		return nil, err
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	merged, err := apply(st, p.ID, doc)
	if err != nil {
		return nil, err
	}
	return c.respond(req, st, true, map[string]*etree.Element{p.ID: merged})
}

// apply folds a parsed publication into st: a full document replaces the
// publication's document whatever its version; a partial one needs a
// version above the stored one and is merged into it. It returns the
// publication's new document.
func apply(st *state, id string, doc *confinfo.Doc) (*etree.Element, error) {
	i := st.find(id)
	var merged *etree.Element
	if doc.State == confinfo.Partial {
		switch {
		case !doc.HasVersion:
			return nil, sdk.Reject(400, "partial document without a version")
		case i < 0:
			return nil, sdk.Reject(400, "partial document version %d before any full one: expected state=\"full\"", doc.Version)
		case doc.Version <= st.pubs[i].version:
			return nil, sdk.Reject(400, "out-of-order partial document: expected version above %d, got %d", st.pubs[i].version, doc.Version)
		}
		stored, err := confinfo.Decode(st.pubs[i].doc)
		if err != nil {
			return nil, fmt.Errorf("stored document of publication %s: %w", id, err)
		}
		confinfo.Merge(stored, doc.Root)
		merged = stored
	} else {
		merged = confinfo.New(doc)
	}
	st.clock++
	p := pub{id: id, doc: confinfo.Canonical(merged), version: doc.Version, modified: st.clock}
	if i < 0 {
		st.pubs = append(st.pubs, p)
	} else {
		st.pubs[i] = p
	}
	return merged, nil
}

func (c *conference) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	i := st.find(req.Publication.ID)
	if i < 0 {
		return c.respond(req, st, false, nil)
	}
	st.pubs = slices.Delete(st.pubs, i, i+1)
	return c.respond(req, st, true, nil)
}

func (c *conference) Render(req *sdk.Request) (*sdk.Response, error) {
	// No Accept means the package default, which is conference-info.
	if err := sdk.CheckAccept(req.Watchers, infoType); err != nil {
		return nil, err
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return c.respond(req, st, false, nil)
}

// Command runs conference_reset, which clears the conference's merged
// state; the SDK runs it for no other name, as the manifest lists no other.
func (c *conference) Command(req *sdk.Request) (*sdk.Response, error) {
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	n := len(st.pubs)
	res, err := c.respond(req, &state{}, len(req.State) > 0, nil)
	if err != nil {
		return nil, err
	}
	res.Reason = fmt.Sprintf("%s: merged state of %d publication(s) cleared, %d watcher(s) notified", req.Resource, n, len(res.Notifications))
	return res, nil
}

// compose is the document watchers see: the publications' documents
// merged in the order they were last changed, so the most recently
// changed one wins where two say different things about the same element.
// With no publication, the empty conference. parsed holds documents
// already parsed, by publication id; compose may change them.
func compose(resource string, st *state, parsed map[string]*etree.Element) (*etree.Element, error) {
	if len(st.pubs) == 0 {
		return confinfo.Empty(resource), nil
	}
	pubs := slices.Clone(st.pubs)
	slices.SortStableFunc(pubs, func(a, b pub) int {
		if c := cmp.Compare(a.modified, b.modified); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	var root *etree.Element
	for _, p := range pubs {
		d, ok := parsed[p.id]
		var err error
		if !ok {
			d, err = confinfo.Decode(p.doc)
		}
		if err != nil {
			return nil, fmt.Errorf("stored document of publication %s: %w", p.id, err)
		}
		if root == nil {
			root = d
			continue
		}
		confinfo.Merge(root, d)
	}
	return root, nil
}

// respond renders st for every watcher given: a full document for a
// watcher that needs one (Full, or no partial states, or a change a
// partial document cannot say), otherwise what changed since its last
// NOTIFY; nothing for a watcher whose document is unchanged.
func (c *conference) respond(req *sdk.Request, st *state, changed bool, parsed map[string]*etree.Element) (*sdk.Response, error) {
	res := &sdk.Response{StateChanged: changed}
	if changed {
		res.State = st.encode()
	}
	if len(req.Watchers) == 0 {
		return res, nil
	}
	doc, err := compose(req.Resource, st, parsed)
	if err != nil {
		return nil, err
	}
	canon := confinfo.Canonical(doc)
	sum := sdk.Digest(canon)
	for _, w := range req.Watchers {
		version, next, send := sdk.NextDocument(w, sdk.VersionStartConference, sum)
		if !send {
			continue
		}
		n := sdk.Notification{WatcherID: w.ID, ContentType: infoType, StateChanged: true}
		var body []byte
		if c.partial && !w.Full {
			if old, err := sentDoc(w.State); err == nil && old != nil {
				if d, ok := confinfo.Diff(old, doc); ok && d != nil {
					body = confinfo.Render(d, confinfo.Partial, version)
					n.Partial = true
				}
			}
		}
		if body == nil {
			body = confinfo.Render(doc, confinfo.Full, version)
		}
		n.Body = body
		if n.State = next; c.partial {
			n.State = appendSentDoc(next, canon)
		}
		res.Notifications = append(res.Notifications, n)
	}
	return res, nil
}

func init() { sdk.Register(&conference{}) }

func main() {}
