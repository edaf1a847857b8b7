package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
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

// udpTestbed is a udpTransactions without workers or sweeper, and a
// client socket whose requests it receives.
type udpTestbed struct {
	t        *testing.T
	s        *Server
	l        *udpTransactions
	srv, cli net.PacketConn
	from     netip.AddrPort
}

func newUDPTestbed(t *testing.T) *udpTestbed {
	b := &udpTestbed{t: t, s: &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		parser: sip.NewParser(sip.WithHeadersParsers(header.Parsers()))}}
	for _, c := range []*net.PacketConn{&b.srv, &b.cli} {
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		*c = conn
	}
	b.from = b.cli.LocalAddr().(*net.UDPAddr).AddrPort()
	b.l = newUDPTransactions(b.s, 4)
	return b
}

// subscribe is a SUBSCRIBE from the client with branch z9hG4bK-<id>.
func (b *udpTestbed) subscribe(id string) []byte {
	return fmt.Appendf(nil, "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-%s\r\nRecord-Route: <sip:p.example.com;lr>\r\n"+
		"From: <sip:w@example.com>;tag=f\r\nTo: <sip:alice@example.com>\r\nCall-ID: c%s\r\n"+
		"CSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n", b.from, id, id)
}

// receive hands data to l as the read filter does and returns the
// transaction queued for it, or nil when it was answered or absorbed.
func (b *udpTestbed) receive(data []byte) *udpTx {
	req, code, reason := b.s.parse(data)
	if code != 0 {
		b.t.Fatal(code, reason)
	}
	req.SetTransport("UDP")
	req.SetSource(b.from.String())
	if taken, busy := b.l.receive(req, b.srv, b.from); !taken || busy {
		b.t.Fatal("not taken")
	}
	select {
	case tx := <-b.l.queue:
		return tx
	default:
		return nil
	}
}

// answer has tx respond 200, changed by alter, and its handler return.
func (b *udpTestbed) answer(tx *udpTx, alter func(*sip.Response)) {
	res := sip.NewResponseFromRequest(tx.req, 200, "OK", nil)
	alter(res)
	if err := tx.Respond(res); err != nil {
		b.t.Fatal(err)
	}
	tx.finish()
}

