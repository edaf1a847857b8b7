package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/sdktest"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	pkg      = "github.com/presenced/presenced/extensions/pa"
	resource = "sip:alice@example.com"
)

func watcher(id string, accept ...string) abi.Watcher {
	return abi.Watcher{ID: id, URI: "sip:bob@example.com", Accept: accept, Full: true}
}

func publish(state []byte, id string, body []byte, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpPublish, Event: "presence", Resource: resource, State: state,
		Publication: &abi.Publication{ID: id, ContentType: pidfType, Body: body}, Watchers: ws}
}

// only returns the single notification of res, checking it is for w1.
func only(t *testing.T, res *abi.Response) abi.Notification {
	t.Helper()
	if len(res.Notifications) != 1 || res.Notifications[0].WatcherID != "w1" {
		t.Fatalf("notifications = %+v", res.Notifications)
	}
	return res.Notifications[0]
}

type element struct{ space, local, id string }

// parse re-reads a composed document with encoding/xml, which resolves
// prefixes, and fails the test unless it is well-formed and every prefix
// was declared.
func parse(t *testing.T, body []byte) []element {
	t.Helper()
	var out []element
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("composed document is not well-formed: %v\n%s", err, body)
		}
		if s, ok := tok.(xml.StartElement); ok {
			if s.Name.Space != "" && !strings.Contains(s.Name.Space, ":") {
				t.Fatalf("element %s:%s has an undeclared prefix\n%s", s.Name.Space, s.Name.Local, body)
			}
			e := element{space: s.Name.Space, local: s.Name.Local}
			for _, a := range s.Attr {
				if a.Name.Space == "" && a.Name.Local == "id" {
					e.id = a.Value
				}
			}
			out = append(out, e)
		}
	}
	return out
}

func find(es []element, space, local string) []element {
	var out []element
	for _, e := range es {
		if e.space == space && e.local == local {
			out = append(out, e)
		}
	}
	return out
}

func TestManifest(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	man := m.Manifest()
	if len(man.Packages) != 2 || strings.Join(man.Commands, ",") != "approve,reject" {
		t.Fatalf("manifest = %+v", man)
	}
	p := man.Packages[0]
	if p.Event != "presence" || len(p.Accept) != 1 || p.Accept[0] != pidfType || p.DefaultExpires != 3600 ||
		!p.Bindings || p.WatcherInfoOf != "" || p.MinExpires != 0 || p.MaxExpires != 0 {
		t.Fatalf("package = %+v", p)
	}
	w := man.Packages[1]
	if w.Event != "presence.winfo" || len(w.Accept) != 0 || w.DefaultExpires != 3600 || w.Bindings ||
		w.WatcherInfoOf != "presence" {
		t.Fatalf("winfo package = %+v", w)
	}
	m = sdktest.Load(t, pkg, map[string]string{"default_expires": "600", "future_key": "x",
		"min_expires": "60", "max_expires": "7200"})
	for _, p := range m.Manifest().Packages {
		if p.DefaultExpires != 600 || p.MinExpires != 60 || p.MaxExpires != 7200 {
			t.Fatalf("%s: expires = %d [%d, %d], want 600 [60, 7200]", p.Event, p.DefaultExpires, p.MinExpires, p.MaxExpires)
		}
	}
	m = sdktest.Load(t, pkg, map[string]string{"min_expires": "0", "max_expires": "0"})
	if p := m.Manifest().Packages[0]; p.MinExpires != 0 || p.MaxExpires != 0 {
		t.Fatalf("0 is unset: %+v", p)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []map[string]string{
		{"default_expires": "0"},
		{"default_expires": "-60"},
		{"default_expires": "an hour"},
		{"dummy_presence": "maybe"},
		{"lenient_basic": "sometimes"},
		{"policy": "deny"},
		{"allow": "sip:bob@example.com,bob@example.com"},
		{"block": "example.com, sip:"},
		{"block": "<sip:bob@example.com>;x=1,what?"},
		{"min_expires": "-1"},
		{"max_expires": "a day"},
		{"min_expires": "600", "max_expires": "60"},
		{"max_expires": "1800"}, // default_expires 3600 is above it
		{"min_expires": "7200"},
	} {
		if err := sdktest.LoadError(t, pkg, cfg); err == nil {
			t.Errorf("config %v loaded, want an error", cfg)
		}
	}
}

func TestPublish(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, publish(nil, "p1", sdktest.Testdata(t, "simple.xml"), watcher("w1")))
	if !res.StateChanged || len(res.State) == 0 {
		t.Fatalf("state not changed: %+v", res)
	}
	n := only(t, res)
	if n.ContentType != pidfType {
		t.Fatalf("content type = %q", n.ContentType)
	}
	es := parse(t, n.Body)
	if es[0].space != nsPIDF || es[0].local != "presence" {
		t.Fatalf("root = %+v", es[0])
	}
	if !bytes.Contains(n.Body, []byte(`entity="sip:alice@example.com"`)) {
		t.Fatalf("entity is not the resource:\n%s", n.Body)
	}
	if ts := find(es, nsPIDF, "tuple"); len(ts) != 1 || ts[0].id != "sg89ae" {
		t.Fatalf("tuples = %+v\n%s", ts, n.Body)
	}
	for _, want := range []string{"<basic>open</basic>", `<note xml:lang="en">At my desk</note>`, "sip:alice@pc33.example.com"} {
		if !bytes.Contains(n.Body, []byte(want)) {
			t.Errorf("body lacks %s:\n%s", want, n.Body)
		}
	}

	// Rendering the stored state gives the same document and keeps the state.
	r := sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource,
		State: res.State, Watchers: []abi.Watcher{watcher("w1")}})
	if r.StateChanged || !bytes.Equal(only(t, r).Body, n.Body) {
		t.Fatalf("render = %+v, want the publish's body unchanged", r)
	}
}

