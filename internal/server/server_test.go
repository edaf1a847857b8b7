package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension/extensiontest"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const echoPkg = "github.com/presenced/presenced/internal/extension/testdata/echo"

// paPkg is the presence module: the memory benchmark loads it, to measure
// what the daemon runs.
const paPkg = "github.com/presenced/presenced/extensions/pa"

// cseqBlock is the server's: a dialog reserves its CSeqs in blocks of 32,
// the first with the subscription.
const cseqBlock = 32

// fixture is a real server on 127.0.0.1 with real wasm modules.
type fixture struct {
	srv   *server.Server
	store store.Store
	addr  map[string]string // "UDP"/"TCP" -> host:port
	mods  []*extension.Module
}

func start(t testing.TB, st store.Store, mods ...*extension.Module) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return startLogging(t, st, log, mods...)
}

// startLogging is start with the server's log going to log.
func startLogging(t testing.TB, st store.Store, log *slog.Logger, mods ...*extension.Module) *fixture {
	t.Helper()
	return startFixture(t, server.Options{Store: st, Logger: log, Modules: mods})
}

// startFixture is start on opt, whose listeners and bounds it sets: for
// a test that sets more of the options (Metrics).
func startFixture(t testing.TB, opt server.Options) *fixture {
	t.Helper()
	if opt.Store == nil {
		opt.Store = store.NewMemory()
	}
	opt.Listen = []server.Listener{
		{Transport: "udp", Address: "127.0.0.1:0"},
		{Transport: "tcp", Address: "127.0.0.1:0"},
	}
	opt.Subscription = server.Bounds{Min: 1, Max: 3600}
	opt.Publication = server.Bounds{Min: 1, Max: 3600}
	opt.Registrar = server.RegistrarBounds{Min: 1, Max: 3600, Default: 3600}
	srv, err := server.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f := &fixture{srv: srv, store: opt.Store, addr: map[string]string{}, mods: opt.Modules}
	for _, a := range srv.Addrs() {
		tr, hp, _ := strings.Cut(a, ":")
		f.addr[strings.ToUpper(tr)] = hp
	}
	return f
}

// peer opens one of the kit's peers to the server over transport.
func (f *fixture) peer(t testing.TB, transport string) *siptest.Peer {
	return siptest.NewPeer(t, transport, f.addr[transport])
}

func echo(t testing.TB) *extension.Module { return extensiontest.Load(t, echoPkg, nil) }

