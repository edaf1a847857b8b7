package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// contacts are the Contact header values of a registrar's answer.
func contacts(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func TestRegistrar(t *testing.T) {
	f := start(t, nil, echo(t))
	reg := f.peer(t, "UDP").Registration("sip:carol@example.com")

	r := reg.Send("Contact: <sip:carol@192.0.2.1:5060>;q=0.7", "Contact: <sip:carol@192.0.2.2:5060>;expires=120", "Expires: 600")
	siptest.WantCode(t, r, 200)
	cs := contacts(r)
	if len(cs) != 2 || !strings.Contains(cs[0], "192.0.2.1") || !strings.Contains(cs[0], "expires=600") ||
		!strings.Contains(cs[0], "q=0.7") || !strings.Contains(cs[1], "expires=120") {
		t.Fatalf("bindings listed: %v", cs)
	}
	// a query lists the bindings without changing them
	r = reg.Send()
	siptest.WantCode(t, r, 200)
	if len(contacts(r)) != 2 {
		t.Fatalf("query lists %v", contacts(r))
	}
	// one binding removed by expires=0
	r = reg.Send("Contact: <sip:carol@192.0.2.2:5060>;expires=0")
	siptest.WantCode(t, r, 200)
	if cs := contacts(r); len(cs) != 1 || !strings.Contains(cs[0], "192.0.2.1") {
		t.Fatalf("after removal: %v", cs)
	}
	// Expires 0 for an unknown contact removes nothing
	r = reg.Send("Contact: <sip:carol@192.0.2.3:5060>", "Expires: 0")
	siptest.WantCode(t, r, 200)
	// bad *
	r = reg.Send("Contact: *")
	siptest.WantCode(t, r, 400)
	// a CSeq not above the one that last wrote the binding, same Call-ID
	// (RFC 3261 §10.3 step 7): out of order
	saved := reg.CSeq
	reg.CSeq = 0
	r = reg.Send("Contact: <sip:carol@192.0.2.1:5060>")
	siptest.WantCode(t, r, 500)
	reg.CSeq = saved
	// * removes everything
	r = reg.Send("Contact: *", "Expires: 0")
	siptest.WantCode(t, r, 200)
	if cs := contacts(r); len(cs) != 0 {
		t.Fatalf("after *: %v", cs)
	}
}

func TestRegistrarBoundsAndExpiry(t *testing.T) {
	f := start(t, nil, echo(t))
	reg := f.peer(t, "UDP").Registration("sip:dave@example.com")
	r := reg.Send("Contact: <sip:dave@192.0.2.9>", "Expires: 1")
	siptest.WantCode(t, r, 200) // test bounds: min 1
	time.Sleep(1500 * time.Millisecond)
	r = reg.Send()
	if cs := contacts(r); len(cs) != 0 {
		t.Fatalf("expired binding still listed: %v", cs)
	}
	r = reg.Send("Contact: <sip:dave@192.0.2.9>;expires=abc")
	siptest.WantCode(t, r, 400)
	r = reg.Peer.Send(siptest.Request{Method: "REGISTER", URI: "sip:example.com", Headers: []string{
		"From: <sip:example.com>;tag=x", "To: <sip:example.com>", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 REGISTER",
		"Contact: <sip:x@192.0.2.9>"}})
	siptest.WantCode(t, r, 404)
}

func TestRegistrarMinExpires(t *testing.T) {
	srv := startWith(t, server.Options{Listen: []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 60, Max: 3600}, Publication: server.Bounds{Min: 60, Max: 3600},
		Registrar: server.RegistrarBounds{Min: 60, Max: 3600, Default: 3600},
		Modules:   []*extension.Module{echo(t)}})
	reg := siptest.NewPeer(t, "UDP", addrOf(srv, "udp")).Registration("sip:ivy@example.com")
	r := reg.Send("Contact: <sip:ivy@192.0.2.5>", "Expires: 30")
	siptest.WantCode(t, r, 423)
	if siptest.Header(r, "Min-Expires") != "60" {
		t.Fatalf("423 without Min-Expires: 60:\n%s", r)
	}
	r = reg.Send("Contact: <sip:ivy@192.0.2.5>;expires=99999")
	siptest.WantCode(t, r, 200)
	if cs := contacts(r); len(cs) != 1 || !strings.Contains(cs[0], "expires=3600") {
		t.Fatalf("not clamped: %v", cs)
	}
}

// linphone over TCP registers twice from one instance: its second REGISTER
// comes over a new connection, from a new port, with the same
// +sip.instance and reg-id. The second replaces the first (RFC 5626 §6,
// RFC 5627): the 200 lists one binding, a watcher sees one open tuple,
// and the un-REGISTER from the new port closes the presentity.
func TestRegistrarInstanceReplacesItsBinding(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, paPkg, nil))
	aor := "sip:lin@example.com"
	w := f.peer(t, "UDP")
	_, r := w.Subscribe("presence", aor)
	siptest.WantCode(t, r, 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("before REGISTER:\n%s", body)
	}
	const instance = `+sip.instance="<urn:uuid:5ba0e7a6-2b57-4b5e-8f2c-2d7c6a1f0b11>";reg-id=1`
	contact := func(p *siptest.Peer) string {
		return "Contact: <sip:lin@" + p.Local() + ";transport=tcp>;" + instance
	}
	a, b := f.peer(t, "TCP"), f.peer(t, "TCP")
	reg := a.Registration(aor)
	r = reg.Send(contact(a), "Expires: 600")
	siptest.WantCode(t, r, 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, a.Local()) {
		t.Fatalf("after REGISTER from %s:\n%s", a.Local(), body)
	}
	reg.Peer = b // the same Call-ID, a new connection
	r = reg.Send(contact(b), "Expires: 600")
	siptest.WantCode(t, r, 200)
	if cs := contacts(r); len(cs) != 1 || !strings.Contains(cs[0], b.Local()) || !strings.Contains(cs[0], "reg-id=1") ||
		!strings.Contains(cs[0], `+sip.instance="<urn:uuid:5ba0e7a6-2b57-4b5e-8f2c-2d7c6a1f0b11>"`) {
		t.Fatalf("bindings listed after the second REGISTER: %v", cs)
	}
	body := string(w.Notify().Body())
	if n := strings.Count(body, "<tuple"); n != 1 || !strings.Contains(body, b.Local()) || strings.Contains(body, a.Local()) {
		t.Fatalf("%d tuples after REGISTER from %s, want one, B's:\n%s", n, b.Local(), body)
	}
	r = reg.Send(contact(b), "Expires: 0")
	siptest.WantCode(t, r, 200)
	if cs := contacts(r); len(cs) != 0 {
		t.Fatalf("bindings listed after the un-REGISTER: %v", cs)
	}
	if body := string(w.Notify().Body()); strings.Contains(body, "<basic>open</basic>") {
		t.Fatalf("after the un-REGISTER:\n%s", body)
	}
	if bs := f.srv.Bindings(aor); len(bs) != 0 {
		t.Fatalf("bindings left: %+v", bs)
	}
}

