package server_test

import (
	"fmt"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"strings"
	"testing"
	"time"
)

const paPkg = "github.com/presenced/presenced/extensions/pa"

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
	pa := extensiontest.Load(t, paPkg, map[string]string{"default_expires": "3600"})
	f := start(t, nil, pa)
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			bob := "sip:bob-" + strings.ToLower(tr) + "@example.com"
			phone, laptop := f.peer(t, tr), f.peer(t, tr)
			w1, w2 := f.peer(t, tr), f.peer(t, tr)

			// nobody published yet: a closed dummy document
			_, r := subscribe(t, w1, "presence", bob, "Accept: application/pidf+xml")
			wantCode(t, r, 200)
			if hdr(r, "Expires") != "3600" {
				t.Fatalf("default Expires = %q, want pa's 3600", hdr(r, "Expires"))
			}
			n := w1.notify()
			if hdr(n, "Content-Type") != "application/pidf+xml" || !strings.Contains(string(n.Body()), "<basic>closed</basic>") {
				t.Fatalf("NOTIFY before any PUBLISH:\n%s", n)
			}

			r = publish(t, phone, "presence", bob, "application/pidf+xml", pidf(bob, "phone", "open", "on the phone"))
			wantCode(t, r, 200)
			n = w1.notify()
			if body := string(n.Body()); !strings.Contains(body, `id="phone"`) || !strings.Contains(body, "on the phone") {
				t.Fatalf("NOTIFY after PUBLISH lacks the tuple:\n%s", n)
			}

			_, r = subscribe(t, w2, "presence", bob)
			wantCode(t, r, 200)
			if n := w2.notify(); !strings.Contains(string(n.Body()), `id="phone"`) {
				t.Fatalf("second watcher's first NOTIFY:\n%s", n)
			}

			// a second source: both watchers get both tuples
			r = publish(t, laptop, "presence", bob, "application/pidf+xml", pidf(bob, "laptop", "closed", "laptop asleep"))
			wantCode(t, r, 200)
			for _, w := range []*peer{w1, w2} {
				body := string(w.notify().Body())
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
				r = publish(t, phone, "presence", bob, "application/pidf+xml", c.body)
				wantCode(t, r, 400)
				if w := hdr(r, "Warning"); !strings.Contains(w, c.warning) {
					t.Fatalf("Warning %q does not say %q", w, c.warning)
				}
			}
			w1.quiet(200 * time.Millisecond)
			w2.quiet(time.Millisecond)

			// a watcher that accepts no PIDF is refused
			_, r = subscribe(t, w2, "presence", bob, "Accept: text/plain")
			wantCode(t, r, 406)
		})
	}
}
