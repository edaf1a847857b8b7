// Command pa is the presence agent: the "presence" event package (RFC 3856)
// serving PIDF documents (RFC 3863, with RPID and the data model of RFC
// 4479/4480), composed from every live publication of a presentity and its
// registrar bindings, behind a watcher authorization policy; and its
// watcher-info package "presence.winfo" (RFC 3857/3858).
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/xmldoc"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	presenceEvent = "presence"
	pidfType      = "application/pidf+xml"
)

// pa holds the configuration Init gave this instance and the memory its
// XML reads reuse from call to call (a call is one at a time in an
// instance); resource state comes in and goes out with every call.
type pa struct {
	dummy   bool
	lenient bool
	policy  policy
	docs    xmldoc.Reader
}

func (p *pa) Init(name string, cfg sdk.Config) (sdk.Manifest, error) {
	c := sdk.ReadConfig(cfg, presenceEvent)
	expires := c.Seconds("default_expires", 3600)
	minExp, maxExp := optionalSeconds(c, "min_expires"), optionalSeconds(c, "max_expires")
	p.dummy, p.lenient = c.Bool("dummy_presence", true), c.Bool("lenient_basic", false)
	p.policy = parsePolicy(c)
	if err := c.Err(); err != nil {
		return sdk.Manifest{}, err
	}
	switch {
	case minExp != 0 && maxExp != 0 && minExp > maxExp:
		return sdk.Manifest{}, fmt.Errorf("config min_expires = %d is above max_expires = %d", minExp, maxExp)
	case minExp != 0 && expires < minExp, maxExp != 0 && expires > maxExp:
		return sdk.Manifest{}, fmt.Errorf("config default_expires = %d is outside min_expires..max_expires; set default_expires within them", expires)
	}
	return sdk.Manifest{
		Packages: []sdk.Package{{
			Event: presenceEvent, Accept: []string{pidfType}, DefaultExpires: expires,
			Bindings: true, MinExpires: minExp, MaxExpires: maxExp,
		}, {
			Event: winfoEvent, DefaultExpires: expires, WatcherInfoOf: presenceEvent,
			MinExpires: minExp, MaxExpires: maxExp,
		}},
		Commands: []string{"approve", "reject"},
	}, nil
}

// optionalSeconds reads a number of seconds where 0 or absent means unset.
func optionalSeconds(c *sdk.ConfigReader, key string) uint32 {
	v, ok := c.Value(key)
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		c.Fail(fmt.Errorf("config %s = %q: want a number of seconds (0 for unset)", key, v))
	}
	return uint32(n)
}

func (p *pa) Publish(req *sdk.Request) (*sdk.Response, error) {
	pub := req.Publication
	if err := sdk.CheckContentType(pub.ContentType, pidfType); err != nil {
		return nil, err
	}
	body, err := validate(&p.docs, pub.Body, req.Resource, p.lenient)
	if err != nil {
		return nil, err
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	st.put(pub.ID, body)
	return p.respond(req, st, true)
}

func (p *pa) Unpublish(req *sdk.Request) (*sdk.Response, error) {
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return p.respond(req, st, st.remove(req.Publication.ID))
}

func (p *pa) Render(req *sdk.Request) (*sdk.Response, error) {
	// No Accept means the package default, PIDF (RFC 3856 §6).
	if err := sdk.CheckAccept(req.Watchers, pidfType); err != nil {
		return nil, err
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	return p.respond(req, st, false)
}

// qvalue is RFC 3261's, which PIDF's priority is too.
var qvalue = regexp.MustCompile(`^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$`)

func (p *pa) Binding(req *sdk.Request) (*sdk.Response, error) {
	b := req.Binding
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	q := strings.TrimSpace(b.Q)
	if q != "" && !qvalue.MatchString(q) {
		sdk.Log(sdk.LogWarn, fmt.Sprintf("binding %s of %s: q=%q is not a qvalue; contact sent without a priority", b.ID, req.Resource, b.Q))
		q = ""
	}
	changed := st.setBinding(binding{ID: b.ID, Contact: b.Contact, Q: q, ExpiresUnix: b.ExpiresUnix}, b.Removed)
	return p.respond(req, st, changed)
}

// Command runs an admin command on one presentity: approve or reject a
// watcher (a URI, or a domain for all its watchers), remembered in the
// presentity's state for every later subscription. The SDK runs it only
// for the commands the manifest lists.
func (p *pa) Command(req *sdk.Request) (*sdk.Response, error) {
	c := req.Command
	arg, ok := c.Args["watcher"]
	if !ok || strings.TrimSpace(arg) == "" {
		return nil, sdk.Reject(400, "%s needs a watcher argument (a URI or a domain)", c.Name)
	}
	who, err := sdk.WatcherEntry(arg)
	if err != nil {
		return nil, sdk.Reject(400, "%s: watcher %v", c.Name, err)
	}
	st, err := decodeState(req.State)
	if err != nil {
		return nil, err
	}
	add, drop := &st.Allow, &st.Block
	if c.Name == "reject" {
		add, drop = drop, add
	}
	changed := false
	if !slices.Contains(*add, who) {
		*add = append(*add, who)
		changed = true
	}
	if i := slices.Index(*drop, who); i >= 0 {
		*drop = slices.Delete(*drop, i, i+1)
		changed = true
	}
	res := &sdk.Response{StateChanged: changed}
	if changed {
		res.State = st.encode()
	}
	var r renderer
	for _, w := range req.Watchers {
		if !(sdk.WatcherList{who}).Has(w.URI, req.Resource) {
			continue
		}
		switch {
		case c.Name == "approve" && w.Status == sdk.StatusPending:
			n, err := r.active(p, req, st, w, sdk.StatusActive)
			if err != nil {
				return nil, err
			}
			res.Notifications = append(res.Notifications, n)
		case c.Name == "reject" && (w.Status == sdk.StatusPending || w.Status == sdk.StatusActive):
			res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, Status: sdk.StatusRejected})
		}
	}
	return res, nil
}

