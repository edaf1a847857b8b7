package main

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/pubstate"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/xmldoc"
)

const (
	pkg = "github.com/presenced/presenced/extensions/dialog"
	bob = "sip:bob@example.com"
)

func doc(dialogs string) []byte {
	return []byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:bob@example.com">` + dialogs + `</dialog-info>`)
}

func TestParse(t *testing.T) {
	full, ds, err := parse(new(xmldoc.Reader), sdktest.Testdata(t, "pbx-ringing.xml"), bob)
	if err != nil || !full || len(ds) != 1 {
		t.Fatalf("%v %v %+v", full, err, ds)
	}
	want := dialog{id: "fork-a", callID: "0_1756536024@10.10.20.34", localTag: "3408640225", remoteTag: "3779921438", direction: "recipient", state: "early",
		local:  party{"Bob", "sip:bob@example.com", "sip:bob@192.0.2.10:5060"},
		remote: party{"Carol & Co", "sip:carol@example.org", "sip:carol@198.51.100.7"}}
	if ds[0] != want {
		t.Fatalf("got %+v", ds[0])
	}
	// what is rendered reads back the same
	if _, again, err := parse(new(xmldoc.Reader), document(bob, 7, ds), bob); err != nil || again[0] != want {
		t.Fatalf("round trip: %+v %v", again, err)
	}
	if _, _, err := parse(new(xmldoc.Reader), sdktest.Testdata(t, "rfc4235-early.xml"), "sip:alice@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, reason string }{
		{`<dialog-info`, "not well-formed"},
		{strings.Replace(string(doc("")), "sip:bob@", "sip:eve@", 1), "not the resource"},
		{strings.Replace(string(doc("")), `state="full"`, `state="all"`, 1), `state "all": want full or partial`},
		{strings.Replace(string(doc("")), `version="1"`, `version="-1"`, 1), "unsigned 32-bit"},
		{strings.Replace(string(doc("")), `version="1" `, ``, 1), "no version"},
		{string(doc(`<dialog><state>early</state></dialog>`)), "has no id"},
		{string(doc(`<dialog id="a"><state>early</state></dialog><dialog id="a"><state>early</state></dialog>`)), `two dialogs with id "a"`},
		{string(doc(`<dialog id="a" direction="outbound"><state>early</state></dialog>`)), "want initiator or recipient"},
		{string(doc(`<dialog id="a"/>`)), "has no <state>"},
		{string(doc(`<dialog id="a"><state>ringing</state></dialog>`)), `state "ringing"`},
	} {
		_, _, err := parse(new(xmldoc.Reader), []byte(c.body), bob)
		var rej *sdk.Rejection
		if err == nil || !strings.Contains(err.Error(), c.reason) || !asRejection(err, &rej) || rej.Code != 400 {
			t.Errorf("%s: got %v, want 400 saying %q", c.body, err, c.reason)
		}
	}
}

func asRejection(err error, rej **sdk.Rejection) bool {
	r, ok := err.(*sdk.Rejection)
	*rej = r
	return ok
}

func state(t *testing.T, bodies ...string) *pubstate.State {
	t.Helper()
	st := &pubstate.State{}
	for i, b := range bodies {
		st.Push(string(rune('a'+i)), doc(b))
	}
	return st
}

func ids(ds []dialog) (s []string) {
	for _, d := range ds {
		s = append(s, d.id+":"+d.state)
	}
	return s
}

// Composition by dialog id across publishers, and forked calls.
func TestCompose(t *testing.T) {
	for _, c := range []struct {
		name   string
		bodies []string
		want   string
	}{
		{"nothing", nil, ""},
		{"forked: a cancelled branch, another rings", []string{
			`<dialog id="b1"><state event="cancelled">terminated</state></dialog>`,
			`<dialog id="b2"><state>early</state></dialog>`}, "b2:early"},
		{"forked: both branches in one document, one answered", []string{
			`<dialog id="b1"><state>terminated</state></dialog><dialog id="b2"><state>confirmed</state></dialog>`}, "b2:confirmed"},
		{"every branch ended: the line is idle and says so", []string{
			`<dialog id="b1"><state>terminated</state></dialog>`, `<dialog id="b2"><state>terminated</state></dialog>`}, "b1:terminated b2:terminated"},
		{"a late early after the end does not bring the call back", []string{
			`<dialog id="x"><state>terminated</state></dialog>`, `<dialog id="x"><state>early</state></dialog>`}, "x:terminated"},
		{"the furthest state of one dialog from two publishers", []string{
			`<dialog id="x"><state>confirmed</state></dialog>`, `<dialog id="x"><state>early</state></dialog><dialog id="y"><state>trying</state></dialog>`}, "x:confirmed y:trying"},
	} {
		ds, err := compose(new(xmldoc.Reader), bob, state(t, c.bodies...))
		if got := strings.Join(ids(ds), " "); err != nil || got != c.want {
			t.Errorf("%s: got %q %v, want %q", c.name, got, err, c.want)
		}
	}
}

