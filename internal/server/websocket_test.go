package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// browserHost is what a browser's SIP stack puts in its Via and Contact
// (RFC 7118 §5): a made-up name nobody can connect to.
const browserHost = "df7jal23ls0d.invalid"

// wsClient is a SIP over WebSocket client connection as a browser opens
// one: each SIP message one text frame, masked. It reads as the stream of
// the messages the server sent, so a siptest peer runs over it; its local
// address is browserHost, so the peer's Via and Contact name it.
type wsClient struct {
	net.Conn
	r    io.Reader // the handshake's buffered reader, then the connection
	next []byte    // the rest of the message being read
}

// dialWS opens a WebSocket to addr (url "ws://..." or "wss://...") asking
// for protocols.
func dialWS(t *testing.T, url string, protocols ...string) (*wsClient, error) {
	t.Helper()
	d := ws.Dialer{Protocols: protocols, Timeout: 5 * time.Second,
		TLSConfig: &tls.Config{InsecureSkipVerify: true}} // the test's self-signed certificate
	conn, br, hs, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	if hs.Protocol != "sip" {
		conn.Close()
		t.Fatalf("handshake answered subprotocol %q, want sip", hs.Protocol)
	}
	c := &wsClient{Conn: conn, r: conn}
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	return c, nil
}

func (c *wsClient) Write(b []byte) (int, error) {
	if err := wsutil.WriteClientText(c.Conn, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *wsClient) Read(b []byte) (int, error) {
	for len(c.next) == 0 {
		msg, err := wsutil.ReadServerText(readWriter{c.r, c.Conn})
		if err != nil {
			return 0, err
		}
		c.next = msg
	}
	n := copy(b, c.next)
	c.next = c.next[n:]
	return n, nil
}

func (c *wsClient) LocalAddr() net.Addr { return browserAddr{} }

type readWriter struct {
	io.Reader
	io.Writer
}

type browserAddr struct{}

func (browserAddr) Network() string { return "ws" }
func (browserAddr) String() string  { return browserHost }

// startWS is a server listening on ws and wss (a certificate made for the
// test), and UDP for peers that are not browsers.
func startWS(t *testing.T) *server.Server {
	t.Helper()
	certFile, keyFile := siptest.SelfSigned(t, t.TempDir())
	return startWith(t, server.Options{
		Listen: []server.Listener{
			{Transport: "udp", Address: "127.0.0.1:0"},
			{Transport: "ws", Address: "127.0.0.1:0"},
			{Transport: "wss", Address: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile},
		},
		Modules: []*extension.Module{echo(t)},
	})
}

// A browser subscribes and publishes over ws and over wss: every answer
// and every NOTIFY comes back over its own connection, though its Contact
// is a host nobody can connect to, and the server's Contact says
// transport=ws (RFC 7118 §5.2, for wss too).
func TestWebSocket(t *testing.T) {
	srv := startWS(t)
	for _, tr := range []string{"ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			res := alice + tr
			conn, err := dialWS(t, tr+"://"+addrOf(srv, tr), "sip")
			if err != nil {
				t.Fatal(err)
			}
			browser := siptest.NewPeerOn(t, strings.ToUpper(tr), conn)
			sub, r := browser.Subscribe("echo", res)
			siptest.WantCode(t, r, 200)
			if c := siptest.Header(r, "Contact"); !strings.Contains(c, ";transport=ws") {
				t.Errorf("200's Contact %q, want transport=ws", c)
			}
			if n := browser.Notify(); n.CSeq().SeqNo != 1 || !strings.HasPrefix(siptest.Header(n, "Via"), "SIP/2.0/"+strings.ToUpper(tr)) {
				t.Fatalf("first NOTIFY over %s:\n%s", tr, n)
			}

			// PUBLISH from the browser; a phone on UDP and the browser both see it.
			phone := siptest.NewPeer(t, "UDP", addrOf(srv, "udp"))
			_, r = phone.Subscribe("echo", res)
			siptest.WantCode(t, r, 200)
			phone.Notify()
			siptest.WantCode(t, browser.Publish("echo", res, "text/plain", "over "+tr), 200)
			for _, p := range []*siptest.Peer{browser, phone} {
				if n := p.Notify(); string(n.Body()) != "over "+tr {
					t.Fatalf("NOTIFY after the PUBLISH over %s: %q", tr, n.Body())
				}
			}
			// A refresh over the connection keeps the dialog.
			siptest.WantCode(t, sub.Again("Expires: 120"), 200)
			browser.Notify()
		})
	}
}

// RFC 7118 §4.1: a handshake that does not offer the subprotocol sip is
// refused; a plain HTTP request too. An idle connection to the port does
// not hold up the next client's handshake.
func TestWebSocketHandshake(t *testing.T) {
	srv := startWS(t)
	idle, err := net.Dial("tcp", addrOf(srv, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	for _, tr := range []string{"ws", "wss"} {
		url := tr + "://" + addrOf(srv, tr)
		for _, protocols := range [][]string{nil, {"chat"}} {
			_, err := dialWS(t, url, protocols...)
			var status ws.StatusError
			if !errors.As(err, &status) || int(status) != 400 {
				t.Errorf("%s handshake offering %q: %v, want 400", tr, protocols, err)
			}
		}
		start := time.Now()
		c, err := dialWS(t, url, "chat", "sip")
		if err != nil {
			t.Fatalf("%s handshake offering chat and sip: %v", tr, err)
		}
		c.Close()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s handshake took %s with an idle connection open", tr, d)
		}
	}
}

// A closed WebSocket ends its subscriptions at once: nothing can reach
// them any more. A watcher-info-less echo module: the store forgets them.
func TestWebSocketCloseEndsSubscriptions(t *testing.T) {
	srv := startWS(t)
	conn, err := dialWS(t, "ws://"+addrOf(srv, "ws"), "sip")
	if err != nil {
		t.Fatal(err)
	}
	browser := siptest.NewPeerOn(t, "WS", conn)
	for _, res := range []string{alice, "sip:bob@example.com"} {
		_, r := browser.Subscribe("echo", res)
		siptest.WantCode(t, r, 200)
		browser.NotifyIn(siptest.Header(r, "Call-ID"))
	}
	if n := len(srv.Subscriptions(server.Filter{})); n != 2 {
		t.Fatalf("%d subscriptions, want 2", n)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.Subscriptions(server.Filter{})) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions still there after their connection closed: %+v", srv.Subscriptions(server.Filter{}))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