// respond returns the new state, if changed, and what each watcher is
// sent: a new watcher is decided by the policy; a rejected one is told so,
// a pending one gets a NOTIFY without a body, an active one the document,
// rendered once for all of them. A watcher already told what it would be
// told now (the same document, or still pending) is sent nothing: an XMPP
// reconnection, a probe's answer or a publication refreshed unchanged must
// not repeat a NOTIFY. A new or refreshed subscription (full) always is.
func (p *pa) respond(req *sdk.Request, st *state, changed bool) (*sdk.Response, error) {
	res := newResponse(len(req.Watchers))
	res.StateChanged = changed
	if changed {
		res.State = st.encode()
	}
	var r renderer
	for _, w := range req.Watchers {
		status, decided := w.Status, ""
		if status == "" {
			status = p.policy.decide(st, req.Resource, w.URI)
			decided = status
		}
		switch status {
		case sdk.StatusActive:
			n, err := r.active(p, req, st, w, decided)
			if err != nil {
				return nil, err
			}
			if decided == "" && !w.Full && sentBefore(w, n) {
				continue
			}
			if w.Full && (decided == "" || p.policy.uniform(st)) {
				// Any watcher as this one gets this document: the host may
				// answer the next new or refreshed subscription without a
				// call (ABI.md §6).
				n.ReuseUntilUnixNano = r.until
			}
			res.Notifications = append(res.Notifications, n)
		case sdk.StatusPending:
			if decided == "" && !w.Full {
				continue
			}
			res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, Status: decided})
		default:
			// Rejected, or a status this version does not know: never
			// presence data.
			res.Notifications = append(res.Notifications, sdk.Notification{WatcherID: w.ID, Status: decided})
		}
	}
	return res, nil
}

// reply is a response with room for one notification, so that the
// usual call, a render for a new subscription, allocates both at once: in
// a guest the second allocation cost more than the notification's bytes.
type reply struct {
	sdk.Response
	one [1]sdk.Notification
}

// newResponse returns a response with room for n notifications.
func newResponse(n int) *sdk.Response {
	if n > 1 {
		return &sdk.Response{Notifications: make([]sdk.Notification, 0, n)}
	}
	r := &reply{}
	r.Notifications = r.one[:0]
	return &r.Response
}

// renderer composes the document once per call, when an active watcher
// first needs it.
type renderer struct {
	done  bool
	ctype string
	body  []byte
	state []byte // the per-watcher state of a watcher sent this document
	until int64  // the document holds until then (unix ns): a shown binding expires
}

// The per-watcher state of presence is what that watcher was last sent,
// as a digest (the host keeps it with the NOTIFY that carried it, ABI §6):
//
//	message Watcher { bytes sent = 1; }  // sdk.Digest of content type, NUL, body
const fWatcherSent = 1

func (r *renderer) active(p *pa, req *sdk.Request, st *state, w sdk.Watcher, status string) (sdk.Notification, error) {
	if !r.done {
		binds := st.liveBindings(req.NowUnixNano)
		switch {
		case len(st.Pubs) > 0 || len(binds) > 0 || st.hasXMPP():
			b, err := composeAll(&p.docs, req.Resource, st, binds)
			if err != nil {
				return sdk.Notification{}, err
			}
			r.ctype, r.body = pidfType, b
		case p.dummy:
			r.ctype, r.body = pidfType, dummy(req.Resource)
		}
		r.state = watcherState(r.ctype, r.body)
		r.until = math.MaxInt64
		for _, b := range binds {
			if b.ExpiresUnix > 0 {
				r.until = min(r.until, b.ExpiresUnix*1e9)
			}
		}
		r.done = true
	}
	return sdk.Notification{WatcherID: w.ID, ContentType: r.ctype, Body: r.body, Status: status,
		State: r.state, StateChanged: true}, nil
}

// watcherState is the per-watcher state of a watcher sent body, in one
// allocation: the digest is XXH64, sdk.Digest's, of the content type, a
// NUL and the body, streamed rather than hashed from a joined copy, which
// was an allocation of the document's size at every render.
func watcherState(ctype string, body []byte) []byte {
	var d xxhash.Digest
	d.Reset()
	d.WriteString(ctype)
	d.Write([]byte{0})
	d.Write(body)
	st := make([]byte, 0, 10)
	st = protowire.AppendTag(st, fWatcherSent, protowire.BytesType)
	st = protowire.AppendVarint(st, 8)
	return binary.BigEndian.AppendUint64(st, d.Sum64())
}

// sentBefore reports whether w was last sent n's document.
func sentBefore(w sdk.Watcher, n sdk.Notification) bool {
	return len(w.State) > 0 && bytes.Equal(w.State, n.State)
}

func init() {
	p := &pa{}
	mux := sdk.NewMux(p.Init)
	mux.Handle(presenceEvent, p)
	mux.Handle(winfoEvent, winfo{})
	sdk.Register(mux)
}

func main() {}
