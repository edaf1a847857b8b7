package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/extension"
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
