//go:build !wasip1

// The conference module end to end: a real presenced server runs it
// (siptest), and the tests speak SIP to it as a conference focus and its
// watchers do. The server is the host's, which does not build for wasip1,
// where go vet reads these too.
package main_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/extensions/conference/confinfo"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const pkg = "github.com/presenced/presenced/extensions/conference"

// confdata is the document testdata/name, as a body to publish.
func confdata(t *testing.T, name string) string {
	t.Helper()
	return string(sdktest.Testdata(t, name))
}

// confWatcher is a subscriber that rebuilds the conference from the
// NOTIFYs it gets, full or partial, as RFC 4575 §4.6 says a watcher must.
type confWatcher struct {
	p       *siptest.Peer
	sub     *siptest.Subscription
	doc     *etree.Element
	version uint64
	partial int
}

// take reads the next NOTIFY and applies it.
func (w *confWatcher) take(t *testing.T) *sip.Request {
	t.Helper()
	return w.apply(t, w.p.Notify())
}

// apply checks n, a NOTIFY the watcher got: conference-info whose version
// is the last one plus one; and rebuilds the conference from it.
func (w *confWatcher) apply(t *testing.T, n *sip.Request) *sip.Request {
	t.Helper()
	if siptest.Header(n, "Content-Type") != confinfo.MediaType {
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
func fetch(t *testing.T, p *siptest.Peer, uri string) string {
	t.Helper()
	_, r := p.Subscribe("conference", uri, "Expires: 0")
	siptest.WantCode(t, r, 200)
	n := p.Notify()
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
	f := siptest.Start(t, siptest.Module{Package: pkg, Config: map[string]string{"use_partial_states": "true"}})
	const conf = "sip:conf233@example.com"
	pub, other := f.Peer(t, "TCP"), f.Peer(t, "TCP")
	w := &confWatcher{p: f.Peer(t, "TCP")}
	w2 := &confWatcher{p: f.Peer(t, "TCP")}

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
	w.sub, r = w.p.Subscribe("conference", conf, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w.take(t)
	w2.sub, r = w2.p.Subscribe("conference", conf, "Expires: 600", "Accept: application/conference-info+xml")
	siptest.WantCode(t, r, 200)
	w2.take(t)
	check("before any publication")

	// full -> partial -> partial (with deleted) -> full with a lower version
	etag := ""
	for _, name := range []string{"seq-1-full.xml", "seq-2-partial.xml", "seq-3-partial.xml", "seq-4-full-restarted.xml"} {
		var extra []string
		if etag != "" {
			extra = append(extra, "SIP-If-Match: "+etag)
		}
		r = pub.Publish("conference", conf, confinfo.MediaType, confdata(t, name), extra...)
		siptest.WantCode(t, r, 200)
		etag = siptest.Header(r, "SIP-ETag")
		for _, x := range []*confWatcher{w, w2} {
			if n := x.take(t); name != "seq-1-full.xml" && siptest.Header(n, "Subscription-State") == "" {
				t.Fatalf("%s: NOTIFY without Subscription-State", name)
			}
		}
		check(name)

		if name == "seq-3-partial.xml" {
			// out of order: 400, the Warning names both versions, no NOTIFY
			r = pub.Publish("conference", conf, confinfo.MediaType, confdata(t, "seq-stale-partial.xml"), "SIP-If-Match: "+etag)
			siptest.WantCode(t, r, 400)
			if wr := siptest.Header(r, "Warning"); !strings.Contains(wr, "expected version above 7, got 6") {
				t.Fatalf("Warning = %q", wr)
			}
			w.p.Quiet(200 * time.Millisecond)
			w2.p.Quiet(time.Millisecond)
			check("after the refused partial")
		}
	}
	if w.partial != 4 || w.version != 5 {
		t.Fatalf("watcher got %d partial documents, version %d; want 4 and 5", w.partial, w.version)
	}

	// a refresh: full again, the version goes on
	siptest.WantCode(t, w.sub.Again("Expires: 600"), 200)
	w.take(t)
	if w.version != 6 {
		t.Fatalf("version after refresh = %d", w.version)
	}
	check("refresh")

	// a partial before any full one, on a new publication: refused
	r = other.Publish("conference", conf, confinfo.MediaType, confdata(t, "seq-2-partial.xml"))
	siptest.WantCode(t, r, 400)
	if wr := siptest.Header(r, "Warning"); !strings.Contains(wr, "before any full one") {
		t.Fatalf("Warning = %q", wr)
	}
	w.p.Quiet(200 * time.Millisecond)

	// conference_reset: every watcher is told, with its next version
	answer, err := f.Command("conference", "", "conference_reset", nil)
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
	r = pub.Publish("conference", conf, confinfo.MediaType, confdata(t, "seq-1-full.xml"), "SIP-If-Match: "+etag)
	siptest.WantCode(t, r, 200)
	etag = siptest.Header(r, "SIP-ETag")
	w.take(t)
	w2.take(t)
	check("full after reset")
	siptest.WantCode(t, pub.Publish("conference", conf, "", "", "SIP-If-Match: "+etag, "Expires: 0"), 200)
	w.take(t)
	w2.take(t)
	check("unpublished")
	if s := string(confinfo.Canonical(w.doc)); strings.Contains(s, "<user ") {
		t.Fatalf("after the last publication went: %s", s)
	}

	// unsubscribe: a final full NOTIFY, still one version up
	siptest.WantCode(t, w.sub.Again("Expires: 0"), 200)
	n := w.take(t)
	if siptest.Header(n, "Subscription-State") != "terminated;reason=timeout" {
		t.Fatalf("final NOTIFY:\n%s", n)
	}
}

// Without use_partial_states every NOTIFY is a full document, and a
// watcher whose document did not change is not notified. Over UDP, so the
// documents are small: the host does not send a UDP NOTIFY near the MTU
// (RFC 3261 §18.1.1), and the scripted ones are bigger.
func TestConferenceFullStates(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	const conf = "sip:conf233@example.com"
	doc := func(state string, v int, users string) string {
		return `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="` + conf + `" state="` + state +
			`" version="` + strconv.Itoa(v) + `"><users>` + users + `</users></conference-info>`
	}
	pub := f.Peer(t, "UDP")
	w := &confWatcher{p: f.Peer(t, "UDP")}
	_, r := w.p.Subscribe("conference", conf)
	siptest.WantCode(t, r, 200)
	w.take(t)
	r = pub.Publish("conference", conf, confinfo.MediaType, doc("full", 1, `<user entity="sip:a@example.com"/>`))
	siptest.WantCode(t, r, 200)
	w.take(t)
	r = pub.Publish("conference", conf, confinfo.MediaType, doc("partial", 2, `<user entity="sip:b@example.com"/>`), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	w.take(t)
	if s := string(confinfo.Canonical(w.doc)); !strings.Contains(s, "sip:a@example.com") || !strings.Contains(s, "sip:b@example.com") {
		t.Fatalf("merged: %s", s)
	}
	// the same state again: no NOTIFY
	r = pub.Publish("conference", conf, confinfo.MediaType, doc("full", 1, `<user entity="sip:a@example.com"/><user entity="sip:b@example.com"/>`), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	w.p.Quiet(200 * time.Millisecond)
	if w.partial != 0 || w.version != 3 {
		t.Fatalf("partial %d, version %d", w.partial, w.version)
	}
}

// A burst of conference changes within the coalescing window reaches a
// watcher with consecutive versions (RFC 4575 §4.1: +1 per NOTIFY), full
// and partial documents alike, and what it rebuilds is what a new
// subscriber gets. Replacing a rendered NOTIFY skipped the versions the
// module had counted for the ones replaced.
func TestCoalescedConferenceVersionsAreConsecutive(t *testing.T) {
	for _, partial := range []string{"true", "false"} {
		t.Run("use_partial_states="+partial, func(t *testing.T) { coalescedConference(t, partial) })
	}
}

func coalescedConference(t *testing.T, partial string) {
	f := siptest.Start(t, siptest.Module{Package: pkg, Config: map[string]string{"use_partial_states": partial},
		Coalesce: map[string]time.Duration{"conference": 300 * time.Millisecond}})
	const conf = "sip:conf233@example.com"
	pub, other := f.Peer(t, "TCP"), f.Peer(t, "TCP")
	w := &confWatcher{p: f.Peer(t, "TCP")}
	var r *sip.Response
	w.sub, r = w.p.Subscribe("conference", conf, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w.take(t)

	etag := ""
	for _, name := range []string{"seq-1-full.xml", "seq-2-partial.xml", "seq-3-partial.xml"} {
		var extra []string
		if etag != "" {
			extra = append(extra, "SIP-If-Match: "+etag)
		}
		r = pub.Publish("conference", conf, confinfo.MediaType, confdata(t, name), extra...)
		siptest.WantCode(t, r, 200)
		etag = siptest.Header(r, "SIP-ETag")
	}
	// apply checks each version is the last plus one
	got := 0
	for n := w.p.NotifyWithin(time.Second); n != nil; n = w.p.NotifyWithin(time.Second) {
		w.apply(t, n)
		got++
	}
	if got == 0 || got == 3 {
		t.Fatalf("%d NOTIFYs after a burst of 3 changes within the window", got)
	}
	if want := fetch(t, other, conf); string(confinfo.Canonical(w.doc)) != want {
		t.Fatalf("the watcher rebuilt\n%s\na new subscriber gets\n%s", confinfo.Canonical(w.doc), want)
	}
}
