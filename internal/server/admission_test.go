package server_test

import (
	"net/netip"
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

// Behind a proxy every request comes from the proxy's address. A trusted
// source is not limited for itself; what it forwards is accounted to the
// client its Via below the proxy's names (received, else sent-by), so one
// flooding client is refused and another is not. An untrusted source is
// its own address whatever Vias it adds.
func TestRateLimitTrustedSource(t *testing.T) {
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			for _, trusted := range []string{"127.0.0.0/8", "10.0.0.0/8"} {
				srv := startWith(t, server.Options{
					Listen:  []server.Listener{{Transport: strings.ToLower(tr), Address: "127.0.0.1:0"}},
					Modules: []*extension.Module{echo(t)},
					Limits: server.Limits{RequestsPerSecondPerSource: 20,
						TrustedSources: []netip.Prefix{netip.MustParsePrefix(trusted)}},
				})
				p := siptest.NewPeer(t, tr, addrOf(srv, strings.ToLower(tr)))
				count := func(n int, via ...string) (ok, busy int, warning string) {
					for i := 0; i < n; i++ {
						r := p.Send(siptest.Request{Method: "OPTIONS", URI: "sip:presenced@example.com", Headers: append(via,
							"From: <sip:flood@example.com>;tag=f", "To: <sip:presenced@example.com>", "Call-ID: "+siptest.NewCallID(), "CSeq: 1 OPTIONS")})
						switch r.StatusCode {
						case 200:
							ok++
						case 503:
							busy++
							warning = siptest.Header(r, "Warning")
						default:
							t.Fatalf("got %d", r.StatusCode)
						}
					}
					return ok, busy, warning
				}
				client := func(addr string) string {
					return "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-c" + addr + ";received=" + addr + ";rport=40000"
				}
				if trusted == "10.0.0.0/8" { // 127.0.0.1 is not trusted: the Via below is not believed
					if ok, busy, w := count(60, client("198.51.100.7")); busy == 0 || !strings.Contains(w, "from 127.0.0.1") {
						t.Fatalf("untrusted source with a client Via: ok %d, 503 %d, Warning %q", ok, busy, w)
					}
					continue
				}
				if ok, busy, _ := count(60); busy != 0 {
					t.Fatalf("the trusted proxy's own requests: ok %d, 503 %d", ok, busy)
				}
				ok, busy, w := count(60, client("198.51.100.7"))
				if ok < 20 || busy == 0 || !strings.Contains(w, "more than 20 requests a second from 198.51.100.7") {
					t.Fatalf("one client through the proxy: ok %d, 503 %d, Warning %q", ok, busy, w)
				}
				if ok, busy, _ := count(15, client("198.51.100.8")); ok != 15 {
					t.Fatalf("another client through the proxy: ok %d, 503 %d", ok, busy)
				}
			}
		})
	}
}
