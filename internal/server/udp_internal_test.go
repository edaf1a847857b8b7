package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

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

// An answered transaction keeps only what follows the part of its
// response derived from the request, and a retransmission gets the same
// bytes, rebuilt; a response whose derived part the handler changed is
// kept whole.
func TestUDPTxKeepsWhatItCannotRebuild(t *testing.T) {
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		parser: sip.NewParser(sip.WithHeadersParsers(header.Parsers()))}
	srv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	from := cli.LocalAddr().(*net.UDPAddr).AddrPort()
	read := func() []byte {
		buf := make([]byte, 4096)
		cli.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := cli.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	l := newUDPTransactions(s, 4)
	for i, tc := range []struct {
		name    string
		alter   func(*sip.Response)
		rebuilt bool
	}{
		{"a To tag and headers of its own", func(r *sip.Response) {
			r.To().Params.Add("tag", "t1")
			r.AppendHeader(sip.NewHeader("Expires", "60"))
		}, true},
		{"a Via changed", func(r *sip.Response) { r.Via().Params.Add("x", "y") }, false},
	} {
		data := fmt.Sprintf("SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-k%d\r\nRecord-Route: <sip:p.example.com;lr>\r\n"+
			"From: <sip:w@example.com>;tag=f\r\nTo: <sip:alice@example.com>\r\nCall-ID: c%d\r\n"+
			"CSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n", from, i, i)
		parse := func() *sip.Request {
			req, code, reason := s.parse([]byte(data))
			if code != 0 {
				t.Fatal(code, reason)
			}
			req.SetTransport("UDP")
			req.SetSource(from.String())
			return req
		}
		if taken, busy := l.receive(parse(), srv, from); !taken || busy {
			t.Fatal("not taken")
		}
		tx := <-l.queue
		res := sip.NewResponseFromRequest(tx.req, 200, "OK", nil)
		tc.alter(res)
		if err := tx.Respond(res); err != nil {
			t.Fatal(err)
		}
		tx.finish()
		first := read()
		if rebuilt := tx.code != 0; rebuilt != tc.rebuilt || rebuilt && len(tx.res) >= len(first) {
			t.Errorf("%s: kept %d of %d bytes, rebuilt %v", tc.name, len(tx.res), len(first), rebuilt)
		}
		l.receive(parse(), srv, from)
		if again := read(); !bytes.Equal(again, first) {
			t.Errorf("%s: retransmission answered\n%s\nnot\n%s", tc.name, again, first)
		}
	}
}

// TestUDPNotifyTimerF sends a NOTIFY over a real socket to a peer that
// never answers: the transaction is retransmitted, then ends with
// errNotifyTimeout at Timer F, and its branch is forgotten.
func TestUDPNotifyTimerF(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	n := &udpNotifies{timerF: 2 * sip.T1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.retransmit(ctx, func(err error) { t.Error(err) })
	wire := []byte("NOTIFY sip:w@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	start := time.Now()
	_, err = n.do(ctx, wire, 7, conn, sip.Addr{Hostname: "127.0.0.1", Port: 5060}, peer.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != errNotifyTimeout {
		t.Fatalf("do: %v, want %v", err, errNotifyTimeout)
	}
	if d := time.Since(start); d < 2*sip.T1 || d > 2*sip.T1+time.Second {
		t.Errorf("Timer F after %v, want %v", d, 2*sip.T1)
	}
	peer.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	sent := 0
	for {
		m, _, err := peer.ReadFrom(buf)
		if err != nil {
			break
		}
		if !bytes.Contains(buf[:m], []byte("\r\nCSeq: 7 NOTIFY\r\n\r\n")) || !bytes.Contains(buf[:m], []byte("\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch="+notifyBranch)) {
			t.Fatalf("sent:\n%s", buf[:m])
		}
		sent++
	}
	if sent < 2 {
		t.Errorf("sent %d times before Timer F, want the NOTIFY and its retransmission", sent)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.txs) != 0 {
		t.Errorf("%d transactions left after Timer F", len(n.txs))
	}
}
