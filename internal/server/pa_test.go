package server_test

import (
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/store"
	"strings"
	"testing"
	"time"
)

// Two devices publish; both tuples reach the watcher; when one
// publication expires only its tuple goes.
func TestPAPublicationExpiryRemovesOnlyItsTuples(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, paPkg, nil))
	erin := "sip:erin@example.com"
	phone, desk, w := f.peer(t, "UDP"), f.peer(t, "UDP"), f.peer(t, "UDP")
	wantCode(t, publish(t, phone, "presence", erin, "application/pidf+xml", pidf(erin, "phone", "open", "mobile"), "Expires: 1"), 200)
	wantCode(t, publish(t, desk, "presence", erin, "application/pidf+xml", pidf(erin, "desk", "open", "desk"), "Expires: 600"), 200)
	_, r := subscribe(t, w, "presence", erin)
	wantCode(t, r, 200)
	body := string(w.notify().Body())
	if !strings.Contains(body, `id="phone"`) || !strings.Contains(body, `id="desk"`) {
		t.Fatalf("first NOTIFY lacks a device:\n%s", body)
	}
	body = string(w.notify().Body()) // the phone's publication expired
	if strings.Contains(body, `id="phone"`) || !strings.Contains(body, `id="desk"`) {
		t.Fatalf("after expiry:\n%s", body)
	}
}

// The registrar is a presence source: a user who registers and publishes
// nothing is open, and closed again when the binding goes.
func TestPARegistrarBackend(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, paPkg, nil))
	frank := "sip:frank@example.com"
	w := f.peer(t, "UDP")
	_, r := subscribe(t, w, "presence", frank)
	wantCode(t, r, 200)
	if body := string(w.notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("before REGISTER:\n%s", body)
	}
	reg := &registration{p: f.peer(t, "UDP"), aor: frank, callID: newCallID()}
	wantCode(t, reg.send("Contact: <sip:frank@192.0.2.7:5060>;q=0.8", "Expires: 600"), 200)
	body := string(w.notify().Body())
	if !strings.Contains(body, "<basic>open</basic>") || !strings.Contains(body, "sip:frank@192.0.2.7:5060") ||
		!strings.Contains(body, `priority="0.8"`) {
		t.Fatalf("after REGISTER:\n%s", body)
	}
	wantCode(t, reg.send("Contact: *", "Expires: 0"), 200)
	if body := string(w.notify().Body()); strings.Contains(body, "<basic>open</basic>") || !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("after unregister:\n%s", body)
	}
	// a binding that expires on its own closes too
	wantCode(t, reg.send("Contact: <sip:frank@192.0.2.7:5060>", "Expires: 1"), 200)
	if body := string(w.notify().Body()); !strings.Contains(body, "<basic>open</basic>") {
		t.Fatalf("after second REGISTER:\n%s", body)
	}
	if body := string(w.notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("after the binding expired:\n%s", body)
	}
}

