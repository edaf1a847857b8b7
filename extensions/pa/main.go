// Command pa is the presence agent: the "presence" event package (RFC 3856)
// serving PIDF documents (RFC 3863, with RPID and the data model of RFC
// 4479/4480 carried through). Every live publication of a presentity is
// kept and watchers get one document composed from all of them.
package main

import (
	"errors"

	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
)

const pidfType = "application/pidf+xml"

// pa holds only the configuration Init gave this instance; resource state
// comes in and goes out with every call.
type pa struct {
	dummy bool
}

func (p *pa) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	sdk.WarnUnknownKeys(cfg, "presence", "default_expires", "dummy_presence")
	expires, err := sdk.SecondsKey(cfg, "default_expires", 3600)
	if err != nil {
		return sdk.Manifest{}, err
	}
	if p.dummy, err = sdk.BoolKey(cfg, "dummy_presence", true); err != nil {
		return sdk.Manifest{}, err
	}
	return sdk.Manifest{Packages: []sdk.Package{{
		Event: "presence", Accept: []string{pidfType}, DefaultExpires: expires,
	}}}, nil
}

func (p *pa) Publish(req *sdk.Request) (*sdk.Response, error) {
	pub := req.Publication
	if pub == nil {
		return nil, errors.New("publish without a publication")
	}
	if sdk.MediaType(pub.ContentType) != pidfType {
		return nil, sdk.Reject(415, "content type %q is not supported, only %s", pub.ContentType, pidfType)
	}
	if err := validate(pub.Body, req.Resource); err != nil {
		return nil, err
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	// Put, not Push: publications are composed in the order they were first
	// published, so a modify keeps its place in the document.
	st.Put(pub.ID, pub.Body)
	return p.respond(req, st, true)
}

func (p *pa) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	if req.Publication == nil {
		return nil, errors.New("unpublish without a publication")
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	return p.respond(req, st, st.Remove(req.Publication.ID))
}

func (p *pa) Render(req *sdk.Request) (*sdk.Response, error) {
	// No Accept means the package default, PIDF (RFC 3856 §6).
	if err := sdk.CheckAccept(req.Watchers, pidfType); err != nil {
		return nil, err
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	return p.respond(req, st, false)
}

// respond renders st once and hands the same bytes to every watcher.
func (p *pa) respond(req *sdk.Request, st *pubstate.State, changed bool) (*sdk.Response, error) {
	res := &sdk.Response{StateChanged: changed}
	if changed {
		res.State = st.Encode()
	}
	if len(req.Watchers) == 0 {
		return res, nil
	}
	var ctype string
	var body []byte
	switch {
	case len(st.Pubs) > 0:
		b, err := compose(req.Resource, st.Pubs)
		if err != nil {
			return nil, err
		}
		ctype, body = pidfType, b
	case p.dummy:
		ctype, body = pidfType, dummy(req.Resource)
	}
	res.Notifications = make([]sdk.Notification, len(req.Watchers))
	for i, w := range req.Watchers {
		res.Notifications[i] = sdk.Notification{WatcherID: w.ID, ContentType: ctype, Body: body}
	}
	return res, nil
}

func init() { sdk.Register(&pa{}) }

func main() {}
