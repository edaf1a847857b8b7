package server_test

import (
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/extensions/conference/confinfo"
)

const confPkg = "github.com/presenced/presenced/extensions/conference"

func confdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "extensions", "conference", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// confWatcher is a subscriber that rebuilds the conference from the
// NOTIFYs it gets, full or partial, as RFC 4575 §4.6 says a watcher must.
type confWatcher struct {
	p       *peer
	sub     *subscription
	doc     *etree.Element
	version uint64
	partial int
}

// take reads the next NOTIFY: its version must be the last one plus one.
func (w *confWatcher) take(t *testing.T) *sip.Request {
	t.Helper()
	n := w.p.notify()
	if hdr(n, "Content-Type") != confinfo.MediaType {
		t.Fatalf("NOTIFY without conference-info:\n%s", n)
	}
	d, err := confinfo.Parse(n.Body(), "")
	if err != nil {
		t.Fatalf("NOTIFY body: %v\n%s", err, n.Body())
	}
	if d.Version != w.version+1 {
		t.Fatalf("NOTIFY version %d after %d:\n%s", d.Version, w.version, n.Body())
	}
	w.version = d.Version
	if d.State == confinfo.Full {
		w.doc = confinfo.New(d)
	} else {
		w.partial++
		confinfo.Merge(w.doc, d.Root)
	}
	return n
}

// fetch is what a new subscriber gets now: a fetch (Expires: 0), one full
// NOTIFY, version 1.
func fetch(t *testing.T, p *peer, uri string) string {
	t.Helper()
	_, r := subscribe(t, p, "conference", uri, "Expires: 0")
	wantCode(t, r, 200)
	n := p.notify()
	d, err := confinfo.Parse(n.Body(), "")
	if err != nil {
		t.Fatalf("fetched body: %v\n%s", err, n.Body())
	}
	if d.State != confinfo.Full || d.Version != 1 {
		t.Fatalf("fetch got state %s version %d", d.State, d.Version)
	}
	return string(confinfo.Canonical(confinfo.New(d)))
}

// The conference package over SIP with the real module and
// use_partial_states: a watcher applying the partial documents it gets,
// in order, has at every step exactly what a new subscriber is sent.
func TestConferencePartialStates(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, confPkg, map[string]string{"use_partial_states": "true"}))
	const conf = "sip:conf233@example.com"
	pub, other := f.peer(t, "TCP"), f.peer(t, "TCP")
	w := &confWatcher{p: f.peer(t, "TCP")}
	w2 := &confWatcher{p: f.peer(t, "TCP")}

	check := func(step string) {
		t.Helper()
		want := fetch(t, other, conf)
		for _, x := range []*confWatcher{w, w2} {
			if got := string(confinfo.Canonical(x.doc)); got != want {
				t.Fatalf("%s: the watcher rebuilt\n%s\na new subscriber gets\n%s", step, got, want)
			}
		}
	}

	var r *sip.Response
	w.sub, r = subscribe(t, w.p, "conference", conf, "Expires: 600")
	wantCode(t, r, 200)
	w.take(t)
	w2.sub, r = subscribe(t, w2.p, "conference", conf, "Expires: 600", "Accept: application/conference-info+xml")
	wantCode(t, r, 200)
	w2.take(t)
	check("before any publication")

	// full -> partial -> partial (with deleted) -> full with a lower version
	etag := ""
	for _, name := range []string{"seq-1-full.xml", "seq-2-partial.xml", "seq-3-partial.xml", "seq-4-full-restarted.xml"} {
		var extra []string
		if etag != "" {
			extra = append(extra, "SIP-If-Match: "+etag)
		}
		r = publish(t, pub, "conference", conf, confinfo.MediaType, confdata(t, name), extra...)
		wantCode(t, r, 200)
		etag = hdr(r, "SIP-ETag")
		for _, x := range []*confWatcher{w, w2} {
			if n := x.take(t); name != "seq-1-full.xml" && hdr(n, "Subscription-State") == "" {
				t.Fatalf("%s: NOTIFY without Subscription-State", name)
			}
		}
		check(name)

		if name == "seq-3-partial.xml" {
			// out of order: 400, the Warning names both versions, no NOTIFY
			r = publish(t, pub, "conference", conf, confinfo.MediaType, confdata(t, "seq-stale-partial.xml"), "SIP-If-Match: "+etag)
			wantCode(t, r, 400)
			if wr := hdr(r, "Warning"); !strings.Contains(wr, "expected version above 7, got 6") {
				t.Fatalf("Warning = %q", wr)
			}
			w.p.quiet(200 * time.Millisecond)
			w2.p.quiet(time.Millisecond)
			check("after the refused partial")
		}
	}
	if w.partial != 4 || w.version != 5 {
		t.Fatalf("watcher got %d partial documents, version %d; want 4 and 5", w.partial, w.version)
	}

	// a refresh: full again, the version goes on
	wantCode(t, w.sub.again("Expires: 600"), 200)
	w.take(t)
	if w.version != 6 {
		t.Fatalf("version after refresh = %d", w.version)
	}
	check("refresh")

	// a partial before any full one, on a new publication: refused
	r = publish(t, other, "conference", conf, confinfo.MediaType, confdata(t, "seq-2-partial.xml"))
	wantCode(t, r, 400)
	if wr := hdr(r, "Warning"); !strings.Contains(wr, "before any full one") {
		t.Fatalf("Warning = %q", wr)
	}
	w.p.quiet(200 * time.Millisecond)

	// conference_reset: every watcher is told, with its next version
	answer, err := f.srv.Command("conference", "", "conference_reset", nil)
	if err != nil || !strings.Contains(answer, conf) {
		t.Fatalf("reset: %q %v", answer, err)
	}
	w.take(t)
	w2.take(t)
	check("reset")
	if s := string(confinfo.Canonical(w.doc)); !strings.Contains(s, "<active>false</active>") || strings.Contains(s, "<user ") {
		t.Fatalf("after reset: %s", s)
	}

	// a full document again, then its removal: the watchers see the
	// conference end, not silence
	r = publish(t, pub, "conference", conf, confinfo.MediaType, confdata(t, "seq-1-full.xml"), "SIP-If-Match: "+etag)
	wantCode(t, r, 200)
	etag = hdr(r, "SIP-ETag")
	w.take(t)
	w2.take(t)
	check("full after reset")
	wantCode(t, publish(t, pub, "conference", conf, "", "", "SIP-If-Match: "+etag, "Expires: 0"), 200)
	w.take(t)
	w2.take(t)
	check("unpublished")
	if s := string(confinfo.Canonical(w.doc)); strings.Contains(s, "<user ") {
		t.Fatalf("after the last publication went: %s", s)
	}

	// unsubscribe: a final full NOTIFY, still one version up
	wantCode(t, w.sub.again("Expires: 0"), 200)
	n := w.take(t)
	if hdr(n, "Subscription-State") != "terminated;reason=timeout" {
		t.Fatalf("final NOTIFY:\n%s", n)
	}
}