// startWith starts a server on opt, for a test of an option the fixture
// does not set; bounds and a silent logger are filled in when left zero.
func startWith(t *testing.T, opt server.Options) *server.Server {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Subscription == (server.Bounds{}) {
		opt.Subscription, opt.Publication = server.Bounds{Min: 1, Max: 3600}, server.Bounds{Min: 1, Max: 3600}
	}
	srv, err := server.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// addrOf is the host:port srv listens on for transport ("udp", "tcp",
// "tls").
func addrOf(srv *server.Server, transport string) string {
	for _, a := range srv.Addrs() {
		if tr, hp, _ := strings.Cut(a, ":"); tr == transport {
			return hp
		}
	}
	return ""
}

const alice = "sip:alice@example.com"

// The whole life of a subscription and a publication, over each transport.
func TestSubscriptionLifecycle(t *testing.T) {
	f := start(t, nil, echo(t))
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			res := alice + strings.ToLower(tr)
			pub := f.peer(t, tr)
			watcher := f.peer(t, tr)

			r := pub.Publish("echo", res, "text/plain", "hello")
			siptest.WantCode(t, r, 200)
			etag := siptest.Header(r, "SIP-ETag")
			if etag == "" || siptest.Header(r, "Expires") != "60" {
				t.Fatalf("PUBLISH 200 lacks SIP-ETag or Expires 60:\n%s", r)
			}

			sub, r := watcher.Subscribe("echo;id=42", res, "Expires: 600")
			siptest.WantCode(t, r, 200)
			if siptest.Header(r, "Expires") != "600" || sub.ToTag == "" || siptest.Header(r, "Contact") == "" {
				t.Fatalf("SUBSCRIBE 200:\n%s", r)
			}
			n := watcher.Notify()
			if string(n.Body()) != "hello" || !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active;expires=") ||
				siptest.Header(n, "Event") != "echo;id=42" || n.CSeq().SeqNo != 1 {
				t.Fatalf("first NOTIFY:\n%s", n)
			}
			if n.Recipient.User != "watcher" || siptest.Tag(siptest.Header(n, "From")) != sub.ToTag || siptest.Tag(siptest.Header(n, "To")) != sub.FromTag ||
				siptest.Header(n, "Call-ID") != sub.CallID {
				t.Fatalf("NOTIFY is not in the dialog:\n%s", n)
			}

			// modify: every watcher hears, CSeq rises by one
			r = pub.Publish("echo", res, "text/plain", "again", "SIP-If-Match: "+etag)
			siptest.WantCode(t, r, 200)
			if next := siptest.Header(r, "SIP-ETag"); next == "" || next == etag {
				t.Fatalf("modify kept ETag %q", etag)
			}
			etag = siptest.Header(r, "SIP-ETag")
			n = watcher.Notify()
			if string(n.Body()) != "again" || n.CSeq().SeqNo != 2 {
				t.Fatalf("NOTIFY after modify:\n%s", n)
			}

			// refresh without body: new ETag, no NOTIFY
			r = pub.Publish("echo", res, "", "", "SIP-If-Match: "+etag, "Expires: 120")
			siptest.WantCode(t, r, 200)
			if siptest.Header(r, "Expires") != "120" {
				t.Fatalf("refresh Expires = %q", siptest.Header(r, "Expires"))
			}
			watcher.Quiet(200 * time.Millisecond)
			// the old ETag is gone
			siptest.WantCode(t, pub.Publish("echo", res, "", "", "SIP-If-Match: "+etag), 412)
			etag = siptest.Header(r, "SIP-ETag")

			// refresh of the subscription: 200 and a full NOTIFY
			r = sub.Again("Expires: 300")
			siptest.WantCode(t, r, 200)
			n = watcher.Notify()
			if string(n.Body()) != "again" || n.CSeq().SeqNo != 3 || !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active") {
				t.Fatalf("NOTIFY after refresh:\n%s", n)
			}

			// removal of the publication: watchers see the empty state
			r = pub.Publish("echo", res, "", "", "SIP-If-Match: "+etag, "Expires: 0")
			siptest.WantCode(t, r, 200)
			if siptest.Header(r, "Expires") != "0" {
				t.Fatalf("removal Expires = %q", siptest.Header(r, "Expires"))
			}
			n = watcher.Notify()
			if len(n.Body()) != 0 || n.CSeq().SeqNo != 4 {
				t.Fatalf("NOTIFY after removal:\n%s", n)
			}

			// unsubscribe
			r = sub.Again("Expires: 0")
			siptest.WantCode(t, r, 200)
			n = watcher.Notify()
			if siptest.Header(n, "Subscription-State") != "terminated;reason=timeout" || n.CSeq().SeqNo != 5 {
				t.Fatalf("final NOTIFY:\n%s", n)
			}
			// the dialog is gone
			siptest.WantCode(t, sub.Again("Expires: 60"), 481)
		})
	}
}

func TestSubscriptionExpires(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "UDP")
	_, r := w.Subscribe("echo", alice, "Expires: 1")
	siptest.WantCode(t, r, 200)
	w.Notify()
	n := w.Notify()
	if siptest.Header(n, "Subscription-State") != "terminated;reason=timeout" {
		t.Fatalf("expiry NOTIFY:\n%s", n)
	}
}

func TestPublicationExpires(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "short-lived", "Expires: 1"), 200)
	_, r := w.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	if n := w.Notify(); string(n.Body()) != "short-lived" {
		t.Fatalf("first NOTIFY:\n%s", n)
	}
	if n := w.Notify(); len(n.Body()) != 0 {
		t.Fatalf("NOTIFY after expiry still has a body:\n%s", n)
	}
}

func TestSubscribeDefaultsAndBounds(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "UDP")
	_, r := w.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	if siptest.Header(r, "Expires") != "60" { // the echo package's default
		t.Fatalf("default Expires = %q", siptest.Header(r, "Expires"))
	}
	_, r = w.Subscribe("echo", alice, "Expires: 999999")
	siptest.WantCode(t, r, 200)
	if siptest.Header(r, "Expires") != "3600" {
		t.Fatalf("clamped Expires = %q", siptest.Header(r, "Expires"))
	}
	// a fetch: 200, one terminated NOTIFY, nothing kept
	fetch, r := w.Subscribe("echo", alice, "Expires: 0")
	siptest.WantCode(t, r, 200)
	if n := w.NotifyIn(fetch.CallID); siptest.Header(n, "Subscription-State") != "terminated;reason=timeout" {
		t.Fatalf("fetch NOTIFY:\n%s", n)
	}
}

