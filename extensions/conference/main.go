// Command conference is the "conference" event package (RFC 4575). For now
// it passes documents through: watchers get the most recent live
// publication as it was published. Merging several publications and
// partial notifications come later.
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
)

const (
	infoType = "application/conference-info+xml"
	nsInfo   = "urn:ietf:params:xml:ns:conference-info"
)

type conference struct{}

func (conference) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	expires := uint32(3600)
	for k, v := range cfg {
		switch k {
		case "default_expires":
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || n == 0 {
				return sdk.Manifest{}, fmt.Errorf("config default_expires = %q: want a positive number of seconds", v)
			}
			expires = uint32(n)
		case "use_partial_states":
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return sdk.Manifest{}, fmt.Errorf("config use_partial_states = %q: want true or false", v)
			}
			if b {
				// Accepted so a config written for the merging version loads
				// today; it changes nothing until that version.
				sdk.Log(abi.LogWarn, "use_partial_states = true is not effective yet: watchers get full documents")
			}
		default:
			sdk.Log(abi.LogWarn, fmt.Sprintf("config key %q is unknown to the conference package; ignored", k))
		}
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
	if mediaType(pub.ContentType) != infoType {
		return nil, sdk.Reject(415, "content type %q is not supported, only %s", pub.ContentType, infoType)
	}
	if err := validate(pub.Body, req.Resource); err != nil {
		return nil, err
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	st.push(pub.ID, pub.Body)
	return respond(req, st, true), nil
}

func (conference) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	if req.Publication == nil {
		return nil, errors.New("unpublish without a publication")
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return respond(req, st, st.remove(req.Publication.ID)), nil
}

func (conference) Render(req *sdk.Request) (*sdk.Response, error) {
	for _, w := range req.Watchers {
		if !accepts(w.Accept) {
			return nil, sdk.Reject(406, "watcher accepts %s; this package sends only %s",
				strings.Join(w.Accept, ", "), infoType)
		}
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return respond(req, st, false), nil
}

func validate(body []byte, resource string) error {
	root, err := parseXML(body)
	if err != nil {
		return sdk.Reject(400, "%v", err)
	}
	if root.Tag != "conference-info" || root.NamespaceURI() != nsInfo {
		return sdk.Reject(400, "root element is <%s> in namespace %q, want <conference-info> in %q",
			root.FullTag(), root.NamespaceURI(), nsInfo)
	}
	entity, ok := attr(root, "entity")
	if !ok || strings.TrimSpace(entity) == "" {
		return sdk.Reject(400, "<conference-info> has no entity attribute")
	}
	if !sdk.SameResource(entity, resource) {
		return sdk.Reject(400, "entity %q is not the resource published to, %q", entity, resource)
	}
	return nil
}

// respond sends every watcher the most recent publication as is; with none
// left, a NOTIFY without a body.
func respond(req *sdk.Request, st *state, changed bool) *sdk.Response {
	res := &sdk.Response{StateChanged: changed}
	if changed {
		res.State = st.encode()
	}
	var ctype string
	var body []byte
	if n := len(st.pubs); n > 0 {
		ctype, body = infoType, st.pubs[n-1].body
	}
	for _, w := range req.Watchers {
		res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, ContentType: ctype, Body: body})
	}
	return res
}

// mediaType is the type/subtype of a Content-Type or Accept value, lower
// case, without parameters.
func mediaType(s string) string {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// accepts reports whether a SUBSCRIBE's Accept values let us send
// conference-info; no Accept means the package default, which it is.
func accepts(accept []string) bool {
	if len(accept) == 0 {
		return true
	}
	for _, a := range accept {
		for v := range strings.SplitSeq(a, ",") {
			switch mediaType(v) {
			case infoType, "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

func init() { sdk.Register(conference{}) }

func main() {}
