package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/beevik/etree"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/extensions/conference/confinfo"
	"github.com/presenced/presenced/sdk/sdktest"
)

const (
	pkg      = "github.com/presenced/presenced/extensions/conference"
	resource = "sip:conf233@example.com"
)

var w1 = abi.Watcher{ID: "w1", URI: "sip:bob@example.com", Full: true}

func publish(state []byte, id string, body []byte, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpPublish, Event: "conference", Resource: resource, State: state,
		Publication: &abi.Publication{ID: id, ContentType: infoType, Body: body}, Watchers: ws}
}

func unpublish(state []byte, id string, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpUnpublish, Event: "conference", Resource: resource, State: state,
		Publication: &abi.Publication{ID: id}, Watchers: ws}
}

func render(state []byte, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpRender, Event: "conference", Resource: resource, State: state, Watchers: ws}
}

// parse reads a document as a watcher would, normalized.
func parse(t testing.TB, b []byte) *confinfo.Doc {
	t.Helper()
	d, err := confinfo.Parse(b, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return d
}

// canon is a document's normalized form without state and version, for
// comparing what two documents say.
func canon(t testing.TB, b []byte) string {
	t.Helper()
	return string(confinfo.Canonical(confinfo.New(parse(t, b))))
}

const head = `<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="sip:conf233@example.com"`

// The merge as a pure function, rule by rule.
func TestMerge(t *testing.T) {
	tests := []struct{ name, base, partial, want string }{
		{"leaf replaced",
			`<conference-state><user-count>2</user-count><active>true</active></conference-state>`,
			`<conference-state><user-count>3</user-count></conference-state>`,
			`<conference-state><user-count>3</user-count><active>true</active></conference-state>`},
		{"keyed updated recursively",
			`<users><user entity="sip:a@x"><display-text>A</display-text><endpoint entity="sip:a@pc"><status>alerting</status><media id="1"><type>audio</type></media></endpoint></user></users>`,
			`<users><user entity="sip:a@x" state="partial"><endpoint entity="sip:a@pc" state="partial"><status>connected</status></endpoint></user></users>`,
			`<users><user entity="sip:a@x"><display-text>A</display-text><endpoint entity="sip:a@pc"><status>connected</status><media id="1"><type>audio</type></media></endpoint></user></users>`},
		{"keyed added",
			`<users><user entity="sip:a@x"/></users>`,
			`<users><user entity="sip:b@x" state="full"><display-text>B</display-text></user></users>`,
			`<users><user entity="sip:a@x"/><user entity="sip:b@x"><display-text>B</display-text></user></users>`},
		{"keyed deleted",
			`<users><user entity="sip:a@x"/><user entity="sip:b@x"/></users>`,
			`<users><user entity="sip:a@x" state="deleted"/></users>`,
			`<users><user entity="sip:b@x"/></users>`},
		{"delete of an unknown key is a no-op",
			`<users><user entity="sip:a@x"/></users>`,
			`<users><user entity="sip:zz@x" state="deleted"/></users>`,
			`<users><user entity="sip:a@x"/></users>`},
		{"keyed full replaces whole",
			`<users><user entity="sip:a@x"><display-text>A</display-text><roles><entry>chair</entry></roles></user></users>`,
			`<users><user entity="sip:a@x" state="full"><display-text>A2</display-text></user></users>`,
			`<users><user entity="sip:a@x"><display-text>A2</display-text></user></users>`},
		{"media keyed by id",
			`<users><user entity="sip:a@x"><endpoint entity="sip:a@pc"><media id="1"><status>sendrecv</status></media><media id="2"><status>recvonly</status></media></endpoint></user></users>`,
			`<users><user entity="sip:a@x"><endpoint entity="sip:a@pc"><media id="2"><status>inactive</status></media><media id="1" state="deleted"/></endpoint></user></users>`,
			`<users><user entity="sip:a@x"><endpoint entity="sip:a@pc"><media id="2"><status>inactive</status></media></endpoint></user></users>`},
		{"unkeyed group replaced as a whole",
			`<users><user entity="sip:a@x"><roles><entry>chair</entry><entry>participant</entry></roles></user></users>`,
			`<users><user entity="sip:a@x"><roles><entry>participant</entry></roles></user></users>`,
			`<users><user entity="sip:a@x"><roles><entry>participant</entry></roles></user></users>`},
		{"section deleted",
			`<conference-description><subject>S</subject></conference-description><users/>`,
			`<conference-description state="deleted"/>`,
			`<users/>`},
		{"section full replaces whole",
			`<conference-description><subject>S</subject><keywords>k</keywords></conference-description>`,
			`<conference-description state="full"><subject>T</subject></conference-description>`,
			`<conference-description><subject>T</subject></conference-description>`},
		{"attributes set",
			`<users><user entity="sip:a@x"><endpoint entity="sip:a@pc"/></user></users>`,
			`<users><user entity="sip:a@x"><endpoint entity="sip:a@pc" foo="bar"/></user></users>`,
			`<users><user entity="sip:a@x"><endpoint entity="sip:a@pc" foo="bar"/></user></users>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := confinfo.New(parse(t, []byte(head+` state="full" version="1">`+tt.base+`</conference-info>`)))
			p := parse(t, []byte(head+` state="partial" version="2">`+tt.partial+`</conference-info>`))
			confinfo.Merge(base, p.Root)
			want := canon(t, []byte(head+`>`+tt.want+`</conference-info>`))
			if got := string(confinfo.Canonical(base)); got != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// The RFC 4575 §6 document with a partial notification applied.
func TestMergeRFCExample(t *testing.T) {
	base := confinfo.New(parse(t, sdktest.Testdata(t, "rfc4575.xml")))
	confinfo.Merge(base, parse(t, sdktest.Testdata(t, "rfc4575-partial.xml")).Root)
	if got, want := string(confinfo.Canonical(base)), canon(t, sdktest.Testdata(t, "rfc4575-merged.xml")); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

var sequence = []string{"seq-1-full.xml", "seq-2-partial.xml", "seq-3-partial.xml", "seq-4-full-restarted.xml"}

// Diff then Merge gives back the new document, between every pair of the
// scripted states, the empty conference included, both ways.
func TestDiffRoundTrip(t *testing.T) {
	st := &state{}
	docs := []*etree.Element{confinfo.Empty(resource)}
	for _, f := range sequence {
		if _, err := apply(st, "a", parse(t, sdktest.Testdata(t, f))); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		d, err := compose(resource, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	for i, a := range docs {
		for j, b := range docs {
			d, ok := confinfo.Diff(a.Copy(), b)
			if !ok {
				t.Logf("%d -> %d: full", i, j)
				continue
			}
			if i == j {
				if d != nil {
					t.Fatalf("%d -> %d: a diff of a document with itself", i, j)
				}
				continue
			}
			// as a watcher gets it: rendered, parsed, merged
			got := a.Copy()
			confinfo.Merge(got, parse(t, confinfo.Render(d, confinfo.Partial, 9)).Root)
			if !bytes.Equal(confinfo.Canonical(got), confinfo.Canonical(b)) {
				t.Fatalf("%d -> %d: merged diff\n%s\nwant\n%s", i, j, confinfo.Canonical(got), confinfo.Canonical(b))
			}
		}
	}
}

// client is a watcher with use_partial_states: it rebuilds the document
// from the notifications it got, and checks versions.
type client struct {
	w       abi.Watcher
	doc     *etree.Element
	version uint64
	partial int // partial notifications received
}

func (c *client) take(t *testing.T, n abi.Notification) {
	t.Helper()
	d := parse(t, n.Body)
	if d.Version != c.version+1 {
		t.Fatalf("%s: version %d after %d", c.w.ID, d.Version, c.version)
	}
	if (d.State == confinfo.Partial) != n.Partial {
		t.Fatalf("%s: state %s but Partial %v", c.w.ID, d.State, n.Partial)
	}
	c.version = d.Version
	if d.State == confinfo.Full {
		c.doc = confinfo.New(d)
	} else {
		c.partial++
		confinfo.Merge(c.doc, d.Root)
	}
	c.w.State, c.w.Full = n.State, false
}

func notes(t *testing.T, res *abi.Response, cs ...*client) {
	t.Helper()
	got := map[string]abi.Notification{}
	for _, n := range res.Notifications {
		got[n.WatcherID] = n
	}
	for _, c := range cs {
		if n, ok := got[c.w.ID]; ok {
			c.take(t, n)
		}
	}
}

// fresh is what a new full subscriber gets now.
func fresh(t *testing.T, m *sdktest.Module, state []byte) string {
	t.Helper()
	res := sdktest.Handle(t, m, render(state, abi.Watcher{ID: "fresh", Full: true}))
	if len(res.Notifications) != 1 || res.Notifications[0].Partial {
		t.Fatalf("render: %+v", res)
	}
	d := parse(t, res.Notifications[0].Body)
	if d.State != confinfo.Full || d.Version != 1 {
		t.Fatalf("fresh subscriber got state %s version %d", d.State, d.Version)
	}
	return string(confinfo.Canonical(confinfo.New(d)))
}

func (c *client) check(t *testing.T, m *sdktest.Module, state []byte, step string) {
	t.Helper()
	if got, want := string(confinfo.Canonical(c.doc)), fresh(t, m, state); got != want {
		t.Fatalf("%s: %s rebuilt\n%s\nfresh subscriber got\n%s", step, c.w.ID, got, want)
	}
}

// The scripted sequence as real wasm: a partial-state watcher and a
// full-state one (a second module instance with the default config) stay
// in step with a fresh subscriber; refusals change nothing.
func TestSequence(t *testing.T) {
	m := sdktest.Load(t, pkg, map[string]string{"use_partial_states": "true"})
	p := &client{w: abi.Watcher{ID: "p", Full: true}}
	res := sdktest.Handle(t, m, render(nil, p.w))
	notes(t, res, p)
	p.check(t, m, nil, "before any publication")

	var state []byte
	for _, f := range sequence {
		res := sdktest.Handle(t, m, publish(state, "a", sdktest.Testdata(t, f), p.w))
		if !res.StateChanged {
			t.Fatalf("%s: state unchanged", f)
		}
		state = res.State
		if len(res.Notifications) != 1 {
			t.Fatalf("%s: %d notifications", f, len(res.Notifications))
		}
		notes(t, res, p)
		p.check(t, m, state, f)
		if f == "seq-3-partial.xml" {
			// out of order: refused, nothing changes
			res, err := m.Handle(context.Background(), publish(state, "a", sdktest.Testdata(t, "seq-stale-partial.xml"), p.w))
			if err != nil {
				t.Fatal(err)
			}
			if res.Code != 400 || res.Reason != "out-of-order partial document: expected version above 7, got 6" ||
				res.StateChanged || len(res.Notifications) != 0 {
				t.Fatalf("stale partial: %+v", res)
			}
		}
	}
	if p.partial != 4 {
		t.Fatalf("%d partial notifications, want 4", p.partial)
	}

	// a refresh gets a full document, version still rising
	p.w.Full = true
	notes(t, sdktest.Handle(t, m, render(state, p.w)), p)
	if p.version != 6 {
		t.Fatalf("version after refresh = %d", p.version)
	}
	// the same document again: no NOTIFY
	res = sdktest.Handle(t, m, publish(state, "a", sdktest.Testdata(t, "seq-4-full-restarted.xml"), p.w))
	if len(res.Notifications) != 0 {
		t.Fatalf("unchanged document notified: %+v", res.Notifications)
	}
	// the publication goes: the empty conference, not silence
	res = sdktest.Handle(t, m, unpublish(state, "a", p.w))
	notes(t, res, p)
	p.check(t, m, res.State, "unpublished")
	if p.version != 7 || !strings.Contains(string(confinfo.Canonical(p.doc)), "<active>false</active>") {
		t.Fatalf("after unpublish: version %d, %s", p.version, confinfo.Canonical(p.doc))
	}
}

// Without use_partial_states every NOTIFY is full, versions still per
// watcher.
func TestFullStatesOnly(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	f := &client{w: abi.Watcher{ID: "f", Full: true}}
	notes(t, sdktest.Handle(t, m, render(nil, f.w)), f)
	var state []byte
	for _, name := range sequence {
		res := sdktest.Handle(t, m, publish(state, "a", sdktest.Testdata(t, name), f.w))
		state = res.State
		if len(res.Notifications) != 1 || res.Notifications[0].Partial {
			t.Fatalf("%s: %+v", name, res.Notifications)
		}
		notes(t, res, f)
		f.check(t, m, state, name)
	}
	if f.partial != 0 || f.version != 5 {
		t.Fatalf("partial %d, version %d", f.partial, f.version)
	}
}

// Two publications: each keeps its own merged document; watchers see
// them merged in the order they last changed, the latest winning.
func TestComposition(t *testing.T) {
	m := sdktest.Load(t, pkg, map[string]string{"use_partial_states": "true"})
	p := &client{w: abi.Watcher{ID: "p", Full: true}}
	notes(t, sdktest.Handle(t, m, render(nil, p.w)), p)
	doc := func(v int, state, users string) []byte {
		return fmt.Appendf(nil, `%s state="%s" version="%d"><users>%s</users></conference-info>`, head, state, v, users)
	}
	res := sdktest.Handle(t, m, publish(nil, "focus", doc(1, "full", `<user entity="sip:a@x"><display-text>A</display-text></user>`), p.w))
	notes(t, res, p)
	res = sdktest.Handle(t, m, publish(res.State, "mixer", doc(1, "full", `<user entity="sip:a@x"><endpoint entity="sip:a@pc"><status>connected</status></endpoint></user><user entity="sip:b@x"/>`), p.w))
	notes(t, res, p)
	p.check(t, m, res.State, "two publications")
	want := `<users><user entity="sip:a@x"><display-text>A</display-text><endpoint entity="sip:a@pc"><status>connected</status></endpoint></user><user entity="sip:b@x"/></users>`
	if got := string(confinfo.Canonical(p.doc)); !strings.Contains(got, want) {
		t.Fatalf("composed\n%s\nwant users\n%s", got, want)
	}
	// the focus changes A's display text: it is now the latest, and wins
	res = sdktest.Handle(t, m, publish(res.State, "focus", doc(2, "partial", `<user entity="sip:a@x"><display-text>A2</display-text></user>`), p.w))
	notes(t, res, p)
	p.check(t, m, res.State, "focus partial")
	// versions are per publication: the mixer's partial 2 is fine
	res = sdktest.Handle(t, m, publish(res.State, "mixer", doc(2, "partial", `<user entity="sip:b@x" state="deleted"/>`), p.w))
	notes(t, res, p)
	p.check(t, m, res.State, "mixer partial")
	if strings.Contains(string(confinfo.Canonical(p.doc)), "sip:b@x") {
		t.Fatalf("b is still there: %s", confinfo.Canonical(p.doc))
	}
	// the mixer goes: what only it said goes with it
	res = sdktest.Handle(t, m, unpublish(res.State, "mixer", p.w))
	notes(t, res, p)
	p.check(t, m, res.State, "mixer gone")
	if strings.Contains(string(confinfo.Canonical(p.doc)), "sip:a@pc") {
		t.Fatalf("the mixer's endpoint is still there: %s", confinfo.Canonical(p.doc))
	}
}

func TestReset(t *testing.T) {
	m := sdktest.Load(t, pkg, map[string]string{"use_partial_states": "true"})
	if c := m.Manifest().Commands; len(c) != 1 || c[0] != "conference_reset" {
		t.Fatalf("commands = %v", c)
	}
	p := &client{w: abi.Watcher{ID: "p", Full: true}}
	notes(t, sdktest.Handle(t, m, render(nil, p.w)), p)
	res := sdktest.Handle(t, m, publish(nil, "a", sdktest.Testdata(t, "seq-1-full.xml"), p.w))
	notes(t, res, p)
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpCommand, Event: "conference", Resource: resource, State: res.State,
		Command: &abi.Command{Name: "conference_reset"}, Watchers: []abi.Watcher{p.w}})
	if !res.StateChanged || len(res.State) != 0 || len(res.Notifications) != 1 || !strings.Contains(res.Reason, "1 publication(s) cleared") {
		t.Fatalf("reset: %+v", res)
	}
	notes(t, res, p)
	p.check(t, m, nil, "reset")
	if p.version != 3 {
		t.Fatalf("version %d", p.version)
	}
	// after a reset a partial has nothing to apply to
	r, err := m.Handle(context.Background(), publish(nil, "a", sdktest.Testdata(t, "seq-2-partial.xml")))
	if err != nil || r.Code != 400 || !strings.Contains(r.Reason, "before any full one") {
		t.Fatalf("partial after reset: %+v %v", r, err)
	}
	r, err = m.Handle(context.Background(), &abi.Request{Op: abi.OpCommand, Event: "conference", Resource: resource,
		Command: &abi.Command{Name: "nope"}})
	if err != nil || r.Code != 400 {
		t.Fatalf("unknown command: %+v %v", r, err)
	}
}

func TestManifestAndConfig(t *testing.T) {
	m := sdktest.Load(t, pkg, map[string]string{"use_partial_states": "true", "default_expires": "120"})
	p := m.Manifest().Packages
	if len(p) != 1 || p[0].Event != "conference" || len(p[0].Accept) != 1 || p[0].Accept[0] != infoType ||
		p[0].DefaultExpires != 120 {
		t.Fatalf("manifest = %+v", m.Manifest())
	}
	if got := sdktest.Load(t, pkg, nil).Manifest().Packages[0].DefaultExpires; got != 3600 {
		t.Fatalf("default expires = %d", got)
	}
	for _, cfg := range []map[string]string{{"default_expires": "0"}, {"use_partial_states": "sometimes"}} {
		if err := sdktest.LoadError(t, pkg, cfg); err == nil {
			t.Errorf("config %v loaded, want an error", cfg)
		}
	}
}

func TestRejects(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	tests := []struct{ file, body, reason string }{
		{"bad-unclosed.xml", "", "not well-formed XML: XML syntax error on line 5: element <users> closed by </conference-info>"},
		{"bad-root.xml", "", `root element is <presence> in namespace "urn:ietf:params:xml:ns:pidf", want <conference-info> in "urn:ietf:params:xml:ns:conference-info"`},
		{"bad-no-entity.xml", "", "<conference-info> has no entity attribute"},
		{"bad-entity.xml", "", `entity "sip:conf999@example.com" is not the resource published to, "sip:conf233@example.com"`},
		{"", head + ` state="partial" version="3"/>`, `partial document version 3 before any full one: expected state="full"`},
		{"", head + ` state="partial"/>`, "partial document without a version"},
		{"", head + ` state="gone"/>`, `<conference-info> state "gone": want full or partial`},
		{"", head + ` version="-1"/>`, `<conference-info> version "-1" is not an unsigned integer`},
		{"", head + `><users><user/></users></conference-info>`, "<user> inside <users> has no entity attribute"},
		{"", head + `><users><user entity="sip:a@x"/><user entity="sip:a@x"/></users></conference-info>`, "<user> inside <users>: urn:ietf:params:xml:ns:conference-info user entity=sip:a@x appears twice"},
		{"", head + `><users><user entity="sip:a@x" state="maybe"/></users></conference-info>`, `<user> state "maybe": want full, partial or deleted`},
	}
	for _, tt := range tests {
		body := []byte(tt.body)
		if tt.file != "" {
			body = sdktest.Testdata(t, tt.file)
		}
		res, err := m.Handle(context.Background(), publish(nil, "a", body, w1))
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != 400 || res.Reason != tt.reason || res.StateChanged || len(res.Notifications) != 0 {
			t.Errorf("%s%s: got %d %q, want 400 %q", tt.file, tt.body, res.Code, res.Reason, tt.reason)
		}
	}

	req := publish(nil, "a", sdktest.Testdata(t, "rfc4575.xml"))
	req.Publication.ContentType = "application/pidf+xml"
	res, err := m.Handle(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 415 || res.Reason != `content type "application/pidf+xml" is not supported, only application/conference-info+xml` {
		t.Fatalf("got %d %q", res.Code, res.Reason)
	}

	res, err = m.Handle(context.Background(), render(nil, abi.Watcher{ID: "w1", Accept: []string{"application/pidf+xml"}}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 406 {
		t.Fatalf("render for a watcher accepting only PIDF: %d %q", res.Code, res.Reason)
	}
}

// Namespaces are moved to the root, so a merged or composed document
// never carries a prefix nobody declared.
func TestForeignNamespaces(t *testing.T) {
	full := []byte(head + ` xmlns:ex="urn:example:a" state="full" version="1"><users><user entity="sip:a@x"><ex:mood>ok</ex:mood></user></users></conference-info>`)
	partial := []byte(head + ` state="partial" version="2"><users><user entity="sip:a@x"><ex:mood xmlns:ex="urn:example:b">b</ex:mood><y:z xmlns:y="urn:example:a">same ns as ex</y:z></user></users></conference-info>`)
	st := &state{}
	for _, b := range [][]byte{full, partial} {
		if _, err := apply(st, "a", parse(t, b)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := compose(resource, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := confinfo.Render(d, confinfo.Full, 1)
	got := parse(t, out) // refuses undeclared prefixes
	c := string(confinfo.Canonical(got.Root))
	for _, want := range []string{`xmlns:ex="urn:example:a"`, `xmlns:ns1="urn:example:b"`, `<ex:mood>ok</ex:mood>`, `<ns1:mood>b</ns1:mood>`, `<ex:z>same ns as ex</ex:z>`} {
		if !strings.Contains(c, want) {
			t.Errorf("%s lacks %s", c, want)
		}
	}
}

func TestUndecodableStateFails(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	_, err := m.Handle(context.Background(), render([]byte{0x0a, 0x10, 'x'}, w1))
	if err == nil {
		t.Fatal("render over an undecodable state did not fail")
	}
}