func TestRefusals(t *testing.T) {
	f := start(t, nil, echo(t))
	p := f.peer(t, "UDP")
	base := func(method string) []string {
		return []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">", "Call-ID: " + siptest.NewCallID(),
			"CSeq: 1 " + method, p.Contact()}
	}
	// req keeps the table below one case a line.
	req := func(method, uri string, headers []string, body string) siptest.Request {
		return siptest.Request{Method: method, URI: uri, Headers: headers, Body: body}
	}
	cases := []struct {
		name    string
		m       siptest.Request
		code    int
		header  string // must be present
		warning string // substring of Warning
	}{
		{"unknown package", req("SUBSCRIBE", alice, append(base("SUBSCRIBE"), "Event: dialog"), ""), 489, "Allow-Events", "not served"},
		{"unknown package publish", req("PUBLISH", alice, append(base("PUBLISH"), "Event: dialog", "Content-Type: text/plain"), "x"), 489, "Allow-Events", ""},
		{"too brief", req("SUBSCRIBE", alice, append(base("SUBSCRIBE"), "Event: echo", "Expires: 0"), ""), 200, "", ""},
		{"missing Event", req("SUBSCRIBE", alice, base("SUBSCRIBE"), ""), 400, "Warning", "missing Event"},
		{"bad Expires", req("SUBSCRIBE", alice, append(base("SUBSCRIBE"), "Event: echo", "Expires: soon"), ""), 400, "Warning", "bad Expires"},
		{"no Contact", req("SUBSCRIBE", alice, base("SUBSCRIBE")[:4], ""), 400, "Warning", ""},
		{"no From tag", req("SUBSCRIBE", alice, append([]string{"From: <sip:bob@example.com>", "To: <" + alice + ">", "Call-ID: x1", "CSeq: 1 SUBSCRIBE", p.Contact()}, "Event: echo"), ""), 400, "Warning", "tag"},
		{"no To", req("SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "Call-ID: x2", "CSeq: 1 SUBSCRIBE", p.Contact(), "Event: echo"}, ""), 400, "Warning", "To"},
		{"no Call-ID", req("SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">", "CSeq: 1 SUBSCRIBE", p.Contact(), "Event: echo"}, ""), 400, "Warning", "Call-ID"},
		{"CSeq method", req("SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">", "Call-ID: x3", "CSeq: 1 INVITE", p.Contact(), "Event: echo"}, ""), 400, "Warning", "CSeq"},
		{"unknown dialog", req("SUBSCRIBE", alice, []string{"From: <sip:bob@example.com>;tag=1", "To: <" + alice + ">;tag=nope", "Call-ID: x4", "CSeq: 2 SUBSCRIBE", p.Contact(), "Event: echo"}, ""), 481, "", ""},
		{"publish without body or If-Match", req("PUBLISH", alice, append(base("PUBLISH"), "Event: echo"), ""), 400, "Warning", "SIP-If-Match"},
		{"unknown ETag", req("PUBLISH", alice, append(base("PUBLISH"), "Event: echo", "SIP-If-Match: nosuchtag"), ""), 412, "", ""},
		{"unsupported type", req("PUBLISH", alice, append(base("PUBLISH"), "Event: echo", "Content-Type: application/json"), "{}"), 415, "Accept", ""},
		{"body without type", req("PUBLISH", alice, append(base("PUBLISH"), "Event: echo"), "x"), 400, "Warning", "Content-Type"},
		{"module refuses", req("PUBLISH", alice, append(base("PUBLISH"), "Event: echo", "Content-Type: text/plain"), "bad"), 400, "Warning", "bad body"},
		{"no user part", req("PUBLISH", "sip:example.com", append(base("PUBLISH"), "Event: echo", "Content-Type: text/plain"), "x"), 404, "Warning", "user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := p.Send(c.m)
			siptest.WantCode(t, r, c.code)
			if c.header != "" && siptest.Header(r, c.header) == "" {
				t.Fatalf("no %s header:\n%s", c.header, r)
			}
			if !strings.Contains(siptest.Header(r, "Warning"), c.warning) {
				t.Fatalf("Warning %q does not say %q", siptest.Header(r, "Warning"), c.warning)
			}
		})
	}
	p.Notify() // the one from "too brief" (a fetch)

	// 423 needs a minimum above 1
	f2 := startWith(t, server.Options{Listen: []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 60, Max: 3600}, Publication: server.Bounds{Min: 60, Max: 3600},
		Modules: f.mods})
	p2 := siptest.NewPeer(t, "UDP", addrOf(f2, "udp"))
	_, r := p2.Subscribe("echo", alice, "Expires: 5")
	siptest.WantCode(t, r, 423)
	if siptest.Header(r, "Min-Expires") != "60" {
		t.Fatalf("423 without Min-Expires: 60:\n%s", r)
	}
	siptest.WantCode(t, p2.Publish("echo", alice, "text/plain", "x", "Expires: 5"), 423)
}

// A module that traps fails that request with a 500; the next succeeds.
func TestModuleTrapIs500(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	_, r := w.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	w.Notify()
	r = p.Publish("echo", alice, "text/plain", "panic")
	siptest.WantCode(t, r, 500)
	if !strings.Contains(siptest.Header(r, "Warning"), "extension echo failed") {
		t.Fatalf("500 Warning = %q", siptest.Header(r, "Warning"))
	}
	w.Quiet(200 * time.Millisecond) // nothing half-written reached watchers
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "fine"), 200)
	if n := w.Notify(); string(n.Body()) != "fine" {
		t.Fatalf("NOTIFY after recovery:\n%s", n)
	}
}

// A NOTIFY answered 481 ends the subscription.
func TestNotify481EndsSubscription(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	sub, r := w.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	w.Notify()
	w.AnswerNotifies(481)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "one"), 200)
	w.Notify() // answered 481
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "two"), 200)
	w.Quiet(300 * time.Millisecond)
	w.AnswerNotifies(200)
	siptest.WantCode(t, sub.Again(), 481)
}

