package server_test

import (
	"context"
	"fmt"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest"
)

const echoPkg = "github.com/presenced/presenced/internal/extension/testdata/echo"

// fixture is a real server on 127.0.0.1 with real wasm modules.
type fixture struct {
	srv   *server.Server
	store store.Store
	addr  map[string]string // "UDP"/"TCP" -> host:port
	mods  []*extension.Module
}

func start(t testing.TB, st store.Store, mods ...*extension.Module) *fixture {
	t.Helper()
	if st == nil {
		st = store.NewMemory()
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(server.Options{
		Listen: []server.Listener{
			{Transport: "udp", Address: "127.0.0.1:0"},
			{Transport: "tcp", Address: "127.0.0.1:0"},
		},
		Subscription: server.Bounds{Min: 1, Max: 3600},
		Publication:  server.Bounds{Min: 1, Max: 3600},
		Registrar:    server.RegistrarBounds{Min: 1, Max: 3600, Default: 3600},
		Modules:      mods,
		Store:        st,
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f := &fixture{srv: srv, store: st, addr: map[string]string{}, mods: mods}
	for _, a := range srv.Addrs() {
		tr, hp, _ := strings.Cut(a, ":")
		f.addr[strings.ToUpper(tr)] = hp
	}
	return f
}

func (f *fixture) peer(t testing.TB, transport string) *peer {
	return newPeer(t, transport, f.addr[transport])
}

// callSeq numbers Call-IDs and tags; torture cases run in parallel.
var callSeq atomic.Int64

func newCallID() string {
	return fmt.Sprintf("call-%d-%d@test", time.Now().UnixNano(), callSeq.Add(1))
}

// subscription is the subscriber's side of a dialog.
type subscription struct {
	p        *peer
	callID   string
	fromTag  string
	toTag    string
	cseq     int
	event    string
	resource string
}

func subscribe(t testing.TB, p *peer, event, resource string, extra ...string) (*subscription, *sip.Response) {
	t.Helper()
	s := &subscription{p: p, callID: newCallID(), fromTag: "w" + strconv.FormatInt(callSeq.Load(), 10), cseq: 1, event: event, resource: resource}
	res := p.send(msg{method: "SUBSCRIBE", uri: resource, headers: append([]string{
		"From: <sip:watcher@example.com>;tag=" + s.fromTag,
		"To: <" + resource + ">",
		"Call-ID: " + s.callID,
		"CSeq: 1 SUBSCRIBE",
		p.contact(),
		"Event: " + event,
	}, extra...)})
	s.toTag = tag(hdr(res, "To"))
	return s, res
}

// again sends an in-dialog SUBSCRIBE (refresh or, with Expires: 0, end).
func (s *subscription) again(extra ...string) *sip.Response {
	s.cseq++
	return s.p.send(msg{method: "SUBSCRIBE", uri: "sip:presenced@" + s.p.serverStr, headers: append([]string{
		"From: <sip:watcher@example.com>;tag=" + s.fromTag,
		"To: <" + s.resource + ">;tag=" + s.toTag,
		"Call-ID: " + s.callID,
		fmt.Sprintf("CSeq: %d SUBSCRIBE", s.cseq),
		s.p.contact(),
		"Event: " + s.event,
	}, extra...)})
}

func publish(t testing.TB, p *peer, event, resource, ctype, body string, extra ...string) *sip.Response {
	t.Helper()
	h := append([]string{
		"From: <" + resource + ">;tag=pub" + strconv.FormatInt(callSeq.Load(), 10),
		"To: <" + resource + ">",
		"Call-ID: " + newCallID(),
		"CSeq: 1 PUBLISH",
		"Event: " + event,
	}, extra...)
	if ctype != "" {
		h = append(h, "Content-Type: "+ctype)
	}
	return p.send(msg{method: "PUBLISH", uri: resource, headers: h, body: body})
}

func wantCode(t testing.TB, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("got %d %s (Warning: %s), want %d", res.StatusCode, res.Reason, hdr(res, "Warning"), code)
	}
}

func echo(t testing.TB) *extension.Module { return extensiontest.Load(t, echoPkg, nil) }

const alice = "sip:alice@example.com"

// The whole life of a subscription and a publication, over each transport.
func TestSubscriptionLifecycle(t *testing.T) {
	f := start(t, nil, echo(t))
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			res := alice + strings.ToLower(tr)
			pub := f.peer(t, tr)
			watcher := f.peer(t, tr)

			r := publish(t, pub, "echo", res, "text/plain", "hello")
			wantCode(t, r, 200)
			etag := hdr(r, "SIP-ETag")
			if etag == "" || hdr(r, "Expires") != "60" {
				t.Fatalf("PUBLISH 200 lacks SIP-ETag or Expires 60:\n%s", r)
			}

			sub, r := subscribe(t, watcher, "echo;id=42", res, "Expires: 600")
			wantCode(t, r, 200)
			if hdr(r, "Expires") != "600" || sub.toTag == "" || hdr(r, "Contact") == "" {
				t.Fatalf("SUBSCRIBE 200:\n%s", r)
			}
			n := watcher.notify()
			if string(n.Body()) != "hello" || !strings.HasPrefix(hdr(n, "Subscription-State"), "active;expires=") ||
				hdr(n, "Event") != "echo;id=42" || n.CSeq().SeqNo != 1 {
				t.Fatalf("first NOTIFY:\n%s", n)
			}
			if n.Recipient.User != "watcher" || tag(hdr(n, "From")) != sub.toTag || tag(hdr(n, "To")) != sub.fromTag ||
				hdr(n, "Call-ID") != sub.callID {
				t.Fatalf("NOTIFY is not in the dialog:\n%s", n)
			}

			// modify: every watcher hears, CSeq rises by one
			r = publish(t, pub, "echo", res, "text/plain", "again", "SIP-If-Match: "+etag)
			wantCode(t, r, 200)
			if next := hdr(r, "SIP-ETag"); next == "" || next == etag {
				t.Fatalf("modify kept ETag %q", etag)
			}
			etag = hdr(r, "SIP-ETag")
			n = watcher.notify()
			if string(n.Body()) != "again" || n.CSeq().SeqNo != 2 {
				t.Fatalf("NOTIFY after modify:\n%s", n)
			}

			// refresh without body: new ETag, no NOTIFY
			r = publish(t, pub, "echo", res, "", "", "SIP-If-Match: "+etag, "Expires: 120")
			wantCode(t, r, 200)
			if hdr(r, "Expires") != "120" {
				t.Fatalf("refresh Expires = %q", hdr(r, "Expires"))
			}
			watcher.quiet(200 * time.Millisecond)
			// the old ETag is gone
			wantCode(t, publish(t, pub, "echo", res, "", "", "SIP-If-Match: "+etag), 412)
			etag = hdr(r, "SIP-ETag")

			// refresh of the subscription: 200 and a full NOTIFY
			r = sub.again("Expires: 300")
			wantCode(t, r, 200)
			n = watcher.notify()
			if string(n.Body()) != "again" || n.CSeq().SeqNo != 3 || !strings.HasPrefix(hdr(n, "Subscription-State"), "active") {
				t.Fatalf("NOTIFY after refresh:\n%s", n)
			}

			// removal of the publication: watchers see the empty state
			r = publish(t, pub, "echo", res, "", "", "SIP-If-Match: "+etag, "Expires: 0")
			wantCode(t, r, 200)
			if hdr(r, "Expires") != "0" {
				t.Fatalf("removal Expires = %q", hdr(r, "Expires"))
			}
			n = watcher.notify()
			if len(n.Body()) != 0 || n.CSeq().SeqNo != 4 {
				t.Fatalf("NOTIFY after removal:\n%s", n)
			}

			// unsubscribe
			r = sub.again("Expires: 0")
			wantCode(t, r, 200)
			n = watcher.notify()
			if hdr(n, "Subscription-State") != "terminated;reason=timeout" || n.CSeq().SeqNo != 5 {
				t.Fatalf("final NOTIFY:\n%s", n)
			}
			// the dialog is gone
			wantCode(t, sub.again("Expires: 60"), 481)
		})
	}
}

