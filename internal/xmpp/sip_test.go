package xmpp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/server"
)

// hook connects the server's subscriptions to the connector, as the
// daemon does.
type hook struct{ c *Component }

func (h hook) Watch(event, resource string) {
	if event == "presence" {
		h.c.Watch(resource)
	}
}

func (h hook) Unwatch(event, resource string) {
	if event == "presence" {
		h.c.Unwatch(resource)
	}
}

// The whole jabber backend: a SIP watcher subscribes through the real
// server to sip:juliet@localhost; the connector subscribes on its behalf
// at a real Prosody; juliet's presence changes reach the watcher as PIDF
// NOTIFYs.
func TestSIPWatcherSeesXMPPUser(t *testing.T) {
	p := startProsody(t)
	var srv *server.Server
	comp, err := New(Config{Server: p.component, Domain: "sip.localhost", Secret: componentSecret,
		Domains: map[string]string{"localhost": "localhost"}, MinBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		testHost{presence: func(uri string, x abi.XMPPPresence) {
			if err := srv.Input("presence", uri, abi.Request{Op: abi.OpXMPP, XMPP: &x}); err != nil {
				t.Errorf("input: %v", err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err = server.New(server.Options{
		Listen:       []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 1, Max: 3600}, Publication: server.Bounds{Min: 1, Max: 3600},
		Modules: []*extension.Module{extensiontest.Load(t, "github.com/presenced/presenced/extensions/pa", nil)},
		Watch:   hook{comp}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { comp.Run(ctx); close(done) }()

	juliet := login(t, p.c2s, "juliet", "balcony")
	juliet.write(`<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq><presence/>`)

	// a SIP watcher over UDP, speaking raw SIP
	_, addr, _ := strings.Cut(srv.Addrs()[0], ":")
	w, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	to, _ := net.ResolveUDPAddr("udp", addr)
	subscribe := func(cseq int, totag, expires string) {
		fmt.Fprintf(&udpWriter{w, to}, "SUBSCRIBE sip:juliet@localhost SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-x%d%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:romeo@example.com>;tag=r1\r\nTo: <sip:juliet@localhost>%s\r\nCall-ID: xmpp-sip-1\r\n"+
			"CSeq: %d SUBSCRIBE\r\nContact: <sip:romeo@%s>\r\nEvent: presence\r\nExpires: %s\r\nContent-Length: 0\r\n\r\n",
			w.LocalAddr(), cseq, time.Now().UnixNano(), totag, cseq, w.LocalAddr(), expires)
	}
	toTag := ""
	// next reads SIP messages, answers NOTIFYs 200, and returns the next
	// NOTIFY whose body passes ok (a 200 to the SUBSCRIBE sets toTag).
	next := func(step string, ok func(state, body string) bool) {
		t.Helper()
		buf := make([]byte, 65535)
		deadline := time.Now().Add(15 * time.Second)
		for {
			w.SetReadDeadline(deadline)
			n, from, err := w.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if res, isRes := msg.(*sip.Response); isRes {
				if tg, _ := res.To().Params.Get("tag"); tg != "" {
					toTag = ";tag=" + tg
				}
				continue
			}
			req := msg.(*sip.Request)
			var b strings.Builder
			b.WriteString("SIP/2.0 200 OK\r\n")
			for _, name := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
				for _, h := range req.GetHeaders(name) {
					fmt.Fprintf(&b, "%s: %s\r\n", h.Name(), h.Value())
				}
			}
			b.WriteString("Content-Length: 0\r\n\r\n")
			w.WriteTo([]byte(b.String()), from)
			state := req.GetHeader("Subscription-State").Value()
			if ok(state, string(req.Body())) {
				return
			}
		}
	}
	subscribe(1, "", "600")
	next("available", func(state, body string) bool {
		return strings.Contains(body, "<basic>open</basic>") && strings.Contains(body, "xmpp:juliet@localhost/balcony")
	})
	juliet.write(`<presence><show>away</show><status xml:lang='en'>On the balcony</status></presence>`)
	next("away", func(state, body string) bool {
		return strings.Contains(body, "<rpid:away/>") && strings.Contains(body, "On the balcony")
	})
	juliet.write(`<presence type='unavailable'/>`)
	next("unavailable", func(state, body string) bool {
		return strings.Contains(body, "<basic>closed</basic>") && !strings.Contains(body, "<basic>open</basic>")
	})

	subscribe(2, toTag, "0")
	next("unsubscribe", func(state, body string) bool { return strings.HasPrefix(state, "terminated") })
}

type udpWriter struct {
	pc net.PacketConn
	to net.Addr
}

func (u *udpWriter) Write(b []byte) (int, error) { return u.pc.WriteTo(b, u.to) }