// The route set comes from Record-Route, in order, and the NOTIFY goes to
// its first entry.
func TestRouteSet(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "UDP")
	_, r := w.Subscribe("echo", alice,
		"Record-Route: <sip:"+w.Local()+";lr>", "Record-Route: <sip:proxy2.example.com;lr>")
	siptest.WantCode(t, r, 200)
	n := w.Notify()
	routes := n.GetHeaders("Route")
	if len(routes) != 2 || !strings.Contains(routes[0].Value(), w.Local()) || !strings.Contains(routes[1].Value(), "proxy2") {
		t.Fatalf("NOTIFY routes = %v", routes)
	}
}

// Over TCP the NOTIFY comes back on the subscriber's connection even when
// its Contact points nowhere.
func TestTCPNotifyUsesTheInboundConnection(t *testing.T) {
	f := start(t, nil, echo(t))
	w := f.peer(t, "TCP")
	res := w.Send(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{
		"From: <sip:watcher@example.com>;tag=nat1", "To: <" + alice + ">", "Call-ID: " + siptest.NewCallID(),
		"CSeq: 1 SUBSCRIBE", "Contact: <sip:watcher@127.0.0.1:9;transport=tcp>", "Event: echo"}})
	siptest.WantCode(t, res, 200)
	if n := w.Notify(); n.Recipient.Port != 9 {
		t.Fatalf("NOTIFY request-URI should still be the Contact:\n%s", n)
	}
}

// A NOTIFY too large for UDP (RFC 3261 §18.1.1: over 1300 bytes) goes to
// the same Contact over TCP.
func TestLargeNotifyMovesToTCP(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	ln, err := net.Listen("tcp", w.Local()) // the subscriber's Contact host:port, over TCP
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
		tp := siptest.NewPeerOn(t, "TCP", c)
		got <- tp.Notify()
	}()
	_, r := w.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	w.Notify() // small: over UDP
	big := strings.Repeat("x", 2000)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", big), 200)
	select {
	case n := <-got:
		if string(n.Body()) != big || n.CSeq().SeqNo != 2 {
			t.Fatalf("NOTIFY over TCP: CSeq %d, %d bytes", n.CSeq().SeqNo, len(n.Body()))
		}
	case <-time.After(siptest.Timeout):
		t.Fatal("no NOTIFY over TCP")
	}
}

// A subscriber that takes no TCP connection still gets a NOTIFY too large
// for UDP: refused over TCP, it goes over UDP (RFC 3261 §18.1.1), and the
// subscription lives on.
func TestLargeNotifyFallsBackToUDP(t *testing.T) {
	f := start(t, nil, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP") // nothing listens on w's port over TCP
	_, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w.Notify()
	big := strings.Repeat("x", 2000)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", big), 200)
	if n := w.Notify(); string(n.Body()) != big || n.CSeq().SeqNo != 2 {
		t.Fatalf("NOTIFY over UDP: CSeq %d, %d bytes", n.CSeq().SeqNo, len(n.Body()))
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "small again"), 200)
	if n := w.Notify(); string(n.Body()) != "small again" || n.CSeq().SeqNo != 3 {
		t.Fatalf("after the large NOTIFY the subscription is gone: CSeq %d %q", n.CSeq().SeqNo, n.Body())
	}
}

