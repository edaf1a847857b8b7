package server_test

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// Every limit answers with its code and a Warning that names it, and
// changes nothing.
func TestLimits(t *testing.T) {
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Limits: server.Limits{MaxBodyBytes: 100, MaxSubscriptionsPerWatcher: 2, MaxWatchersPerPresentity: 3,
			MaxPublicationsPerPresentity: 2},
	})
	addr := addrOf(srv, "udp")
	p := siptest.NewPeer(t, "UDP", addr)

	r := p.Publish("echo", alice, "text/plain", strings.Repeat("x", 101))
	siptest.WantCode(t, r, 413)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "one"), 200)
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "two"), 200)
	r = p.Publish("echo", alice, "text/plain", "three")
	siptest.WantCode(t, r, 403)
	if !strings.Contains(siptest.Header(r, "Warning"), "publications") {
		t.Fatalf("Warning = %q", siptest.Header(r, "Warning"))
	}

	w := siptest.NewPeer(t, "UDP", addr) // every SUBSCRIBE from it is sip:watcher@example.com
	for i := 0; i < 2; i++ {
		_, r := w.Subscribe("echo", alice)
		siptest.WantCode(t, r, 200)
	}
	_, r = w.Subscribe("echo", "sip:other@example.com")
	siptest.WantCode(t, r, 403)
	if !strings.Contains(siptest.Header(r, "Warning"), "subscriptions") {
		t.Fatalf("Warning = %q", siptest.Header(r, "Warning"))
	}
	// a third watcher of alice is fine, a fourth is not
	other := siptest.NewPeer(t, "UDP", addr)
	sub := func(from string) *sip.Response {
		return other.Send(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{
			"From: <" + from + ">;tag=f", "To: <" + alice + ">", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 SUBSCRIBE",
			other.Contact(), "Event: echo"}})
	}
	siptest.WantCode(t, sub("sip:third@example.com"), 200)
	r = sub("sip:fourth@example.com")
	siptest.WantCode(t, r, 403)
	if !strings.Contains(siptest.Header(r, "Warning"), "watchers") {
		t.Fatalf("Warning = %q", siptest.Header(r, "Warning"))
	}
	if n := len(srv.Subscriptions(server.Filter{})); n != 3 {
		t.Fatalf("%d subscriptions, want 3", n)
	}
}

// A source over its rate gets 503 with Retry-After, quickly, and the
// server keeps answering others. Over UDP the refusal comes from the read
// filter, over TCP from admit.
func TestRateLimitPerSource(t *testing.T) {
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			srv := startWith(t, server.Options{
				Listen:  []server.Listener{{Transport: strings.ToLower(tr), Address: "127.0.0.1:0"}},
				Modules: []*extension.Module{echo(t)},
				Limits:  server.Limits{RequestsPerSecondPerSource: 20},
			})
			p := siptest.NewPeer(t, tr, addrOf(srv, strings.ToLower(tr)))
			var ok, busy int
			for i := 0; i < 60; i++ {
				r := p.Send(siptest.Request{Method: "OPTIONS", URI: "sip:presenced@example.com", Headers: []string{
					"From: <sip:flood@example.com>;tag=f", "To: <sip:presenced@example.com>", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 OPTIONS"}})
				switch r.StatusCode {
				case 200:
					ok++
				case 503:
					busy++
					if siptest.Header(r, "Retry-After") == "" {
						t.Fatal("503 without Retry-After")
					}
					if w := siptest.Header(r, "Warning"); !strings.Contains(w, "more than 20 requests a second from 127.0.0.1") {
						t.Fatalf("Warning: %q", w)
					}
				default:
					t.Fatalf("got %d", r.StatusCode)
				}
			}
			// 20 a second with a burst of 20: far fewer than 60 pass in the
			// time 60 round trips take on loopback, and some must; at least
			// the burst (a request taking two tokens, one in the read filter
			// and one in admit, would let only half of it through).
			if ok < 20 || busy == 0 {
				t.Fatalf("ok %d, 503 %d", ok, busy)
			}
		})
	}
}