func TestContentTypeIsCaseAndParameterInsensitive(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	req := publish(nil, "p1", sdktest.Testdata(t, "simple.xml"))
	req.Publication.ContentType = "Application/PIDF+XML; charset=UTF-8"
	sdktest.Handle(t, m, req)
}

func TestComposeTwoPublications(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, publish(nil, "phone", sdktest.Testdata(t, "rpid.xml")))
	res = sdktest.Handle(t, m, publish(res.State, "mobile", sdktest.Testdata(t, "clash.xml"), watcher("w1")))
	body := only(t, res).Body
	es := parse(t, body)

	ts := find(es, nsPIDF, "tuple")
	if len(ts) != 2 || ts[0].id != "sg89ae" || ts[1].id != "sg89ae-2" {
		t.Fatalf("tuples = %+v, want sg89ae then sg89ae-2\n%s", ts, body)
	}
	// Each prefixed element is still in the namespace its publication meant,
	// even though both bind rp, to different namespaces.
	checks := []struct{ space, local string }{
		{"urn:ietf:params:xml:ns:pidf:rpid", "mood"},
		{"urn:ietf:params:xml:ns:pidf:rpid", "user-input"},
		{"urn:ietf:params:xml:ns:pidf:cipid", "display-name"},
		{"urn:ietf:params:xml:ns:pidf:data-model", "person"},
		{"urn:ietf:params:xml:ns:pidf:data-model", "device"},
		{"urn:ietf:params:xml:ns:pidf:caps", "audio"},
		{"urn:example:extra", "extra"},
		{nsPIDF, "note"},
	}
	for _, c := range checks {
		if len(find(es, c.space, c.local)) != 1 {
			t.Errorf("no single <%s> in %s\n%s", c.local, c.space, body)
		}
	}
	// The PIDF schema's order: tuples, then notes, then other namespaces.
	var order []string
	for _, e := range es[1:] {
		switch {
		case e.space == nsPIDF && (e.local == "tuple" || e.local == "note"):
			order = append(order, e.local)
		case e.local == "person" || e.local == "device" || e.local == "extra":
			order = append(order, e.local)
		}
	}
	if got := strings.Join(order, " "); got != "tuple tuple note person device extra" {
		t.Errorf("top-level order = %s\n%s", got, body)
	}
	if !bytes.Contains(body, []byte("Don't disturb &amp; don't call")) {
		t.Errorf("note text not kept:\n%s", body)
	}
}