// With a coalescing window, changes within it of the watcher's last NOTIFY
// (here, its first) reach it as one NOTIFY of the last state, not one
// each, as they reach the crowd watching with it (its changes rendered
// after their 200s); the final NOTIFY is never held back or dropped.
func TestNotifyCoalescing(t *testing.T) {
	m, err := extension.Load(context.Background(), extension.Spec{Name: "echo", Path: sdktest.Build(t, echoPkg),
		MemoryLimitMB: 64, CallTimeout: 2 * time.Second, Instances: 2, Coalesce: map[string]time.Duration{"echo": 400 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	f := start(t, nil, m)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := p.Publish("echo", alice, "text/plain", "v0")
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")
	sub, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	if n := w.Notify(); string(n.Body()) != "v0" {
		t.Fatalf("first NOTIFY:\n%s", n)
	}
	peers, subs := crowdOf(t, f, "echo", alice, server.RenderApart-1)
	for i := 1; i <= 5; i++ {
		r := p.Publish("echo", alice, "text/plain", fmt.Sprintf("v%d", i), "SIP-If-Match: "+etag)
		siptest.WantCode(t, r, 200)
		etag = siptest.Header(r, "SIP-ETag")
	}
	n := w.Notify()
	if string(n.Body()) != "v5" || n.CSeq().SeqNo != 2 {
		t.Fatalf("after the burst, want one NOTIFY of v5 with CSeq 2:\n%s", n)
	}
	for _, sub := range subs {
		if n := sub.Peer.NotifyIn(sub.CallID); string(n.Body()) != "v5" || n.CSeq().SeqNo != 2 {
			t.Fatalf("after the burst, want one NOTIFY of v5 with CSeq 2 to each of the crowd:\n%s", n)
		}
	}
	w.Quiet(600 * time.Millisecond)
	for _, p := range peers {
		p.Quiet(10 * time.Millisecond) // what came while w waited is read at once
	}
	// an unsubscribe is final: sent at once, whatever the window
	if r := sub.Again("Expires: 0"); r.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", r.StatusCode)
	}
	if n := w.Notify(); siptest.Header(n, "Subscription-State") != "terminated;reason=timeout" || n.CSeq().SeqNo != 3 {
		t.Fatalf("final NOTIFY:\n%s", n)
	}
}

// heldStore holds the first commit its predicate picks until released,
// so a test can act while that change commits.
type heldStore struct {
	store.Store
	only          func(*store.Batch) bool
	held, release chan struct{}
	once          sync.Once
}

func (h *heldStore) Commit(ctx context.Context, b *store.Batch) error {
	if h.only(b) {
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
	st := &heldStore{Store: store.NewMemory(), held: make(chan struct{}), release: make(chan struct{}),
		only: func(b *store.Batch) bool { return len(b.Subscriptions) > 0 }}
	f := start(t, st, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := p.Publish("echo", alice, "text/plain", "v1")
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")
	sub := &siptest.Subscription{Peer: w, CallID: siptest.NewCallID(), FromTag: "held", CSeq: 1, Event: "echo", Resource: alice}
	w.SendRaw(w.Render(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{
		"From: <sip:watcher@example.com>;tag=held", "To: <" + alice + ">", "Call-ID: " + sub.CallID,
		"CSeq: 1 SUBSCRIBE", w.Contact(), "Event: echo", "Expires: 600"}}))
	select {
	case <-st.held:
	case <-time.After(siptest.Timeout):
		t.Fatal("the SUBSCRIBE never committed")
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v2", "SIP-If-Match: "+etag), 200)
	close(st.release)
	siptest.WantCode(t, w.Response(), 200)
	if n := w.Notify(); string(n.Body()) != "v2" {
		t.Fatalf("first NOTIFY of the new watcher:\n%s", n)
	}
}

// A TLS listener with a self-signed certificate: SUBSCRIBE over TLS, and
// the NOTIFY comes back on the same TLS connection.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := siptest.SelfSigned(t, dir)
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "tls", Address: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}},
		Modules: []*extension.Module{echo(t)},
	})
	conn, err := tls.Dial("tcp", addrOf(srv, "tls"), &tls.Config{InsecureSkipVerify: true}) // self-signed, made above
	if err != nil {
		t.Fatal(err)
	}
	p := siptest.NewPeerOn(t, "TLS", conn)
	_, r := p.Subscribe("echo", alice)
	siptest.WantCode(t, r, 200)
	if n := p.Notify(); n.CSeq().SeqNo != 1 || !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active") {
		t.Fatalf("NOTIFY over TLS:\n%s", n)
	}
}