func TestSubscriptionExpires(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "UDP")
	_, r := subscribe(t, w, "echo", alice, "Expires: 1")
	wantCode(t, r, 200)
	w.notify()
	n := w.notify()
	if hdr(n, "Subscription-State") != "terminated;reason=timeout" {
		t.Fatalf("expiry NOTIFY:\n%s", n)
	}
}

func TestPublicationExpires(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "short-lived", "Expires: 1"), 200)
	_, r := subscribe(t, w, "echo", alice)
	wantCode(t, r, 200)
	if n := w.notify(); string(n.Body()) != "short-lived" {
		t.Fatalf("first NOTIFY:\n%s", n)
	}
	if n := w.notify(); len(n.Body()) != 0 {
		t.Fatalf("NOTIFY after expiry still has a body:\n%s", n)
	}
}

func TestSubscribeDefaultsAndBounds(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "UDP")
	_, r := subscribe(t, w, "echo", alice)
	wantCode(t, r, 200)
	if hdr(r, "Expires") != "60" { // the echo package's default
		t.Fatalf("default Expires = %q", hdr(r, "Expires"))
	}
	_, r = subscribe(t, w, "echo", alice, "Expires: 999999")
	wantCode(t, r, 200)
	if hdr(r, "Expires") != "3600" {
		t.Fatalf("clamped Expires = %q", hdr(r, "Expires"))
	}
	// a fetch: 200, one terminated NOTIFY, nothing kept
	fetch, r := subscribe(t, w, "echo", alice, "Expires: 0")
	wantCode(t, r, 200)
	if n := w.notifyIn(fetch.callID); hdr(n, "Subscription-State") != "terminated;reason=timeout" {
		t.Fatalf("fetch NOTIFY:\n%s", n)
	}
}