func TestModify(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, publish(nil, "p1", sdktest.Testdata(t, "simple.xml")))
	res = sdktest.Handle(t, m, publish(res.State, "p2", sdktest.Testdata(t, "rpid.xml")))
	closed := bytes.Replace(sdktest.Testdata(t, "simple.xml"), []byte("<basic>open</basic>"), []byte("<basic>closed</basic>"), 1)
	res = sdktest.Handle(t, m, publish(res.State, "p1", closed, watcher("w1")))
	body := only(t, res).Body
	if bytes.Contains(body, []byte("At my desk</note>\n<tuple")) || !bytes.Contains(body, []byte("<basic>closed</basic>")) {
		t.Fatalf("modify not applied:\n%s", body)
	}
	ts := find(parse(t, body), nsPIDF, "tuple")
	// p1 keeps its place, first, so it keeps the id and p2 still yields.
	if len(ts) != 2 || ts[0].id != "sg89ae" || ts[1].id != "sg89ae-2" {
		t.Fatalf("tuples = %+v\n%s", ts, body)
	}
	if i, j := bytes.Index(body, []byte("<basic>closed</basic>")), bytes.Index(body, []byte("<basic>open</basic>")); i < 0 || j < 0 || i > j {
		t.Fatalf("modified publication moved:\n%s", body)
	}
}

func TestUnpublish(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, publish(nil, "p1", sdktest.Testdata(t, "simple.xml")))
	res = sdktest.Handle(t, m, publish(res.State, "p2", sdktest.Testdata(t, "clash.xml")))
	state := res.State

	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpUnpublish, Event: "presence", Resource: resource,
		State: state, Publication: &abi.Publication{ID: "p1"}, Watchers: []abi.Watcher{watcher("w1")}})
	if !res.StateChanged {
		t.Fatal("unpublish did not change the state")
	}
	body := only(t, res).Body
	ts := find(parse(t, body), nsPIDF, "tuple")
	if len(ts) != 1 || ts[0].id != "sg89ae" || bytes.Contains(body, []byte("At my desk")) {
		t.Fatalf("after unpublish of p1, tuples = %+v\n%s", ts, body)
	}

	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpUnpublish, Event: "presence", Resource: resource,
		State: state, Publication: &abi.Publication{ID: "gone"}, Watchers: []abi.Watcher{watcher("w1")}})
	if res.StateChanged {
		t.Fatal("unpublish of an unknown id changed the state")
	}
	if ts := find(parse(t, only(t, res).Body), nsPIDF, "tuple"); len(ts) != 2 {
		t.Fatalf("unknown unpublish: tuples = %+v", ts)
	}
}