// Without an instance a binding is its URI, as before; a Contact without
// one still removes a binding of that URI registered with one (RFC 3261
// compares URIs). Two Contacts naming one binding, a reg-id without an
// instance and malformed ones are refused with a Warning saying which.
func TestRegistrarBindingIdentity(t *testing.T) {
	f := start(t, nil, echo(t))
	reg := f.peer(t, "UDP").Registration("sip:ida@example.com")
	const x = `+sip.instance="<urn:uuid:00000000-0000-1000-8000-00000000000a>"`
	r := reg.Send("Contact: <sip:ida@192.0.2.1:5060>", "Contact: <sip:ida@192.0.2.1:5062>;"+x, "Expires: 600")
	siptest.WantCode(t, r, 200)
	// the same instance in upper case is the same binding (RFC 4122)
	r = reg.Send(`Contact: <sip:ida@192.0.2.1:5064>;+sip.instance="<URN:UUID:00000000-0000-1000-8000-00000000000A>"`, "Expires: 600")
	if cs := contacts(r); len(cs) != 2 || strings.Contains(strings.Join(cs, " "), ":5062") {
		t.Fatalf("after the instance moved: %v", cs)
	}
	r = reg.Send("Contact: <sip:ida@192.0.2.1:5064>", "Expires: 0")
	if cs := contacts(r); len(cs) != 1 || !strings.Contains(cs[0], ":5060") {
		t.Fatalf("after removing by URI: %v", cs)
	}
	for _, tt := range []struct {
		contacts []string
		warning  string
	}{
		{[]string{"Contact: <sip:ida@192.0.2.1:5070>;" + x, "Contact: <sip:ida@192.0.2.1:5071>;" + x}, "Contacts 1 and 2 name the same binding"},
		{[]string{"Contact: <sip:ida@192.0.2.1:5070>;reg-id=1"}, "reg-id without +sip.instance"},
		{[]string{`Contact: <sip:ida@192.0.2.1:5070>;+sip.instance="urn:uuid:1"`}, "not a quoted"},
		{[]string{"Contact: <sip:ida@192.0.2.1:5070>;" + x + ";reg-id=0"}, "reg-id"},
	} {
		r := reg.Send(tt.contacts...)
		siptest.WantCode(t, r, 400)
		if w := siptest.Header(r, "Warning"); !strings.Contains(w, tt.warning) {
			t.Errorf("%v: Warning %q, want %q", tt.contacts, w, tt.warning)
		}
	}
	if bs := f.srv.Bindings("sip:ida@example.com"); len(bs) != 1 {
		t.Fatalf("bindings after the refusals: %+v", bs)
	}
}

// A REGISTER's Path is kept with its bindings and returned in the 200 to
// a client that supports it (RFC 3327 §5.3), and only to such a client.
func TestRegistrarPath(t *testing.T) {
	f := start(t, nil, echo(t))
	reg := f.peer(t, "UDP").Registration("sip:pat@example.com")
	path := []string{"Path: <sip:edge.example.com;lr;ob>", "Path: <sip:core.example.com;lr>"}
	r := reg.Send(append([]string{"Contact: <sip:pat@192.0.2.1>", "Supported: path"}, path...)...)
	siptest.WantCode(t, r, 200)
	var got []string
	for _, h := range r.GetHeaders("Path") {
		got = append(got, h.Value())
	}
	if strings.Join(got, ",") != "<sip:edge.example.com;lr;ob>,<sip:core.example.com;lr>" {
		t.Fatalf("Path in the 200: %q", got)
	}
	r = reg.Send(append([]string{"Contact: <sip:pat@192.0.2.2>"}, "Path: <sip:edge2.example.com;lr>")...)
	siptest.WantCode(t, r, 200)
	if h := siptest.Header(r, "Path"); h != "" {
		t.Fatalf("Path %q returned to a client without Supported: path", h)
	}
	bs := f.srv.Bindings("sip:pat@example.com")
	if len(bs) != 2 || strings.Join(bs[0].Path, ",") != "<sip:edge.example.com;lr;ob>,<sip:core.example.com;lr>" ||
		strings.Join(bs[1].Path, ",") != "<sip:edge2.example.com;lr>" {
		t.Fatalf("bindings: %+v", bs)
	}
	r = reg.Send("Contact: <sip:pat@192.0.2.1>", "Path: sip:edge.example.com;lr")
	siptest.WantCode(t, r, 400)
}