func TestRefusals(t *testing.T) {
	f := start(t, nil, echo(t))
	p := f.peer(t, "UDP")
	base := func(method string) []string {
		return []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">", "Call-ID: " + newCallID(),
			"CSeq: 1 " + method, p.contact()}
	}
	cases := []struct {
		name    string
		m       msg
		code    int
		header  string // must be present
		warning string // substring of Warning
	}{
		{"unknown package", msg{"SUBSCRIBE", alice, append(base("SUBSCRIBE"), "Event: dialog"), ""}, 489, "Allow-Events", "not served"},
		{"unknown package publish", msg{"PUBLISH", alice, append(base("PUBLISH"), "Event: dialog", "Content-Type: text/plain"), "x"}, 489, "Allow-Events", ""},
		{"too brief", msg{"SUBSCRIBE", alice, append(base("SUBSCRIBE"), "Event: echo", "Expires: 0"), ""}, 200, "", ""},
		{"missing Event", msg{"SUBSCRIBE", alice, base("SUBSCRIBE"), ""}, 400, "Warning", "missing Event"},
		{"bad Expires", msg{"SUBSCRIBE", alice, append(base("SUBSCRIBE"), "Event: echo", "Expires: soon"), ""}, 400, "Warning", "bad Expires"},
		{"no Contact", msg{"SUBSCRIBE", alice, base("SUBSCRIBE")[:4], ""}, 400, "Warning", ""},
		{"no From tag", msg{"SUBSCRIBE", alice, append([]string{"From: <sip:bob@example.com>", "To: <" + alice + ">", "Call-ID: x1", "CSeq: 1 SUBSCRIBE", p.contact()}, "Event: echo"), ""}, 400, "Warning", "tag"},
		{"no To", msg{"SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "Call-ID: x2", "CSeq: 1 SUBSCRIBE", p.contact(), "Event: echo"}, ""}, 400, "Warning", "To"},
		{"no Call-ID", msg{"SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">", "CSeq: 1 SUBSCRIBE", p.contact(), "Event: echo"}, ""}, 400, "Warning", "Call-ID"},
		{"CSeq method", msg{"SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">", "Call-ID: x3", "CSeq: 1 INVITE", p.contact(), "Event: echo"}, ""}, 400, "Warning", "CSeq"},
		{"unknown dialog", msg{"SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">;tag=nope", "Call-ID: x4", "CSeq: 2 SUBSCRIBE", p.contact(), "Event: echo"}, ""}, 481, "", ""},
		{"publish without body or If-Match", msg{"PUBLISH", alice, append(base("PUBLISH"), "Event: echo"), ""}, 400, "Warning", "SIP-If-Match"},
		{"unknown ETag", msg{"PUBLISH", alice, append(base("PUBLISH"), "Event: echo", "SIP-If-Match: nosuchtag"), ""}, 412, "", ""},
		{"unsupported type", msg{"PUBLISH", alice, append(base("PUBLISH"), "Event: echo", "Content-Type: application/json"), "{}"}, 415, "Accept", ""},
		{"body without type", msg{"PUBLISH", alice, append(base("PUBLISH"), "Event: echo"), "x"}, 400, "Warning", "Content-Type"},
		{"module refuses", msg{"PUBLISH", alice, append(base("PUBLISH"), "Event: echo", "Content-Type: text/plain"), "bad"}, 400, "Warning", "bad body"},
		{"no user part", msg{"PUBLISH", "sip:example.com", append(base("PUBLISH"), "Event: echo", "Content-Type: text/plain"), "x"}, 404, "Warning", "user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := p.send(c.m)
			wantCode(t, r, c.code)
			if c.header != "" && hdr(r, c.header) == "" {
				t.Fatalf("no %s header:\n%s", c.header, r)
			}
			if !strings.Contains(hdr(r, "Warning"), c.warning) {
				t.Fatalf("Warning %q does not say %q", hdr(r, "Warning"), c.warning)
			}
		})
	}
	p.notify() // the one from "too brief" (a fetch)

	// 423 needs a minimum above 1
	f2 := startWith(t, server.Options{Listen: []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 60, Max: 3600}, Publication: server.Bounds{Min: 60, Max: 3600},
		Modules: f.mods})
	p2 := newPeer(t, "UDP", addrOf(f2, "udp"))
	_, r := subscribe(t, p2, "echo", alice, "Expires: 5")
	wantCode(t, r, 423)
	if hdr(r, "Min-Expires") != "60" {
		t.Fatalf("423 without Min-Expires: 60:\n%s", r)
	}
	wantCode(t, publish(t, p2, "echo", alice, "text/plain", "x", "Expires: 5"), 423)
}

// A module that traps fails that request with a 500; the next succeeds.
func TestModuleTrapIs500(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	_, r := subscribe(t, w, "echo", alice)
	wantCode(t, r, 200)
	w.notify()
	r = publish(t, p, "echo", alice, "text/plain", "panic")
	wantCode(t, r, 500)
	if !strings.Contains(hdr(r, "Warning"), "extension echo failed") {
		t.Fatalf("500 Warning = %q", hdr(r, "Warning"))
	}
	w.quiet(200 * time.Millisecond) // nothing half-written reached watchers
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "fine"), 200)
	if n := w.notify(); string(n.Body()) != "fine" {
		t.Fatalf("NOTIFY after recovery:\n%s", n)
	}
}

// A NOTIFY answered 481 ends the subscription.
func TestNotify481EndsSubscription(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	sub, r := subscribe(t, w, "echo", alice)
	wantCode(t, r, 200)
	w.notify()
	w.notifyCode.Store(481)
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "one"), 200)
	w.notify() // answered 481
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "two"), 200)
	w.quiet(300 * time.Millisecond)
	w.notifyCode.Store(200)
	wantCode(t, sub.again(), 481)
}