// Without use_partial_states every NOTIFY is a full document, and a
// watcher whose document did not change is not notified. Over UDP, so the
// documents are small: the host does not send a UDP NOTIFY near the MTU
// (RFC 3261 §18.1.1), and the scripted ones are bigger.
func TestConferenceFullStates(t *testing.T) {
	f := start(t, nil, extensiontest.Load(t, confPkg, nil))
	const conf = "sip:conf233@example.com"
	doc := func(state string, v int, users string) string {
		return `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="` + conf + `" state="` + state +
			`" version="` + strconv.Itoa(v) + `"><users>` + users + `</users></conference-info>`
	}
	pub := f.peer(t, "UDP")
	w := &confWatcher{p: f.peer(t, "UDP")}
	_, r := subscribe(t, w.p, "conference", conf)
	wantCode(t, r, 200)
	w.take(t)
	r = publish(t, pub, "conference", conf, confinfo.MediaType, doc("full", 1, `<user entity="sip:a@example.com"/>`))
	wantCode(t, r, 200)
	w.take(t)
	r = publish(t, pub, "conference", conf, confinfo.MediaType, doc("partial", 2, `<user entity="sip:b@example.com"/>`), "SIP-If-Match: "+hdr(r, "SIP-ETag"))
	wantCode(t, r, 200)
	w.take(t)
	if s := string(confinfo.Canonical(w.doc)); !strings.Contains(s, "sip:a@example.com") || !strings.Contains(s, "sip:b@example.com") {
		t.Fatalf("merged: %s", s)
	}
	// the same state again: no NOTIFY
	r = publish(t, pub, "conference", conf, confinfo.MediaType, doc("full", 1, `<user entity="sip:a@example.com"/><user entity="sip:b@example.com"/>`), "SIP-If-Match: "+hdr(r, "SIP-ETag"))
	wantCode(t, r, 200)
	w.p.quiet(200 * time.Millisecond)
	if w.partial != 0 || w.version != 3 {
		t.Fatalf("partial %d, version %d", w.partial, w.version)
	}
}
