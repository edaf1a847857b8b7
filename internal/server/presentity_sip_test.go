package server_test

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
)

// A softphone registered to the server's own, non-default port publishes
// with that port in the request-URI and in the PIDF entity (baresip and
// linphone both do): the port is where the server listens, not who the
// presentity is, so the PUBLISH is accepted and reaches a watcher of the
// URI without a port, and a watcher of the URI with the port.
func TestPresentityPortIsNotIdentity(t *testing.T) {
	f := start(t, nil, sdktest.Load(t, paPkg, nil))
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			_, port, _ := strings.Cut(f.addr[tr], ":")
			user := "alice-" + strings.ToLower(tr)
			bare := "sip:" + user + "@127.0.0.1"
			withPort := bare + ":" + port
			w := f.peer(t, tr)
			_, r := subscribe(t, w, "presence", bare)
			wantCode(t, r, 200)
			if body := string(w.notify().Body()); !strings.Contains(body, "<basic>closed</basic>") {
				t.Fatalf("NOTIFY before any PUBLISH:\n%s", body)
			}

			phone := f.peer(t, tr)
			r = publish(t, phone, "presence", withPort, "application/pidf+xml", pidf(withPort, "phone", "open", "at the desk"))
			wantCode(t, r, 200)
			body := string(w.notify().Body())
			if !strings.Contains(body, `id="phone"`) || !strings.Contains(body, "at the desk") {
				t.Fatalf("watcher of %s after a PUBLISH to %s:\n%s", bare, withPort, body)
			}
			if !strings.Contains(body, `entity="`+bare+`"`) {
				t.Fatalf("NOTIFY's entity is not the presentity %s:\n%s", bare, body)
			}

			w2 := f.peer(t, tr)
			_, r = subscribe(t, w2, "presence", withPort)
			wantCode(t, r, 200)
			if body := string(w2.notify().Body()); !strings.Contains(body, "at the desk") {
				t.Fatalf("watcher of %s:\n%s", withPort, body)
			}
		})
	}
}

// A REGISTER whose To carries the server's port binds the address of
// record a PUBLISH without the port reaches, so pa composes both into one
// document; a To spelled with an escaped letter is the same AOR too.
func TestPresentityRegisterWithPort(t *testing.T) {
	f := start(t, nil, sdktest.Load(t, paPkg, nil))
	_, port, _ := strings.Cut(f.addr["UDP"], ":")
	for _, c := range []struct{ name, user, to string }{
		{"port", "henry", "sip:henry@127.0.0.1:" + port},
		{"escaped", "ivy", "sip:%69vy@127.0.0.1:" + port},
	} {
		t.Run(c.name, func(t *testing.T) {
			bare := "sip:" + c.user + "@127.0.0.1"
			w := f.peer(t, "UDP")
			_, r := subscribe(t, w, "presence", bare)
			wantCode(t, r, 200)
			w.notify()

			p := f.peer(t, "UDP")
			r = p.send(msg{method: "REGISTER", uri: "sip:127.0.0.1:" + port, headers: []string{
				"From: <" + c.to + ">;tag=reg1", "To: <" + c.to + ">", "Call-ID: " + newCallID(), "CSeq: 1 REGISTER",
				"Contact: <sip:" + c.user + "@192.0.2.9:5393>", "Expires: 600"}})
			wantCode(t, r, 200)
			if body := string(w.notify().Body()); !strings.Contains(body, "sip:"+c.user+"@192.0.2.9:5393") {
				t.Fatalf("watcher of %s after a REGISTER of %s:\n%s", bare, c.to, body)
			}

			wantCode(t, publish(t, p, "presence", bare, "application/pidf+xml", pidf(bare, "desk", "open", "in")), 200)
			body := string(w.notify().Body())
			if !strings.Contains(body, "sip:"+c.user+"@192.0.2.9:5393") || !strings.Contains(body, `id="desk"`) {
				t.Fatalf("binding and publication not composed into one presentity:\n%s", body)
			}
			if n := strings.Count(body, "<tuple"); n != 2 {
				t.Fatalf("%d tuples, want the binding's and the publication's:\n%s", n, body)
			}
		})
	}
}