// Each quirk and the identity rule, on what one watcher is sent.
func TestView(t *testing.T) {
	cfg := sdk.Config{"identities": "sip:boss@example.com, partner.example", "dummy_dialog": "yealink.example.com",
		"single_dialog": "sip:spa@example.net", "always_direction": "*"}
	m := &module{}
	if _, err := m.Init("dialog", cfg); err != nil {
		t.Fatal(err)
	}
	_, ds, _ := parse(new(xmldoc.Reader), sdktest.Testdata(t, "pbx-ringing.xml"), bob)
	ds = append(ds, dialog{id: "c", state: "confirmed", callID: "c1"})
	// the <dialog> elements of what the watcher uri is sent
	view := func(uri string, ds []dialog) string {
		doc := string(document(bob, 0, m.view(sdk.Watcher{URI: uri}, bob, ds)))
		_, dialogs, _ := strings.Cut(doc, `entity="sip:bob@example.com">`+"\n")
		return strings.TrimSuffix(dialogs, "</dialog-info>\n")
	}

	boss, other := view("sip:boss@example.com", ds), view("sip:intern@example.com", ds)
	if !strings.Contains(boss, `call-id="0_1756536024@10.10.20.34"`) || !strings.Contains(boss, `<identity display="Carol &amp; Co">sip:carol@example.org</identity>`) ||
		!strings.Contains(view("sip:x@partner.example", ds), "carol") {
		t.Errorf("allowed watcher:\n%s", boss)
	}
	if strings.Contains(other, "carol") || strings.Contains(other, "call-id") || strings.Contains(other, "tag=") || !strings.Contains(other, `<dialog id="fork-a" direction="recipient"><state>early</state></dialog>`) {
		t.Errorf("hidden identities:\n%s", other)
	}
	// always_direction: the dialog without one gets recipient
	if !strings.Contains(other, `<dialog id="c" direction="recipient">`) {
		t.Errorf("always_direction:\n%s", other)
	}
	// single_dialog: the ringing one, for pickup
	if got := view("sip:spa@example.net", ds); strings.Count(got, "<dialog ") != 1 || !strings.Contains(got, "early") {
		t.Errorf("single_dialog:\n%s", got)
	}
	// dummy_dialog: idle is one terminated dialog, for these phones only
	if got := view("sip:t46@yealink.example.com", nil); got != `<dialog id="bob" direction="recipient"><state>terminated</state></dialog>`+"\n" {
		t.Errorf("dummy_dialog: %q", got)
	}
	if got := view("sip:boss@example.com", nil); got != "" {
		t.Errorf("idle without dummy_dialog: %q", got)
	}
	if err := (&module{}).initErr(sdk.Config{"dummy_dialog": "bob@example.com"}); err == nil || !strings.Contains(err.Error(), "dummy_dialog") {
		t.Errorf("a bad list entry: %v", err)
	}
}

func (m *module) initErr(cfg sdk.Config) error { _, err := m.Init("dialog", cfg); return err }

// The module as real wasm: versions per watcher from 0, nothing for a
// watcher whose document is the same, 406, and a partial document.
func TestDialogModule(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	if p := m.Manifest().Packages; len(p) != 1 || p[0].Event != "dialog" || p[0].Accept[0] != infoType {
		t.Fatalf("manifest %+v", p)
	}
	w := abi.Watcher{ID: "w1", URI: "sip:alice@example.com", Full: true}
	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "dialog", Resource: bob, Watchers: []abi.Watcher{w}})
	n := res.Notifications[0]
	if !strings.Contains(string(n.Body), `version="0" state="full" entity="sip:bob@example.com"`) {
		t.Fatalf("first NOTIFY:\n%s", n.Body)
	}
	w.State, w.Full = n.State, false
	var st []byte
	for i, body := range []string{
		`<dialog id="d" direction="recipient"><state>early</state></dialog>`,
		`<dialog id="d" direction="recipient"><state>early</state></dialog>`, // the same again
		`<dialog id="d" direction="recipient"><state>confirmed</state></dialog>`,
	} {
		res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpPublish, Event: "dialog", Resource: bob, State: st,
			Publication: &abi.Publication{ID: "p", ContentType: infoType, Body: doc(body)}, Watchers: []abi.Watcher{w}})
		if i == 1 {
			if len(res.Notifications) != 0 || res.StateChanged {
				t.Fatalf("unchanged dialogs notified or stored: %+v", res)
			}
			continue
		}
		st = res.State
		n = res.Notifications[0]
		if want := []string{`version="1"`, "", `version="2"`}[i]; !strings.Contains(string(n.Body), want) {
			t.Fatalf("NOTIFY %d:\n%s", i, n.Body)
		}
		w.State = n.State
	}
	// a partial document changes the dialogs it names and keeps the others
	partial := strings.Replace(string(doc(`<dialog id="e"><state>trying</state></dialog>`)), `state="full"`, `state="partial"`, 1)
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpPublish, Event: "dialog", Resource: bob, State: st,
		Publication: &abi.Publication{ID: "p", ContentType: infoType, Body: []byte(partial)}, Watchers: []abi.Watcher{w}})
	if b := string(res.Notifications[0].Body); !strings.Contains(b, `version="3"`) || !strings.Contains(b, `"d"`) || !strings.Contains(b, `"e"`) {
		t.Fatalf("after a partial document:\n%s", b)
	}
	for _, c := range []struct {
		req  *abi.Request
		code uint32
	}{
		{&abi.Request{Op: abi.OpPublish, Event: "dialog", Resource: bob, State: st, Publication: &abi.Publication{ID: "q", ContentType: "application/pidf+xml", Body: doc("")}}, 415},
		{&abi.Request{Op: abi.OpRender, Event: "dialog", Resource: bob, State: st, Watchers: []abi.Watcher{{ID: "x", Accept: []string{"application/pidf+xml"}, Full: true}}}, 406},
	} {
		r, err := m.Handle(t.Context(), c.req)
		if err != nil || r.Code != c.code {
			t.Fatalf("want %d, got %+v %v", c.code, r, err)
		}
	}
}
