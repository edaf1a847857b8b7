package siptest

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// callSeq numbers Call-IDs and tags, unique however many tests run in
// parallel.
var callSeq atomic.Int64

// NewCallID is a Call-ID no other request of the test process has.
func NewCallID() string {
	return fmt.Sprintf("call-%d-%d@test", time.Now().UnixNano(), callSeq.Add(1))
}

// Subscription is the subscriber's side of a dialog. A test may build one
// by hand for a dialog the server has from elsewhere (a store it restored).
type Subscription struct {
	Peer     *Peer
	CallID   string
	FromTag  string // the subscriber's tag
	ToTag    string // the server's tag, from its 2xx
	CSeq     int    // of the last SUBSCRIBE sent
	Event    string // the Event header, id parameter included
	Resource string
}

// Subscribe sends an initial SUBSCRIBE from sip:watcher@example.com for
// event to resource, with the extra header lines given (Expires, Accept
// ...), and returns the dialog and the final response.
func (p *Peer) Subscribe(event, resource string, extra ...string) (*Subscription, *sip.Response) {
	p.t.Helper()
	s := &Subscription{Peer: p, CallID: NewCallID(), FromTag: "w" + strconv.FormatInt(callSeq.Load(), 10), CSeq: 1, Event: event, Resource: resource}
	res := p.Send(Request{Method: "SUBSCRIBE", URI: resource, Headers: append([]string{
		"From: <sip:watcher@example.com>;tag=" + s.FromTag,
		"To: <" + resource + ">",
		"Call-ID: " + s.CallID,
		"CSeq: 1 SUBSCRIBE",
		p.Contact(),
		"Event: " + event,
	}, extra...)})
	s.ToTag = Tag(Header(res, "To"))
	return s, res
}

// Again sends an in-dialog SUBSCRIBE: a refresh or, with "Expires: 0", the
// end of the subscription.
func (s *Subscription) Again(extra ...string) *sip.Response {
	s.Peer.t.Helper()
	s.CSeq++
	return s.Peer.Send(Request{Method: "SUBSCRIBE", URI: "sip:presenced@" + s.Peer.serverStr, Headers: append([]string{
		"From: <sip:watcher@example.com>;tag=" + s.FromTag,
		"To: <" + s.Resource + ">;tag=" + s.ToTag,
		"Call-ID: " + s.CallID,
		fmt.Sprintf("CSeq: %d SUBSCRIBE", s.CSeq),
		s.Peer.Contact(),
		"Event: " + s.Event,
	}, extra...)})
}

// Publish sends a PUBLISH of body (of Content-Type ctype; none when ctype
// is "") for event on resource, from the resource itself, with the extra
// header lines given (SIP-If-Match, Expires ...), and returns the final
// response.
func (p *Peer) Publish(event, resource, ctype, body string, extra ...string) *sip.Response {
	p.t.Helper()
	return p.Send(PublishRequest(event, resource, ctype, body, extra...))
}

// PublishRequest is the request Publish sends, for a test that sends it
// with SendRaw and does not wait for the answer.
func PublishRequest(event, resource, ctype, body string, extra ...string) Request {
	h := append([]string{
		"From: <" + resource + ">;tag=pub" + strconv.FormatInt(callSeq.Load(), 10),
		"To: <" + resource + ">",
		"Call-ID: " + NewCallID(),
		"CSeq: 1 PUBLISH",
		"Event: " + event,
	}, extra...)
	if ctype != "" {
		h = append(h, "Content-Type: "+ctype)
	}
	return Request{Method: "PUBLISH", URI: resource, Headers: h, Body: body}
}

// Registration is a registrar binding's Call-ID: the REGISTERs of one
// device for one address of record.
type Registration struct {
	Peer   *Peer
	AOR    string
	CallID string
	CSeq   int // of the last REGISTER sent
}

// Registration starts a registration of aor from p, in a Call-ID of its
// own.
func (p *Peer) Registration(aor string) *Registration {
	return &Registration{Peer: p, AOR: aor, CallID: NewCallID()}
}

// Send sends the next REGISTER with the header lines given (Contact,
// Expires ...) and returns the final response.
func (r *Registration) Send(extra ...string) *sip.Response {
	r.Peer.t.Helper()
	r.CSeq++
	return r.Peer.Send(Request{Method: "REGISTER", URI: "sip:example.com", Headers: append([]string{
		"From: <" + r.AOR + ">;tag=reg1", "To: <" + r.AOR + ">", "Call-ID: " + r.CallID,
		fmt.Sprintf("CSeq: %d REGISTER", r.CSeq)}, extra...)})
}

// WantCode fails the test unless res has status code, naming what came
// instead and its Warning.
func WantCode(tb testing.TB, res *sip.Response, code int) {
	tb.Helper()
	if res.StatusCode != code {
		tb.Fatalf("got %d %s (Warning: %s), want %d", res.StatusCode, res.Reason, Header(res, "Warning"), code)
	}
}

// Header is the value of m's first header called name, or "".
func Header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// Tag is the tag parameter of a From or To header value, or "".
func Tag(h string) string {
	_, t, _ := strings.Cut(h, "tag=")
	t, _, _ = strings.Cut(t, ";")
	return t
}
