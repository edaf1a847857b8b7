package server_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// A client on TCP or TLS that sends a double CRLF between messages gets
// a single CRLF back (RFC 5626 §4.4.1), and a connection kept alive so
// outlives tcp_idle_timeout. sipgo does this in its stream read loop;
// this test holds it to that.
func TestCRLFKeepAlive(t *testing.T) {
	certFile, keyFile := siptest.SelfSigned(t, t.TempDir())
	srv := startWith(t, server.Options{
		Listen: []server.Listener{{Transport: "tcp", Address: "127.0.0.1:0"},
			{Transport: "tls", Address: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}},
		Modules: []*extension.Module{echo(t)},
		Limits:  server.Limits{TCPIdleTimeout: time.Second},
	})
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			var conn net.Conn
			var err error
			if tr == "tls" {
				conn, err = tls.Dial("tcp", addrOf(srv, tr), &tls.Config{InsecureSkipVerify: true}) // self-signed
			} else {
				conn, err = net.Dial("tcp", addrOf(srv, tr))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			pong := func() {
				t.Helper()
				if _, err := conn.Write([]byte("\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				conn.SetReadDeadline(time.Now().Add(siptest.Timeout))
				b := make([]byte, 2)
				if n, err := r.Read(b); err != nil || string(b[:n]) != "\r\n" {
					t.Fatalf("ping answered %q, %v; want CRLF", b[:n], err)
				}
			}
			// 1.6 s of pings every 400 ms: past the 1 s idle timeout
			for range 5 {
				pong()
				time.Sleep(400 * time.Millisecond)
			}
			// a single CRLF is a pong, not a ping: no answer
			conn.Write([]byte("\r\n"))
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if b, err := r.ReadByte(); err == nil {
				t.Fatalf("a lone CRLF was answered with %q", b)
			}
			// and the connection still carries requests
			conn.SetReadDeadline(time.Time{})
			p := siptest.NewPeerOn(t, strings.ToUpper(tr), conn)
			res := p.Send(siptest.Request{Method: "OPTIONS", URI: "sip:presenced@example.com", Headers: []string{
				"From: <sip:ka@example.com>;tag=k", "To: <sip:presenced@example.com>", "Call-ID: " + siptest.NewCallID(), "CSeq: 1 OPTIONS"}})
			siptest.WantCode(t, res, 200)
		})
	}
}
