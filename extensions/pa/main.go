// Command pa is the presence agent: the "presence" event package (RFC 3856)
// serving PIDF documents (RFC 3863, with RPID and the data model of RFC
// 4479/4480 carried through). Every live publication of a presentity is
// kept and watchers get one document composed from all of them.
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
)

const pidfType = "application/pidf+xml"

// pa holds only the configuration Init gave this instance; resource state
// comes in and goes out with every call.
type pa struct {
	dummy bool
}

func (p *pa) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	expires := uint32(3600)
	p.dummy = true
	for k, v := range cfg {
		switch k {
		case "default_expires":
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || n == 0 {
				return sdk.Manifest{}, fmt.Errorf("config default_expires = %q: want a positive number of seconds", v)
			}
			expires = uint32(n)
		case "dummy_presence":
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return sdk.Manifest{}, fmt.Errorf("config dummy_presence = %q: want true or false", v)
			}
			p.dummy = b
		default:
			sdk.Log(abi.LogWarn, fmt.Sprintf("config key %q is unknown to the presence package; ignored", k))
		}
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
	if mediaType(pub.ContentType) != pidfType {
		return nil, sdk.Reject(415, "content type %q is not supported, only %s", pub.ContentType, pidfType)
	}
	if err := validate(pub.Body, req.Resource); err != nil {
		return nil, err
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	st.put(pub.ID, pub.Body)
	return p.respond(req, st, true)
}

func (p *pa) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	if req.Publication == nil {
		return nil, errors.New("unpublish without a publication")
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return p.respond(req, st, st.remove(req.Publication.ID))
}

func (p *pa) Render(req *sdk.Request) (*sdk.Response, error) {
	for _, w := range req.Watchers {
		if !accepts(w.Accept) {
			return nil, sdk.Reject(406, "watcher accepts %s; this package sends only %s",
				strings.Join(w.Accept, ", "), pidfType)
		}
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return p.respond(req, st, false)
}

// respond renders st once and hands the same bytes to every watcher.
func (p *pa) respond(req *sdk.Request, st *state, changed bool) (*sdk.Response, error) {
	res := &sdk.Response{StateChanged: changed}
	if changed {
		res.State = st.encode()
	}
	if len(req.Watchers) == 0 {
		return res, nil
	}
	var ctype string
	var body []byte
	switch {
	case len(st.pubs) > 0:
		b, err := compose(req.Resource, st.pubs)
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

// mediaType is the type/subtype of a Content-Type or Accept value, lower
// case, without parameters.
func mediaType(s string) string {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// accepts reports whether a SUBSCRIBE's Accept values let us send PIDF. No
// Accept at all means the package default (RFC 3856 §6), which is PIDF.
func accepts(accept []string) bool {
	if len(accept) == 0 {
		return true
	}
	for _, a := range accept {
		// A host may pass a header value whole, commas and all.
		for v := range strings.SplitSeq(a, ",") {
			switch mediaType(v) {
			case pidfType, "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

func init() { sdk.Register(&pa{}) }

func main() {}
