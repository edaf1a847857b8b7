package main

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk/sdktest"
)

// xmppIn feeds one presence stanza and returns the new state and the body
// the active watcher w1 gets.
func xmppIn(t *testing.T, m *sdktest.Module, state []byte, x abi.XMPPPresence) ([]byte, string) {
	t.Helper()
	w := watcher("w1")
	w.Status = abi.StatusActive
	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpXMPP, Event: "presence", Resource: resource,
		State: state, XMPP: &x, Watchers: []abi.Watcher{w}})
	if res.StateChanged {
		state = res.State
	}
	n := only(t, res)
	parse(t, n.Body)
	return state, string(n.Body)
}

func wantIn(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("document lacks %q:\n%s", w, body)
		}
	}
}

func wantNotIn(t *testing.T, body string, not ...string) {
	t.Helper()
	for _, w := range not {
		if strings.Contains(body, w) {
			t.Errorf("document has %q:\n%s", w, body)
		}
	}
}

func TestXMPPMapping(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	const jid = "alice@xmpp.example.com/balcony"
	st, body := xmppIn(t, m, nil, abi.XMPPPresence{From: jid, Priority: 5})
	wantIn(t, body, "<basic>open</basic>", `<contact priority="0.039">xmpp:`+jid+`</contact>`)
	wantNotIn(t, body, "activities", "pa-dummy")

	st, body = xmppIn(t, m, st, abi.XMPPPresence{From: jid, Show: "away", Status: "On the balcony", Lang: "en", Priority: 5})
	wantIn(t, body, "<basic>open</basic>", "<rpid:away/>", `<note xml:lang="en">On the balcony</note>`,
		`<dm:note xml:lang="en">On the balcony</dm:note>`)

	_, body = xmppIn(t, m, st, abi.XMPPPresence{From: jid, Show: "xa"})
	wantIn(t, body, "<rpid:away/>", "<rpid:other>extended away</rpid:other>")
	_, body = xmppIn(t, m, st, abi.XMPPPresence{From: jid, Show: "dnd", Priority: 127})
	wantIn(t, body, "<rpid:busy/>", `priority="1"`)
	wantNotIn(t, body, "rpid:away")
	_, body = xmppIn(t, m, st, abi.XMPPPresence{From: jid, Show: "chat", Priority: -1})
	wantIn(t, body, "<basic>open</basic>", "<note>free for chat</note>", `priority="0"`)
	wantNotIn(t, body, "activities")

	st, body = xmppIn(t, m, st, abi.XMPPPresence{From: jid, Type: "unavailable", Status: "gone"})
	wantIn(t, body, "<basic>closed</basic>", "<contact>xmpp:alice@xmpp.example.com</contact>", "<note>gone</note>")
	wantNotIn(t, body, "<basic>open</basic>", "balcony")
	// A state that went through encode/decode still renders the same.
	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource, State: st,
		Watchers: []abi.Watcher{{ID: "w1", URI: "sip:bob@example.com", Status: abi.StatusActive}}})
	if got := string(only(t, res).Body); got != body {
		t.Errorf("render after decode:\n%s\nwant\n%s", got, body)
	}
}

func TestXMPPResources(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	const a, b = "alice@xmpp.example.com/phone", "alice@xmpp.example.com/desk"
	st, _ := xmppIn(t, m, nil, abi.XMPPPresence{From: a, Show: "away", Priority: 1})
	st, body := xmppIn(t, m, st, abi.XMPPPresence{From: b, Show: "dnd", Priority: 10})
	if n := strings.Count(body, "<tuple "); n != 2 {
		t.Fatalf("%d tuples, want one per resource:\n%s", n, body)
	}
	// The person follows the highest priority resource.
	wantIn(t, body, "<rpid:busy/>", "xmpp:"+a, "xmpp:"+b)
	wantNotIn(t, body, "<rpid:away/>")
	st, body = xmppIn(t, m, st, abi.XMPPPresence{From: b, Type: "unavailable"})
	wantIn(t, body, "<rpid:away/>", "xmpp:"+a)
	wantNotIn(t, body, "xmpp:"+b, "<basic>closed</basic>")
	// Unavailable from the bare JID (probe answer, connector lost the
	// server) takes every resource.
	st, _ = xmppIn(t, m, st, abi.XMPPPresence{From: b, Priority: 3})
	_, body = xmppIn(t, m, st, abi.XMPPPresence{From: "alice@xmpp.example.com", Type: "unavailable"})
	if n := strings.Count(body, "<tuple "); n != 1 {
		t.Fatalf("%d tuples, want one closed:\n%s", n, body)
	}
	wantIn(t, body, "<basic>closed</basic>")
}

func TestXMPPWithPublication(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	pidf := `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="` + resource +
		`"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>`
	res := sdktest.Handle(t, m, publish(nil, "p1", []byte(pidf)))
	st, body := xmppIn(t, m, res.State, abi.XMPPPresence{From: "alice@xmpp.example.com/r", Show: "away"})
	wantIn(t, body, `id="t1"`, "xmpp:alice@xmpp.example.com/r", "<rpid:away/>")
	if n := strings.Count(body, "<tuple "); n != 2 {
		t.Fatalf("%d tuples, want 2:\n%s", n, body)
	}
	_ = st
}

func TestXMPPRefused(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	for _, x := range []abi.XMPPPresence{{From: ""}, {From: "a@b/c", Type: "subscribe"}} {
		res, err := m.Handle(t.Context(), &abi.Request{Op: abi.OpXMPP, Event: "presence", Resource: resource, XMPP: &x})
		if err != nil || res.Code != 400 {
			t.Errorf("%+v: %v %+v, want a 400", x, err, res)
		}
	}
	// The winfo package ignores XMPP input.
	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpXMPP, Event: winfoEvent, Resource: resource,
		XMPP: &abi.XMPPPresence{From: "a@b/c"}})
	if res.StateChanged || len(res.Notifications) > 0 {
		t.Errorf("winfo: %+v", res)
	}
}

// A reset forgets every resource without telling watchers; the probe's
// answers that follow it are the user's presence. A resource that went
// offline while the connector was away must not survive it.
func TestXMPPReset(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	const a, b = "alice@xmpp.example.com/phone", "alice@xmpp.example.com/desk"
	st, _ := xmppIn(t, m, nil, abi.XMPPPresence{From: a})
	st, _ = xmppIn(t, m, st, abi.XMPPPresence{From: b})
	w := watcher("w1")
	w.Status = abi.StatusActive
	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpXMPP, Event: "presence", Resource: resource, State: st,
		XMPP: &abi.XMPPPresence{Type: "reset", From: "alice@xmpp.example.com"}, Watchers: []abi.Watcher{w}})
	if !res.StateChanged || len(res.Notifications) != 0 {
		t.Fatalf("reset: %+v, want a new state and no notification", res)
	}
	_, body := xmppIn(t, m, res.State, abi.XMPPPresence{From: a})
	wantIn(t, body, "xmpp:"+a, "<basic>open</basic>")
	wantNotIn(t, body, "xmpp:"+b)
}