// read is the next datagram to the client within d, or nil.
func (b *udpTestbed) read(d time.Duration) []byte {
	buf := make([]byte, 4096)
	b.cli.SetReadDeadline(time.Now().Add(d))
	n, _, err := b.cli.ReadFrom(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// An answered transaction keeps only what follows the part of its
// response derived from the request, and a retransmission gets the same
// bytes, rebuilt; a response whose derived part the handler changed is
// kept whole.
func TestUDPTxKeepsWhatItCannotRebuild(t *testing.T) {
	b := newUDPTestbed(t)
	for i, tc := range []struct {
		name    string
		alter   func(*sip.Response)
		rebuilt bool
	}{
		{"a To tag and headers of its own", func(r *sip.Response) {
			r.To().Params.Add("tag", "t1")
			r.AppendHeader(sip.NewHeader("Expires", "60"))
		}, true},
		{"sipgo's To tag, a UUID, and a body", func(r *sip.Response) {
			r.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
			r.SetBody([]byte("a body of 19 bytes."))
		}, true},
		{"a To tag that is a UUID in upper case", func(r *sip.Response) {
			r.To().Params.Add("tag", "8F14E45F-CEEA-467A-9575-2A4E1D8B6C0F")
		}, true},
		{"a Via changed", func(r *sip.Response) { r.Via().Params.Add("x", "y") }, false},
	} {
		data := b.subscribe(fmt.Sprint("k", i))
		tx := b.receive(data)
		b.answer(tx, tc.alter)
		first := b.read(2 * time.Second)
		b.l.mu.Lock()
		a := readAnswer(b.l.find(tx.hash))
		b.l.mu.Unlock()
		if rebuilt := a.code != 0; rebuilt != tc.rebuilt || rebuilt && len(a.res) >= len(first) {
			t.Errorf("%s: kept %d of %d bytes, rebuilt %v", tc.name, len(a.res), len(first), rebuilt)
		}
		if tx := b.receive(data); tx != nil {
			t.Fatalf("%s: retransmission handled as new", tc.name)
		}
		if again := b.read(2 * time.Second); !bytes.Equal(again, first) {
			t.Errorf("%s: retransmission answered\n%s\nnot\n%s", tc.name, again, first)
		}
	}
}

// A To tag is kept as 16 bytes only when writing them again gives the
// same tag.
func TestPackUUID(t *testing.T) {
	for tag, packed := range map[string]bool{
		"8f14e45f-ceea-467a-9575-2a4e1d8b6c0f":  true,
		"8F14E45F-CEEA-467A-9575-2A4E1D8B6C0F":  false,
		"8f14e45fceea-467a-9575-2a4e1d8b6c0f-":  false,
		"8f14e45f-ceea-467a-9575-2a4e1d8b6c0g":  false,
		"8f14e45f-ceea-467a-9575-2a4e1d8b6c0":   false,
		"8f14e45f-ceea-467a-9575-2a4e1d8b6c0f0": false,
	} {
		u, ok := packUUID([]byte(tag))
		if ok != packed || ok && string(appendUUID(nil, u[:])) != tag {
			t.Errorf("%s: packed %v as %x", tag, ok, u)
		}
	}
}

// Two keys whose first hashes share their low 32 bits are both found,
// each with its own record; a key whose second hash is another's is not
// taken for it; forget drops one record and leaves the other.
func TestUDPBucketCollision(t *testing.T) {
	b := udpBucket{at: map[uint32]udpPos{}}
	h1, h2 := uint64(1)<<32|7, uint64(2)<<32|7
	rec := func(check uint64, s string) []byte {
		a := udpAnswer{check: check, res: []byte(s)}
		return a.appendTo(nil)
	}
	p1, _ := b.put(h1, rec(11, "first"))
	b.put(h2, rec(22, "second"))
	for _, c := range []struct {
		h, check uint64
		want     string
	}{{h1, 11, "first"}, {h2, 22, "second"}, {h1, 33, ""}, {h2, 33, ""}, {3<<32 | 7, 33, ""}} {
		got := ""
		if r := b.get(c.h, c.check); r != nil {
			got = string(readAnswer(r).res)
		}
		if got != c.want {
			t.Errorf("get(%#x, %d) = %q, want %q", c.h, c.check, got, c.want)
		}
	}
	b.forget(h1, p1)
	if b.get(h1, 11) != nil || b.get(h2, 22) == nil {
		t.Error("forget dropped the wrong record")
	}
}

// An answered transaction is dropped at the udpBuckets+1st sweep after
// its answer (Timer J to 1.125 J), when its Done is closed and a
// retransmission becomes a new request; Terminate drops it at once.
func TestUDPTxDroppedWithItsBucket(t *testing.T) {
	b := newUDPTestbed(t)
	data := b.subscribe("j")
	tx := b.receive(data)
	b.answer(tx, func(*sip.Response) {})
	first := b.read(2 * time.Second)
	done := tx.Done()
	for i := range udpBuckets {
		b.l.sweep()
		if tx := b.receive(data); tx != nil {
			t.Fatalf("after %d sweeps: retransmission handled as new", i+1)
		}
		if again := b.read(2 * time.Second); !bytes.Equal(again, first) {
			t.Fatalf("after %d sweeps: retransmission answered\n%s\nnot\n%s", i+1, again, first)
		}
		select {
		case <-done:
			t.Fatalf("done after %d sweeps", i+1)
		default:
		}
	}
	b.l.sweep()
	<-done
	tx = b.receive(data)
	if tx == nil {
		t.Fatal("retransmission after its bucket was dropped not handled as new")
	}
	b.answer(tx, func(*sip.Response) {})
	b.read(2 * time.Second)
	tx.Terminate()
	<-tx.Done()
	if tx := b.receive(data); tx == nil {
		t.Fatal("retransmission after Terminate not handled as new")
	}
	if extra := b.read(100 * time.Millisecond); extra != nil {
		t.Fatalf("answered from a dropped transaction: %s", extra)
	}
}

// udpPair is two UDP sockets on 127.0.0.1, closed when t ends: the
// server's and a peer's.
func udpPair(t *testing.T) (conn, peer *net.UDPConn) {
	for _, c := range []**net.UDPConn{&conn, &peer} {
		var err error
		if *c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*c).Close() })
	}
	return conn, peer
}