// The route set comes from Record-Route, in order, and the NOTIFY goes to
// its first entry.
func TestRouteSet(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "UDP")
	_, r := subscribe(t, w, "echo", alice,
		"Record-Route: <sip:"+w.local+";lr>", "Record-Route: <sip:proxy2.example.com;lr>")
	wantCode(t, r, 200)
	n := w.notify()
	routes := n.GetHeaders("Route")
	if len(routes) != 2 || !strings.Contains(routes[0].Value(), w.local) || !strings.Contains(routes[1].Value(), "proxy2") {
		t.Fatalf("NOTIFY routes = %v", routes)
	}
}

// Over TCP the NOTIFY comes back on the subscriber's connection even when
// its Contact points nowhere.
func TestTCPNotifyUsesTheInboundConnection(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "TCP")
	res := w.send(msg{method: "SUBSCRIBE", uri: alice, headers: []string{
		"From: <sip:watcher@example.com>;tag=nat1", "To: <" + alice + ">", "Call-ID: " + newCallID(),
		"CSeq: 1 SUBSCRIBE", "Contact: <sip:watcher@127.0.0.1:9;transport=tcp>", "Event: echo"}})
	wantCode(t, res, 200)
	if n := w.notify(); n.Recipient.Port != 9 {
		t.Fatalf("NOTIFY request-URI should still be the Contact:\n%s", n)
	}
}

