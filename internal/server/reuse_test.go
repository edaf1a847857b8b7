package server_test

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// subscribeAs sends an initial SUBSCRIBE for presence to resource from
// watcher and returns its NOTIFY.
func subscribeAs(t *testing.T, p *siptest.Peer, watcher, resource string) string {
	t.Helper()
	res := p.Send(siptest.Request{Method: "SUBSCRIBE", URI: resource, Headers: []string{
		"From: <" + watcher + ">;tag=" + siptest.NewCallID(),
		"To: <" + resource + ">",
		"Call-ID: " + siptest.NewCallID(),
		"CSeq: 1 SUBSCRIBE",
		p.Contact(),
		"Event: presence",
		"Expires: 600",
	}})
	siptest.WantCode(t, res, 200)
	n := p.Notify()
	return siptest.Header(n, "Subscription-State") + "\n" + string(n.Body())
}

func calls(m *extension.Module) int64 { return m.Stats().Calls }

// TestRenderingReused: pa says a new watcher's document is every new
// watcher's (its default policy lets all in alike), so the second watcher
// of an unchanged presentity gets the first one's NOTIFY without a module
// call; once the state changes, the next watcher is rendered anew.
func TestRenderingReused(t *testing.T) {
	pa := extensiontest.Load(t, paPkg, nil)
	f := start(t, store.NewMemory(), pa)
	p := f.peer(t, "UDP")
	const alice = "sip:alice@example.com"
	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "t1", "open", "first")), 200)

	first := subscribeAs(t, p, "sip:bob@example.com", alice)
	before := calls(pa)
	second := subscribeAs(t, p, "sip:carol@example.com", alice)
	if second != first {
		t.Errorf("the second watcher got\n%s\nthe first\n%s", second, first)
	}
	if got := calls(pa); got != before {
		t.Errorf("the second watcher of an unchanged presentity cost %d module calls, want none", got-before)
	}
	if !strings.Contains(first, "first") || !strings.HasPrefix(first, "active") {
		t.Fatalf("first NOTIFY:\n%s", first)
	}

	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "t2", "open", "second")), 200)
	p.Notify() // bob's
	p.Notify() // carol's
	before = calls(pa)
	third := subscribeAs(t, p, "sip:dave@example.com", alice)
	if !strings.Contains(third, "second") {
		t.Errorf("a watcher after the change got the state before it:\n%s", third)
	}
	if got := calls(pa); got != before+1 {
		t.Errorf("the watcher after a change cost %d module calls, want 1", got-before)
	}
}

// TestRenderingNotReusedPastAPolicy: with a block list, pa's document for
// one watcher says nothing of the next, which it decides on its own.
func TestRenderingNotReusedPastAPolicy(t *testing.T) {
	pa := extensiontest.Load(t, paPkg, map[string]string{"block": "sip:mallory@example.com"})
	f := start(t, store.NewMemory(), pa)
	p := f.peer(t, "UDP")
	const alice = "sip:alice@example.com"
	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "t1", "open", "here")), 200)
	if got := subscribeAs(t, p, "sip:bob@example.com", alice); !strings.HasPrefix(got, "active") {
		t.Fatalf("bob's NOTIFY:\n%s", got)
	}
	got := subscribeAs(t, p, "sip:mallory@example.com", alice)
	if !strings.HasPrefix(got, "terminated") || strings.Contains(got, "here") {
		t.Errorf("a blocked watcher after an allowed one got\n%s", got)
	}
}