// TestUDPNotifyTimerF sends a NOTIFY over a real socket to a peer that
// never answers: the transaction is retransmitted, then ends with
// errNotifyTimeout at Timer F, and its branch is forgotten.
func TestUDPNotifyTimerF(t *testing.T) {
	conn, peer := udpPair(t)
	n := &udpNotifies{timerF: 2 * sip.T1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.retransmit(ctx, func(err error) { t.Error(err) })
	wire := []byte("NOTIFY sip:w@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	start := time.Now()
	_, err := n.do(ctx, wire, 7, conn, sip.Addr{Hostname: "127.0.0.1", Port: 5060}, peer.LocalAddr().(*net.UDPAddr).AddrPort())
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
	if len(n.txs) != 0 || len(n.due) != 0 {
		t.Errorf("%d transactions, %d due left after Timer F", len(n.txs), len(n.due))
	}
}

// TestUDPNotifyDue sends NOTIFYs over a real socket to a peer that reads
// them and answers through receive, as the read filter does: a final
// response takes its NOTIFY out of due, a provisional one puts it T2 on,
// and due stays ordered by when each is next looked at.
func TestUDPNotifyDue(t *testing.T) {
	conn, peer := udpPair(t)
	n := &udpNotifies{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.retransmit(ctx, func(err error) { t.Error(err) })
	const count = 20
	results := make(chan error, count)
	for i := range count {
		wire := []byte("NOTIFY sip:w@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
		go func() {
			_, err := n.do(ctx, wire, uint32(i+1), conn, sip.Addr{Hostname: "127.0.0.1", Port: 5060}, peer.LocalAddr().(*net.UDPAddr).AddrPort())
			results <- err
		}()
	}
	// Each NOTIFY's branch, as the peer reads it.
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	var branches []string
	for len(branches) < count {
		m, _, err := peer.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		branches = append(branches, string(topViaBranch(buf[bytes.Index(buf[:m], []byte("\r\n"))+2:m])))
	}
	ordered := func() {
		t.Helper()
		for i := 1; i < len(n.due); i++ {
			if e := n.due[i].due(); e.pos != i+1 || e.at < n.due[(i-1)/2].due().at {
				t.Fatalf("due out of order at %d", i)
			}
		}
	}
	before := time.Now()
	for i, b := range branches {
		if i%2 == 0 {
			n.receive(200, "OK", []byte(b))
		} else {
			n.receive(100, "Trying", []byte(b))
		}
	}
	for range count / 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	n.mu.Lock()
	if len(n.due) != count/2 || len(n.txs) != count/2 {
		t.Errorf("after %d final responses of %d: %d due, %d in the table", count/2, count, len(n.due), len(n.txs))
	}
	ordered()
	for _, o := range n.due {
		if tx, e := o.(*notifyTx), o.due(); tx.interval != sip.T2 || e.at < before.Add(sip.T2).UnixNano() {
			t.Errorf("after a 100: next in %v, at %v from then", tx.interval, time.Duration(e.at-before.UnixNano()))
		}
	}
	n.mu.Unlock()
	for i, b := range branches {
		if i%2 == 1 {
			n.receive(200, "OK", []byte(b))
		}
	}
	for range count / 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.due) != 0 || len(n.txs) != 0 {
		t.Errorf("all answered: %d due, %d in the table", len(n.due), len(n.txs))
	}
}

// A listener's kept sources read as sipgo writes them, whichever address
// came last to the slot: a source is never answered with another's.
func TestUDPListenerSource(t *testing.T) {
	var ln udpListener
	addrs := []*net.UDPAddr{
		{IP: net.IPv4(127, 0, 0, 1), Port: 5060},
		{IP: net.ParseIP("127.0.0.1").To4(), Port: 5060},
		{IP: net.ParseIP("2001:db8::1"), Port: 5060},
		{IP: net.ParseIP("fe80::1"), Port: 5060, Zone: "eth0"},
		{IP: net.ParseIP("fe80::1"), Port: 5060, Zone: "eth1"},
	}
	for p := 1; p <= 2*udpSourceSlots; p++ { // every slot taken twice over
		addrs = append(addrs, &net.UDPAddr{IP: net.IPv4(10, 0, byte(p>>8), byte(p)), Port: 40000 + p})
	}
	for range 2 {
		for _, a := range addrs {
			ap, name := ln.source(a)
			if name != a.String() {
				t.Fatalf("source of %v: %q", a, name)
			}
			if want := netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), uint16(a.Port)); ap != want {
				t.Fatalf("source of %v: %v, want %v", a, ap, want)
			}
		}
	}
}

// BenchmarkNotifyTick is one tick of retransmit (every T1/5) with 10,000
// NOTIFYs waiting for their responses, none due: what an overloaded
// watcher population, slow to answer, costs the server between
// retransmissions.
func BenchmarkNotifyTick(b *testing.B) {
	var n udpNotifies
	now := time.Now()
	for i := range 10000 {
		n.add(&notifyTx{branch: notifyBranch + strconv.Itoa(i), timeout: now.Add(notifyTimeout), res: make(chan notifyResult, 1)}, now)
	}
	var due []*notifyTx
	b.ReportAllocs()
	for b.Loop() {
		if due = n.tick(now, due[:0]); len(due) != 0 {
			b.Fatalf("%d due", len(due))
		}
	}
}
