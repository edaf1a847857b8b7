package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/header"
)

// BenchmarkUDPTransactionMemory reports the heap one answered UDP server
// transaction keeps until Timer J ("B/tx"): a PUBLISH from sipp's
// scenario answered 200 with its SIP-ETag, as the handler answers it.
func BenchmarkUDPTransactionMemory(b *testing.B) {
	const n = 20000
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		parser: sip.NewParser(sip.WithHeadersParsers(header.Parsers()))}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer s.cancel()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	from := conn.LocalAddr().(*net.UDPAddr).AddrPort() // answers go to our own socket, unread
	for b.Loop() {
		l := newUDPTransactions(s, n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			data := fmt.Sprintf("PUBLISH sip:pda2u.%d@example.com SIP/2.0\r\n"+
				"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-18801-%d-0\r\n"+
				"From: <sip:pda2u.%d@example.com>;tag=18801SIPpTag00%d\r\n"+
				"To: <sip:pda2u.%d@example.com>\r\nCall-ID: %d-18801@127.0.0.1\r\n"+
				"CSeq: 1 PUBLISH\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 3600\r\n"+
				"Content-Type: application/pidf+xml\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i, i)
			req, code, reason := s.parse([]byte(data))
			if code != 0 {
				b.Fatal(code, reason)
			}
			req.SetTransport("UDP")
			req.SetSource(from.String())
			if taken, busy := l.receive(req, conn, from); !taken || busy {
				b.Fatal("not taken")
			}
			tx := <-l.queue
			res := sip.NewResponseFromRequest(tx.req, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("SIP-ETag", newToken()))
			res.AppendHeader(sip.NewHeader("Expires", "3600"))
			if err := tx.Respond(res); err != nil {
				b.Fatal(err)
			}
			tx.finish()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/tx")
		runtime.KeepAlive(l)
	}
}
