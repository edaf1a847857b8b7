// Command conference is the "conference" event package (RFC 4575). For now
// it passes documents through: watchers get the most recent live
// publication as it was published. Merging several publications and
// partial notifications come later.
package main

import (
	"errors"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const (
	infoType = "application/conference-info+xml"
	nsInfo   = "urn:ietf:params:xml:ns:conference-info"
)

type conference struct{}

func (conference) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	sdk.WarnUnknownKeys(cfg, "conference", "default_expires", "use_partial_states")
	expires, err := sdk.SecondsKey(cfg, "default_expires", 3600)
	if err != nil {
		return sdk.Manifest{}, err
	}
	partial, err := sdk.BoolKey(cfg, "use_partial_states", false)
	if err != nil {
		return sdk.Manifest{}, err
	}
	if partial {
		// Accepted so a config written for the merging version loads
		// today; it changes nothing until that version.
		sdk.Log(abi.LogWarn, "use_partial_states = true is not effective yet: watchers get full documents")
	}
	return sdk.Manifest{Packages: []sdk.Package{{
		Event: "conference", Accept: []string{infoType}, DefaultExpires: expires,
	}}}, nil
}

func (c conference) Publish(req *sdk.Request) (*sdk.Response, error) {
	pub := req.Publication
	if pub == nil {
		return nil, errors.New("publish without a publication")
	}
	if sdk.MediaType(pub.ContentType) != infoType {
		return nil, sdk.Reject(415, "content type %q is not supported, only %s", pub.ContentType, infoType)
	}
	if _, err := xmldoc.ParseRoot(pub.Body, nsInfo, "conference-info", req.Resource); err != nil {
		return nil, err
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	// Push, not Put: a modified publication becomes the most recent, the
	// one watchers get; the one before it takes over when it is removed.
	st.Push(pub.ID, pub.Body)
	return respond(req, st, true), nil
}

func (conference) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	if req.Publication == nil {
		return nil, errors.New("unpublish without a publication")
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	return respond(req, st, st.Remove(req.Publication.ID)), nil
}

func (conference) Render(req *sdk.Request) (*sdk.Response, error) {
	// No Accept means the package default, which is conference-info.
	if err := sdk.CheckAccept(req.Watchers, infoType); err != nil {
		return nil, err
	}
	st, err := pubstate.Decode(req.State)
	if err != nil {
		return nil, err
	}
	return respond(req, st, false), nil
}

// respond sends every watcher the most recent publication as is; with none
// left, a NOTIFY without a body.
func respond(req *sdk.Request, st *pubstate.State, changed bool) *sdk.Response {
	res := &sdk.Response{StateChanged: changed}
	if changed {
		res.State = st.Encode()
	}
	var ctype string
	var body []byte
	if p, ok := st.Latest(); ok {
		ctype, body = infoType, p.Body
	}
	for _, w := range req.Watchers {
		res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, ContentType: ctype, Body: body})
	}
	return res
}

func init() { sdk.Register(conference{}) }

func main() {}