func TestRejects(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	tests := []struct {
		file   string
		reason string
	}{
		{"bad-unclosed.xml", "not well-formed XML: line 5: element <tuple> closed by </presence>"},
		{"bad-two-roots.xml", "not well-formed XML: line 2: second root element <presence>"},
		{"bad-prefix.xml", `not well-formed XML: line 4: element <rp:mood> uses undeclared prefix "rp"`},
		{"bad-namespace.xml", `root element is <presence> in namespace "urn:ietf:params:xml:ns:cpim-pidf", want <presence> in "urn:ietf:params:xml:ns:pidf"`},
		{"bad-no-entity.xml", "<presence> has no entity attribute"},
		{"bad-entity.xml", `entity "sip:mallory@example.com" is not the resource published to, "sip:alice@example.com"`},
		{"bad-tuple-id.xml", "tuple 1 has no id attribute"},
		{"bad-tuple-status.xml", `tuple "t1" has no <status>`},
		{"bad-basic.xml", `tuple "t1": <basic> is "busy", want open or closed`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res, err := m.Handle(context.Background(), publish(nil, "p1", sdktest.Testdata(t, tt.file), watcher("w1")))
			if err != nil {
				t.Fatal(err)
			}
			if res.Code != 400 || res.Reason != tt.reason || res.StateChanged || len(res.Notifications) != 0 {
				t.Fatalf("got %d %q (changed %v), want 400 %q", res.Code, res.Reason, res.StateChanged, tt.reason)
			}
		})
	}
	t.Run("eof", func(t *testing.T) {
		res, _ := m.Handle(context.Background(), publish(nil, "p1", []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple`)))
		if res.Code != 400 || !strings.HasPrefix(res.Reason, "not well-formed XML: line 1: unterminated start tag <tuple") {
			t.Fatalf("got %d %q", res.Code, res.Reason)
		}
	})
	t.Run("415", func(t *testing.T) {
		req := publish(nil, "p1", sdktest.Testdata(t, "simple.xml"))
		req.Publication.ContentType = "application/xpidf+xml"
		res, err := m.Handle(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != 415 || res.Reason != `content type "application/xpidf+xml" is not supported, only application/pidf+xml` {
			t.Fatalf("got %d %q", res.Code, res.Reason)
		}
	})
}

func TestRenderAccept(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	render := func(accept ...string) *abi.Response {
		res, err := m.Handle(context.Background(), &abi.Request{Op: abi.OpRender, Event: "presence",
			Resource: resource, Watchers: []abi.Watcher{watcher("w1", accept...)}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := render("application/xpidf+xml", "text/plain")
	if res.Code != 406 || res.Reason != "watcher accepts application/xpidf+xml, text/plain; this package sends only application/pidf+xml" {
		t.Fatalf("got %d %q", res.Code, res.Reason)
	}
	for _, accept := range [][]string{nil, {"application/pidf+xml"}, {"Application/PIDF+XML;q=0.5"},
		{"application/*"}, {"text/plain, */*"}, {"application/xpidf+xml", "application/pidf+xml"}} {
		if res := render(accept...); res.Code != 0 || len(res.Notifications) != 1 {
			t.Errorf("Accept %q: got %d %q", accept, res.Code, res.Reason)
		}
	}
}

func TestDummy(t *testing.T) {
	req := &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource,
		Watchers: []abi.Watcher{watcher("w1")}}

	n := only(t, sdktest.Handle(t, sdktest.Load(t, pkg, nil), req))
	es := parse(t, n.Body)
	if ts := find(es, nsPIDF, "tuple"); n.ContentType != pidfType || len(ts) != 1 || ts[0].id != "pa-dummy" ||
		!bytes.Contains(n.Body, []byte("<basic>closed</basic>")) {
		t.Fatalf("dummy = %q %s", n.ContentType, n.Body)
	}

	off := sdktest.Load(t, pkg, map[string]string{"dummy_presence": "false"})
	if n := only(t, sdktest.Handle(t, off, req)); n.ContentType != "" || n.Body != nil {
		t.Fatalf("dummy off: %q %q, want no body", n.ContentType, n.Body)
	}
	// Unpublishing the last publication comes back to the same.
	res := sdktest.Handle(t, off, publish(nil, "p1", sdktest.Testdata(t, "simple.xml")))
	res = sdktest.Handle(t, off, &abi.Request{Op: abi.OpUnpublish, Event: "presence", Resource: resource,
		State: res.State, Publication: &abi.Publication{ID: "p1"}, Watchers: []abi.Watcher{watcher("w1")}})
	if n := only(t, res); n.ContentType != "" || n.Body != nil || !res.StateChanged {
		t.Fatalf("after last unpublish: %+v", res)
	}
}

func TestManyWatchersShareOneRendering(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, publish(nil, "p1", sdktest.Testdata(t, "simple.xml"), watcher("a"), watcher("b"), watcher("c")))
	if len(res.Notifications) != 3 {
		t.Fatalf("notifications = %+v", res.Notifications)
	}
	for i, n := range res.Notifications {
		if n.WatcherID != string(rune('a'+i)) || !bytes.Equal(n.Body, res.Notifications[0].Body) {
			t.Fatalf("notification %d = %+v", i, n)
		}
	}
}

func TestUndecodableStateFails(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	_, err := m.Handle(context.Background(), &abi.Request{Op: abi.OpRender, Event: "presence",
		Resource: resource, State: []byte{0x0a, 0x10, 'x'}, Watchers: []abi.Watcher{watcher("w1")}})
	if err == nil {
		t.Fatal("render over an undecodable state did not fail")
	}
}

// BenchmarkCompose renders for one watcher a presentity with n
// publications, each rpid.xml (tuple, note, person, device: the person
// merge and id renaming both run).
func BenchmarkCompose(b *testing.B) {
	m := sdktest.Load(b, pkg, nil)
	body := sdktest.Testdata(b, "rpid.xml")
	ctx := context.Background()
	for _, n := range []int{1, 5, 20} {
		b.Run(fmt.Sprintf("pubs=%d", n), func(b *testing.B) {
			var state []byte
			for i := range n {
				res, err := m.Handle(ctx, publish(state, fmt.Sprintf("p%d", i), body))
				if err != nil || res.Code != 0 {
					b.Fatal(err, res)
				}
				state = res.State
			}
			req := &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource,
				State: state, Watchers: []abi.Watcher{watcher("w1")}}
			b.ReportAllocs()
			for b.Loop() {
				res, err := m.Handle(ctx, req)
				if err != nil || len(res.Notifications) != 1 || len(res.Notifications[0].Body) == 0 {
					b.Fatal(err, res)
				}
			}
		})
	}
}

// A watcher is not sent again the document it was last sent, nor told
// again it is pending; a new or refreshed subscription (full) always is.
func TestUnchangedNotSent(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	x := &abi.XMPPPresence{From: "alice@xmpp.example.com/r", Show: "away"}
	in := func(state []byte, w abi.Watcher, x *abi.XMPPPresence) *abi.Response {
		return sdktest.Handle(t, m, &abi.Request{Op: abi.OpXMPP, Event: "presence", Resource: resource,
			State: state, XMPP: x, Watchers: []abi.Watcher{w}})
	}
	w := watcher("w1")
	w.Status = abi.StatusActive
	first := in(nil, w, x)
	n := only(t, first)
	w.Full, w.State = false, n.State
	if res := in(first.State, w, x); len(res.Notifications) != 0 {
		t.Errorf("the same presence again: %d notifications, want none", len(res.Notifications))
	}
	if res := in(first.State, w, &abi.XMPPPresence{From: x.From, Show: "dnd"}); len(res.Notifications) != 1 {
		t.Errorf("a new show: %d notifications, want one", len(res.Notifications))
	}
	w.Full = true
	if res := in(first.State, w, x); len(res.Notifications) != 1 {
		t.Errorf("a refresh: %d notifications, want one", len(res.Notifications))
	}
	p := watcher("w2")
	p.Status, p.Full = abi.StatusPending, false
	if res := in(first.State, p, &abi.XMPPPresence{From: x.From, Show: "xa"}); len(res.Notifications) != 0 {
		t.Errorf("a pending watcher: %d notifications, want none", len(res.Notifications))
	}
}

// The per-watcher state is the one written before the digest was
// streamed (sdk.Digest of the content type, a NUL and the body), so a
// watcher is not sent again, after an upgrade, a document it has.
func TestWatcherStateIsDigest(t *testing.T) {
	for _, body := range [][]byte{nil, []byte("x"), benchPIDF(resource)} {
		joined := append([]byte(pidfType+"\x00"), body...)
		want := protowire.AppendBytes(protowire.AppendTag(nil, fWatcherSent, protowire.BytesType), sdk.Digest(joined))
		if got := watcherState(pidfType, body); !bytes.Equal(got, want) {
			t.Errorf("body %q: % x, want % x", body, got, want)
		}
	}
}
