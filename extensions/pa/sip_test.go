//go:build !wasip1

// The pa module end to end: a real presenced server runs it (siptest), and
// the tests speak SIP to it as clients and watchers do. The server is the
// host's, which does not build for wasip1, where go vet reads these too.
package main_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const pkg = "github.com/presenced/presenced/extensions/pa"

func pidf(entity, id, basic, note string) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="%s">
  <tuple id="%s"><status><basic>%s</basic></status><contact>sip:%s@pc.example.com</contact></tuple>
  <note>%s</note>
</presence>`, entity, id, basic, id, note)
}

// The presence package end to end, with the real pa module: a PUBLISH
// reaches every watcher as PIDF, a second publication is composed into the
// same document, and documents the module refuses change nothing.
func TestPresenceOverPA(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg, Config: map[string]string{"default_expires": "3600"}})
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			bob := "sip:bob-" + strings.ToLower(tr) + "@example.com"
			phone, laptop := f.Peer(t, tr), f.Peer(t, tr)
			w1, w2 := f.Peer(t, tr), f.Peer(t, tr)

			// nobody published yet: a closed dummy document
			_, r := w1.Subscribe("presence", bob, "Accept: application/pidf+xml")
			siptest.WantCode(t, r, 200)
			if siptest.Header(r, "Expires") != "3600" {
				t.Fatalf("default Expires = %q, want pa's 3600", siptest.Header(r, "Expires"))
			}
			n := w1.Notify()
			if siptest.Header(n, "Content-Type") != "application/pidf+xml" || !strings.Contains(string(n.Body()), "<basic>closed</basic>") {
				t.Fatalf("NOTIFY before any PUBLISH:\n%s", n)
			}

			r = phone.Publish("presence", bob, "application/pidf+xml", pidf(bob, "phone", "open", "on the phone"))
			siptest.WantCode(t, r, 200)
			n = w1.Notify()
			if body := string(n.Body()); !strings.Contains(body, `id="phone"`) || !strings.Contains(body, "on the phone") {
				t.Fatalf("NOTIFY after PUBLISH lacks the tuple:\n%s", n)
			}

			_, r = w2.Subscribe("presence", bob)
			siptest.WantCode(t, r, 200)
			if n := w2.Notify(); !strings.Contains(string(n.Body()), `id="phone"`) {
				t.Fatalf("second watcher's first NOTIFY:\n%s", n)
			}

			// a second source: both watchers get both tuples
			r = laptop.Publish("presence", bob, "application/pidf+xml", pidf(bob, "laptop", "closed", "laptop asleep"))
			siptest.WantCode(t, r, 200)
			for _, w := range []*siptest.Peer{w1, w2} {
				body := string(w.Notify().Body())
				if !strings.Contains(body, `id="phone"`) || !strings.Contains(body, `id="laptop"`) {
					t.Fatalf("composed NOTIFY lacks a source:\n%s", body)
				}
			}

			// refused documents: 400 with the module's reason, no NOTIFY
			for _, c := range []struct{ body, warning string }{
				{"<presence", "not well-formed"},
				{pidf(bob, "x", "unknown", ""), "basic"},
				{pidf("sip:mallory@example.com", "x", "open", ""), "entity"},
				{strings.Replace(pidf(bob, "x", "open", ""), "urn:ietf:params:xml:ns:pidf", "urn:example:other", 1), "namespace"},
			} {
				r = phone.Publish("presence", bob, "application/pidf+xml", c.body)
				siptest.WantCode(t, r, 400)
				if w := siptest.Header(r, "Warning"); !strings.Contains(w, c.warning) {
					t.Fatalf("Warning %q does not say %q", w, c.warning)
				}
			}
			w1.Quiet(200 * time.Millisecond)
			w2.Quiet(time.Millisecond)

			// a watcher that accepts no PIDF is refused
			_, r = w2.Subscribe("presence", bob, "Accept: text/plain")
			siptest.WantCode(t, r, 406)
		})
	}
}

// Two devices publish; both tuples reach the watcher; when one
// publication expires only its tuple goes.
func TestPAPublicationExpiryRemovesOnlyItsTuples(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	erin := "sip:erin@example.com"
	phone, desk, w := f.Peer(t, "UDP"), f.Peer(t, "UDP"), f.Peer(t, "UDP")
	siptest.WantCode(t, phone.Publish("presence", erin, "application/pidf+xml", pidf(erin, "phone", "open", "mobile"), "Expires: 1"), 200)
	siptest.WantCode(t, desk.Publish("presence", erin, "application/pidf+xml", pidf(erin, "desk", "open", "desk"), "Expires: 600"), 200)
	_, r := w.Subscribe("presence", erin)
	siptest.WantCode(t, r, 200)
	body := string(w.Notify().Body())
	if !strings.Contains(body, `id="phone"`) || !strings.Contains(body, `id="desk"`) {
		t.Fatalf("first NOTIFY lacks a device:\n%s", body)
	}
	body = string(w.Notify().Body()) // the phone's publication expired
	if strings.Contains(body, `id="phone"`) || !strings.Contains(body, `id="desk"`) {
		t.Fatalf("after expiry:\n%s", body)
	}
}

// The registrar is a presence source: a user who registers and publishes
// nothing is open, and closed again when the binding goes.
func TestPARegistrarBackend(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	frank := "sip:frank@example.com"
	w := f.Peer(t, "UDP")
	_, r := w.Subscribe("presence", frank)
	siptest.WantCode(t, r, 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("before REGISTER:\n%s", body)
	}
	reg := f.Peer(t, "UDP").Registration(frank)
	siptest.WantCode(t, reg.Send("Contact: <sip:frank@192.0.2.7:5060>;q=0.8", "Expires: 600"), 200)
	body := string(w.Notify().Body())
	if !strings.Contains(body, "<basic>open</basic>") || !strings.Contains(body, "sip:frank@192.0.2.7:5060") ||
		!strings.Contains(body, `priority="0.8"`) {
		t.Fatalf("after REGISTER:\n%s", body)
	}
	siptest.WantCode(t, reg.Send("Contact: *", "Expires: 0"), 200)
	if body := string(w.Notify().Body()); strings.Contains(body, "<basic>open</basic>") || !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("after unregister:\n%s", body)
	}
	// a binding that expires on its own closes too
	siptest.WantCode(t, reg.Send("Contact: <sip:frank@192.0.2.7:5060>", "Expires: 1"), 200)
	if body := string(w.Notify().Body()); !strings.Contains(body, "<basic>open</basic>") {
		t.Fatalf("after second REGISTER:\n%s", body)
	}
	if body := string(w.Notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("after the binding expired:\n%s", body)
	}
}

// Watcher info and the confirm policy: the presentity watching its
// watchers sees a new watcher arrive pending, then active once approved;
// the pending watcher gets no presence until then; a blocked watcher is
// rejected.
func TestPAWatcherInfoAndAuthorization(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg, Config: map[string]string{"policy": "confirm", "block": "sip:mallory@example.com"}})
	gina := "sip:gina@example.com"
	owner, bob, mallory := f.Peer(t, "UDP"), f.Peer(t, "UDP"), f.Peer(t, "UDP")
	siptest.WantCode(t, owner.Publish("presence", gina, "application/pidf+xml", pidf(gina, "pc", "open", "secret")), 200)

	// only the presentity may watch its watchers
	res := owner.Send(siptest.Request{Method: "SUBSCRIBE", URI: gina, Headers: []string{
		"From: <sip:bob@example.com>;tag=x1", "To: <" + gina + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
		owner.Contact(), "Event: presence.winfo"}})
	siptest.WantCode(t, res, 403)

	winfo := owner.Send(siptest.Request{Method: "SUBSCRIBE", URI: gina, Headers: []string{
		"From: <" + gina + ">;tag=own1", "To: <" + gina + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
		owner.Contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml"}})
	siptest.WantCode(t, winfo, 200)
	n := owner.Notify()
	if siptest.Header(n, "Content-Type") != "application/watcherinfo+xml" || !strings.Contains(string(n.Body()), `state="full"`) {
		t.Fatalf("first winfo NOTIFY:\n%s", n)
	}

	// bob arrives: pending, no presence
	bobSub, r := bob.Subscribe("presence", gina)
	siptest.WantCode(t, r, 200)
	n = bob.Notify()
	if !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "pending") || len(n.Body()) != 0 {
		t.Fatalf("pending watcher's NOTIFY:\n%s", n)
	}
	n = owner.Notify()
	if b := string(n.Body()); !strings.Contains(b, `state="partial"`) || !strings.Contains(b, `status="pending"`) ||
		!strings.Contains(b, "sip:watcher@example.com") {
		t.Fatalf("winfo NOTIFY for the new watcher:\n%s", n)
	}
	// a PUBLISH while pending leaks nothing
	siptest.WantCode(t, owner.Publish("presence", gina, "application/pidf+xml", pidf(gina, "pc", "open", "still secret")), 200)
	if n := bob.NotifyWithin(300 * time.Millisecond); n != nil && len(n.Body()) != 0 {
		t.Fatalf("pending watcher got presence:\n%s", n)
	}

	// approval (the admin entry point the HTTP API will wrap)
	if _, err := f.Command("presence", gina, "approve", map[string]string{"watcher": "sip:watcher@example.com"}); err != nil {
		t.Fatal(err)
	}
	n = bob.Notify()
	if !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active") || !strings.Contains(string(n.Body()), "still secret") {
		t.Fatalf("NOTIFY after approval:\n%s", n)
	}
	n = owner.Notify()
	if b := string(n.Body()); !strings.Contains(b, `status="active"`) || !strings.Contains(b, `event="approved"`) {
		t.Fatalf("winfo NOTIFY after approval:\n%s", n)
	}
	siptest.WantCode(t, bobSub.Again(), 200) // still a live dialog

	// mallory is blocked: polite rejection
	res = mallory.Send(siptest.Request{Method: "SUBSCRIBE", URI: gina, Headers: []string{
		"From: <sip:mallory@example.com>;tag=m1", "To: <" + gina + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
		mallory.Contact(), "Event: presence"}})
	siptest.WantCode(t, res, 200)
	n = mallory.Notify()
	if siptest.Header(n, "Subscription-State") != "terminated;reason=rejected" || len(n.Body()) != 0 {
		t.Fatalf("blocked watcher's NOTIFY:\n%s", n)
	}

	// bad commands are refused
	if _, err := f.Command("presence", gina, "approve", nil); err == nil {
		t.Fatal("approve without a watcher was accepted")
	}
	if _, err := f.Command("presence", gina, "explode", nil); err == nil {
		t.Fatal("an unknown command was accepted")
	}
}

// What real clients send must work: a refresh PUBLISH with a PIDF
// Content-Type and no body keeps the document; an invalid basic is
// refused with its value named.
func TestPAClientQuirks(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	hal := "sip:hal@example.com"
	p, w := f.Peer(t, "UDP"), f.Peer(t, "UDP")
	r := p.Publish("presence", hal, "application/pidf+xml", pidf(hal, "t", "open", "kept"))
	siptest.WantCode(t, r, 200)
	r = p.Publish("presence", hal, "application/pidf+xml", "", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	_, r = w.Subscribe("presence", hal)
	siptest.WantCode(t, r, 200)
	if !strings.Contains(string(w.Notify().Body()), "kept") {
		t.Fatal("refresh with an empty PIDF body lost the document")
	}
	r = p.Publish("presence", hal, "application/pidf+xml", pidf(hal, "t", "unknown", ""))
	siptest.WantCode(t, r, 400)
	if !strings.Contains(siptest.Header(r, "Warning"), "unknown") {
		t.Fatalf("Warning %q does not name the value", siptest.Header(r, "Warning"))
	}
	// over UDP without Content-Length: a refresh, not a 400
	r = p.Publish("presence", hal, "application/pidf+xml", pidf(hal, "t", "open", "kept"))
	etag := siptest.Header(r, "SIP-ETag")
	raw := p.Render(siptest.Request{Method: "PUBLISH", URI: hal, Headers: []string{
		"From: <" + hal + ">;tag=q1", "To: <" + hal + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 PUBLISH",
		"Event: presence", "SIP-If-Match: " + etag}})
	raw = strings.Replace(raw, "Content-Length: 0\r\n", "", 1)
	p.SendRaw(raw)
	siptest.WantCode(t, p.Response(), 200)
}

// Watcher info costs nothing while nobody watches it: presence
// subscriptions store no watcher-info state. The presentity's first
// watcher-info subscription gets the watchers already there, pending and
// active, and the ones that came and went meanwhile are not in it.
func TestPAWatcherInfoForWatchersBeforeIt(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg, Config: map[string]string{"policy": "confirm", "allow": "sip:watcher@example.com"}})
	gina := "sip:gina@example.com"
	owner, w1, w2, gone := f.Peer(t, "UDP"), f.Peer(t, "UDP"), f.Peer(t, "UDP"), f.Peer(t, "UDP")
	siptest.WantCode(t, owner.Publish("presence", gina, "application/pidf+xml", pidf(gina, "pc", "open", "here")), 200)
	_, r := w1.Subscribe("presence", gina)
	siptest.WantCode(t, r, 200)
	w1.Notify()
	left, r := gone.Subscribe("presence", gina)
	siptest.WantCode(t, r, 200)
	gone.Notify()
	siptest.WantCode(t, left.Again("Expires: 0"), 200)
	gone.Notify()
	// a watcher the policy holds pending
	res := w2.Send(siptest.Request{Method: "SUBSCRIBE", URI: gina, Headers: []string{
		"From: <sip:carol@example.net>;tag=c1", "To: <" + gina + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
		w2.Contact(), "Event: presence"}})
	siptest.WantCode(t, res, 200)
	w2.Notify()
	for _, rs := range f.Resources(t) {
		if rs.Event == "presence.winfo" {
			t.Fatalf("watcher-info state stored with nobody watching: %+v", rs)
		}
	}

	winfo := owner.Send(siptest.Request{Method: "SUBSCRIBE", URI: gina, Headers: []string{
		"From: <" + gina + ">;tag=own1", "To: <" + gina + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
		owner.Contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml"}})
	siptest.WantCode(t, winfo, 200)
	b := string(owner.Notify().Body())
	if !strings.Contains(b, `state="full"`) || strings.Count(b, "<watcher ") != 2 ||
		!strings.Contains(b, `status="active"`) || !strings.Contains(b, `status="pending"`) || !strings.Contains(b, "sip:carol@example.net") {
		t.Fatalf("first winfo NOTIFY:\n%s", b)
	}
}

var winfoVersion = regexp.MustCompile(`<watcherinfo [^>]*version="(\d+)"`)

// pa's watcher info counts versions per winfo subscriber (RFC 3858 §4.2);
// watchers arriving in a burst within the window are one NOTIFY, the next
// version.
func TestCoalescedWatcherInfoVersionsAreConsecutive(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg, Coalesce: map[string]time.Duration{"presence.winfo": 300 * time.Millisecond}})
	gina := "sip:gina@example.com"
	owner := f.Peer(t, "UDP")
	r := owner.Send(siptest.Request{Method: "SUBSCRIBE", URI: gina, Headers: []string{
		"From: <" + gina + ">;tag=own1", "To: <" + gina + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
		owner.Contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml", "Expires: 600"}})
	siptest.WantCode(t, r, 200)
	version := func(n *sip.Request) int {
		t.Helper()
		m := winfoVersion.FindSubmatch(n.Body())
		if m == nil {
			t.Fatalf("winfo NOTIFY without a version:\n%s", n)
		}
		v, _ := strconv.Atoi(string(m[1]))
		return v
	}
	last := version(owner.Notify())
	for i := 0; i < 4; i++ {
		w := f.Peer(t, "UDP")
		_, r := w.Subscribe("presence", gina, "Expires: 600")
		siptest.WantCode(t, r, 200)
	}
	got := 0
	for n := owner.NotifyWithin(time.Second); n != nil; n = owner.NotifyWithin(time.Second) {
		if v := version(n); v != last+1 {
			t.Fatalf("winfo version %d after %d:\n%s", v, last, n.Body())
		}
		last++
		got++
	}
	if got == 0 || got == 4 {
		t.Fatalf("%d winfo NOTIFYs for 4 watchers arriving within the window", got)
	}
}

// A softphone registered to the server's own, non-default port publishes
// with that port in the request-URI and in the PIDF entity (baresip and
// linphone both do): the port is where the server listens, not who the
// presentity is, so the PUBLISH is accepted and reaches a watcher of the
// URI without a port, and a watcher of the URI with the port.
func TestPresentityPortIsNotIdentity(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			_, port, _ := strings.Cut(f.Addr(tr), ":")
			user := "alice-" + strings.ToLower(tr)
			bare := "sip:" + user + "@127.0.0.1"
			withPort := bare + ":" + port
			w := f.Peer(t, tr)
			_, r := w.Subscribe("presence", bare)
			siptest.WantCode(t, r, 200)
			if body := string(w.Notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
				t.Fatalf("NOTIFY before any PUBLISH:\n%s", body)
			}

			phone := f.Peer(t, tr)
			r = phone.Publish("presence", withPort, "application/pidf+xml", pidf(withPort, "phone", "open", "at the desk"))
			siptest.WantCode(t, r, 200)
			body := string(w.Notify().Body())
			if !strings.Contains(body, `id="phone"`) || !strings.Contains(body, "at the desk") {
				t.Fatalf("watcher of %s after a PUBLISH to %s:\n%s", bare, withPort, body)
			}
			if !strings.Contains(body, `entity="`+bare+`"`) {
				t.Fatalf("NOTIFY's entity is not the presentity %s:\n%s", bare, body)
			}

			w2 := f.Peer(t, tr)
			_, r = w2.Subscribe("presence", withPort)
			siptest.WantCode(t, r, 200)
			if body := string(w2.Notify().Body()); !strings.Contains(body, "at the desk") {
				t.Fatalf("watcher of %s:\n%s", withPort, body)
			}
		})
	}
}

// A REGISTER whose To carries the server's port binds the address of
// record a PUBLISH without the port reaches, so pa composes both into one
// document; a To spelled with an escaped letter is the same AOR too.
func TestPresentityRegisterWithPort(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	_, port, _ := strings.Cut(f.Addr("UDP"), ":")
	for _, c := range []struct{ name, user, to string }{
		{"port", "henry", "sip:henry@127.0.0.1:" + port},
		{"escaped", "ivy", "sip:%69vy@127.0.0.1:" + port},
	} {
		t.Run(c.name, func(t *testing.T) {
			bare := "sip:" + c.user + "@127.0.0.1"
			w := f.Peer(t, "UDP")
			_, r := w.Subscribe("presence", bare)
			siptest.WantCode(t, r, 200)
			w.Notify()

			p := f.Peer(t, "UDP")
			r = p.Send(siptest.Request{Method: "REGISTER", URI: "sip:127.0.0.1:" + port, Headers: []string{
				"From: <" + c.to + ">;tag=reg1", "To: <" + c.to + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 REGISTER",
				"Contact: <sip:" + c.user + "@192.0.2.9:5393>", "Expires: 600"}})
			siptest.WantCode(t, r, 200)
			if body := string(w.Notify().Body()); !strings.Contains(body, "sip:"+c.user+"@192.0.2.9:5393") {
				t.Fatalf("watcher of %s after a REGISTER of %s:\n%s", bare, c.to, body)
			}

			siptest.WantCode(t, p.Publish("presence", bare, "application/pidf+xml", pidf(bare, "desk", "open", "in")), 200)
			body := string(w.Notify().Body())
			if !strings.Contains(body, "sip:"+c.user+"@192.0.2.9:5393") || !strings.Contains(body, `id="desk"`) {
				t.Fatalf("binding and publication not composed into one presentity:\n%s", body)
			}
			if n := strings.Count(body, "<tuple"); n != 2 {
				t.Fatalf("%d tuples, want the binding's and the publication's:\n%s", n, body)
			}
		})
	}
}