// Watcher info and the confirm policy: the presentity watching its
// watchers sees a new watcher arrive pending, then active once approved;
// the pending watcher gets no presence until then; a blocked watcher is
// rejected.
func TestPAWatcherInfoAndAuthorization(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, paPkg, map[string]string{"policy": "confirm", "block": "sip:mallory@example.com"}))
	gina := "sip:gina@example.com"
	owner, bob, mallory := f.peer(t, "UDP"), f.peer(t, "UDP"), f.peer(t, "UDP")
	wantCode(t, publish(t, owner, "presence", gina, "application/pidf+xml", pidf(gina, "pc", "open", "secret")), 200)

	// only the presentity may watch its watchers
	res := owner.send(msg{method: "SUBSCRIBE", uri: gina, headers: []string{
		"From: <sip:bob@example.com>;tag=x1", "To: <" + gina + ">", "Call-ID: " + newCallID(), "CSeq: 1 SUBSCRIBE",
		owner.contact(), "Event: presence.winfo"}})
	wantCode(t, res, 403)

	winfo := owner.send(msg{method: "SUBSCRIBE", uri: gina, headers: []string{
		"From: <" + gina + ">;tag=own1", "To: <" + gina + ">", "Call-ID: " + newCallID(), "CSeq: 1 SUBSCRIBE",
		owner.contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml"}})
	wantCode(t, winfo, 200)
	n := owner.notify()
	if hdr(n, "Content-Type") != "application/watcherinfo+xml" || !strings.Contains(string(n.Body()), `state="full"`) {
		t.Fatalf("first winfo NOTIFY:\n%s", n)
	}

	// bob arrives: pending, no presence
	bobSub, r := subscribe(t, bob, "presence", gina)
	wantCode(t, r, 200)
	n = bob.notify()
	if !strings.HasPrefix(hdr(n, "Subscription-State"), "pending") || len(n.Body()) != 0 {
		t.Fatalf("pending watcher's NOTIFY:\n%s", n)
	}
	n = owner.notify()
	if b := string(n.Body()); !strings.Contains(b, `state="partial"`) || !strings.Contains(b, `status="pending"`) ||
		!strings.Contains(b, "sip:watcher@example.com") {
		t.Fatalf("winfo NOTIFY for the new watcher:\n%s", n)
	}
	// a PUBLISH while pending leaks nothing
	wantCode(t, publish(t, owner, "presence", gina, "application/pidf+xml", pidf(gina, "pc", "open", "still secret")), 200)
	select {
	case n := <-bob.notifies:
		if len(n.Body()) != 0 {
			t.Fatalf("pending watcher got presence:\n%s", n)
		}
	case <-time.After(300 * time.Millisecond):
	}

	// approval (the admin entry point the HTTP API will wrap)
	if _, err := f.srv.Command("presence", gina, "approve", map[string]string{"watcher": "sip:watcher@example.com"}); err != nil {
		t.Fatal(err)
	}
	n = bob.notify()
	if !strings.HasPrefix(hdr(n, "Subscription-State"), "active") || !strings.Contains(string(n.Body()), "still secret") {
		t.Fatalf("NOTIFY after approval:\n%s", n)
	}
	n = owner.notify()
	if b := string(n.Body()); !strings.Contains(b, `status="active"`) || !strings.Contains(b, `event="approved"`) {
		t.Fatalf("winfo NOTIFY after approval:\n%s", n)
	}
	wantCode(t, bobSub.again(), 200) // still a live dialog

	// mallory is blocked: polite rejection
	res = mallory.send(msg{method: "SUBSCRIBE", uri: gina, headers: []string{
		"From: <sip:mallory@example.com>;tag=m1", "To: <" + gina + ">", "Call-ID: " + newCallID(), "CSeq: 1 SUBSCRIBE",
		mallory.contact(), "Event: presence"}})
	wantCode(t, res, 200)
	n = mallory.notify()
	if hdr(n, "Subscription-State") != "terminated;reason=rejected" || len(n.Body()) != 0 {
		t.Fatalf("blocked watcher's NOTIFY:\n%s", n)
	}

	// bad commands are refused
	if _, err := f.srv.Command("presence", gina, "approve", nil); err == nil {
		t.Fatal("approve without a watcher was accepted")
	}
	if _, err := f.srv.Command("presence", gina, "explode", nil); err == nil {
		t.Fatal("an unknown command was accepted")
	}
}

// What real clients send must work: a refresh PUBLISH with a PIDF
// Content-Type and no body keeps the document; an invalid basic is
// refused with its value named.
func TestPAClientQuirks(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, paPkg, nil))
	hal := "sip:hal@example.com"
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := publish(t, p, "presence", hal, "application/pidf+xml", pidf(hal, "t", "open", "kept"))
	wantCode(t, r, 200)
	r = publish(t, p, "presence", hal, "application/pidf+xml", "", "SIP-If-Match: "+hdr(r, "SIP-ETag"))
	wantCode(t, r, 200)
	_, r = subscribe(t, w, "presence", hal)
	wantCode(t, r, 200)
	if !strings.Contains(string(w.notify().Body()), "kept") {
		t.Fatal("refresh with an empty PIDF body lost the document")
	}
	r = publish(t, p, "presence", hal, "application/pidf+xml", pidf(hal, "t", "unknown", ""))
	wantCode(t, r, 400)
	if !strings.Contains(hdr(r, "Warning"), "unknown") {
		t.Fatalf("Warning %q does not name the value", hdr(r, "Warning"))
	}
	// over UDP without Content-Length: a refresh, not a 400
	r = publish(t, p, "presence", hal, "application/pidf+xml", pidf(hal, "t", "open", "kept"))
	etag := hdr(r, "SIP-ETag")
	raw := p.render(msg{method: "PUBLISH", uri: hal, headers: []string{
		"From: <" + hal + ">;tag=q1", "To: <" + hal + ">", "Call-ID: " + newCallID(), "CSeq: 1 PUBLISH",
		"Event: presence", "SIP-If-Match: " + etag}})
	raw = strings.Replace(raw, "Content-Length: 0\r\n", "", 1)
	p.sendRaw(raw)
	wantCode(t, p.response(), 200)
}