// A NOTIFY too large for UDP (RFC 3261 §18.1.1: over 1300 bytes) goes to
// the same Contact over TCP.
func TestLargeNotifyMovesToTCP(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	ln, err := net.Listen("tcp", w.local) // the subscriber's Contact host:port, over TCP
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *sip.Request, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tp := &peer{t: t, transport: "TCP", conn: c, responses: make(chan *sip.Response, 4), notifies: make(chan *sip.Request, 4)}
		tp.notifyCode.Store(200)
		go tp.readTCP()
		got <- tp.notify()
	}()
	_, r := subscribe(t, w, "echo", alice)
	wantCode(t, r, 200)
	w.notify() // small: over UDP
	big := strings.Repeat("x", 2000)
	wantCode(t, publish(t, p, "echo", alice, "text/plain", big), 200)
	select {
	case n := <-got:
		if string(n.Body()) != big || n.CSeq().SeqNo != 2 {
			t.Fatalf("NOTIFY over TCP: CSeq %d, %d bytes", n.CSeq().SeqNo, len(n.Body()))
		}
	case <-time.After(waitFor):
		t.Fatal("no NOTIFY over TCP")
	}
}

// With a coalescing window, changes within it of the watcher's last NOTIFY
// (here, its first) reach it as one NOTIFY of the last state, not one
// each; the final NOTIFY is never held back or dropped.
func TestNotifyCoalescing(t *testing.T) {
	m, err := extension.Load(context.Background(), extension.Spec{Name: "echo", Path: sdktest.Build(t, echoPkg),
		MemoryLimitMB: 64, CallTimeout: 2 * time.Second, Instances: 2, Coalesce: map[string]time.Duration{"echo": 400 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	f := start(t, nil, m)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := publish(t, p, "echo", alice, "text/plain", "v0")
	wantCode(t, r, 200)
	etag := hdr(r, "SIP-ETag")
	sub, r := subscribe(t, w, "echo", alice, "Expires: 600")
	wantCode(t, r, 200)
	if n := w.notify(); string(n.Body()) != "v0" {
		t.Fatalf("first NOTIFY:\n%s", n)
	}
	for i := 1; i <= 5; i++ {
		r := publish(t, p, "echo", alice, "text/plain", fmt.Sprintf("v%d", i), "SIP-If-Match: "+etag)
		wantCode(t, r, 200)
		etag = hdr(r, "SIP-ETag")
	}
	n := w.notify()
	if string(n.Body()) != "v5" || n.CSeq().SeqNo != 2 {
		t.Fatalf("after the burst, want one NOTIFY of v5 with CSeq 2:\n%s", n)
	}
	w.quiet(600 * time.Millisecond)
	// an unsubscribe is final: sent at once, whatever the window
	if r := sub.again("Expires: 0"); r.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", r.StatusCode)
	}
	if n := w.notify(); hdr(n, "Subscription-State") != "terminated;reason=timeout" || n.CSeq().SeqNo != 3 {
		t.Fatalf("final NOTIFY:\n%s", n)
	}
}

// heldStore holds the first commit of a new subscription until released,
// so a test can change the presentity while that SUBSCRIBE commits.
type heldStore struct {
	store.Store
	held, release chan struct{}
	once          sync.Once
}

func (h *heldStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Subscriptions) > 0 {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return h.Store.Commit(ctx, b)
}

// A SUBSCRIBE commits without its presentity's lock (so SUBSCRIBEs to one
// presentity share group commits): a PUBLISH meanwhile is not held up, and
// the new watcher's first NOTIFY has the state after it, not before.
func TestChangeDuringSubscribeCommit(t *testing.T) {
	st := &heldStore{Store: store.NewMemory(), held: make(chan struct{}), release: make(chan struct{})}
	f := start(t, st, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := publish(t, p, "echo", alice, "text/plain", "v1")
	wantCode(t, r, 200)
	etag := hdr(r, "SIP-ETag")
	sub := &subscription{p: w, callID: newCallID(), fromTag: "held", cseq: 1, event: "echo", resource: alice}
	w.sendRaw(w.render(msg{method: "SUBSCRIBE", uri: alice, headers: []string{
		"From: <sip:watcher@example.com>;tag=held", "To: <" + alice + ">", "Call-ID: " + sub.callID,
		"CSeq: 1 SUBSCRIBE", w.contact(), "Event: echo", "Expires: 600"}}))
	select {
	case <-st.held:
	case <-time.After(waitFor):
		t.Fatal("the SUBSCRIBE never committed")
	}
	wantCode(t, publish(t, p, "echo", alice, "text/plain", "v2", "SIP-If-Match: "+etag), 200)
	close(st.release)
	wantCode(t, w.response(), 200)
	if n := w.notify(); string(n.Body()) != "v2" {
		t.Fatalf("first NOTIFY of the new watcher:\n%s", n)
	}
}