// Watcher info costs nothing while nobody watches it: presence
// subscriptions store no watcher-info state. The presentity's first
// watcher-info subscription gets the watchers already there, pending and
// active, and the ones that came and went meanwhile are not in it.
func TestPAWatcherInfoForWatchersBeforeIt(t *testing.T) {
	st := store.NewMemory()
	f := start(t, st, extensiontest.Load(t, paPkg, map[string]string{"policy": "confirm", "allow": "sip:watcher@example.com"}))
	gina := "sip:gina@example.com"
	owner, w1, w2, gone := f.peer(t, "UDP"), f.peer(t, "UDP"), f.peer(t, "UDP"), f.peer(t, "UDP")
	wantCode(t, publish(t, owner, "presence", gina, "application/pidf+xml", pidf(gina, "pc", "open", "here")), 200)
	_, r := subscribe(t, w1, "presence", gina)
	wantCode(t, r, 200)
	w1.notify()
	left, r := subscribe(t, gone, "presence", gina)
	wantCode(t, r, 200)
	gone.notify()
	wantCode(t, left.again("Expires: 0"), 200)
	gone.notify()
	// a watcher the policy holds pending
	res := w2.send(msg{method: "SUBSCRIBE", uri: gina, headers: []string{
		"From: <sip:carol@example.net>;tag=c1", "To: <" + gina + ">", "Call-ID: " + newCallID(), "CSeq: 1 SUBSCRIBE",
		w2.contact(), "Event: presence"}})
	wantCode(t, res, 200)
	w2.notify()
	snap, _ := st.Load(t.Context())
	for _, rs := range snap.Resources {
		if rs.Event == "presence.winfo" {
			t.Fatalf("watcher-info state stored with nobody watching: %+v", rs)
		}
	}

	winfo := owner.send(msg{method: "SUBSCRIBE", uri: gina, headers: []string{
		"From: <" + gina + ">;tag=own1", "To: <" + gina + ">", "Call-ID: " + newCallID(), "CSeq: 1 SUBSCRIBE",
		owner.contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml"}})
	wantCode(t, winfo, 200)
	b := string(owner.notify().Body())
	if !strings.Contains(b, `state="full"`) || strings.Count(b, "<watcher ") != 2 ||
		!strings.Contains(b, `status="active"`) || !strings.Contains(b, `status="pending"`) || !strings.Contains(b, "sip:carol@example.net") {
		t.Fatalf("first winfo NOTIFY:\n%s", b)
	}
}
