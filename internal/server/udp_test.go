package server_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
)

// udpClient is a raw UDP socket to the server: the tests send the same
// datagram again, byte for byte, and compare answers byte for byte.
type udpClient struct {
	t    *testing.T
	c    *net.UDPConn
	srv  string
	msgs chan []byte
}

func newUDPClient(t *testing.T, srv string) *udpClient {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &udpClient{t: t, c: c, srv: srv, msgs: make(chan []byte, 64)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				close(u.msgs)
				return
			}
			u.msgs <- bytes.Clone(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return u
}

func (u *udpClient) send(m string) {
	u.t.Helper()
	a, _ := net.ResolveUDPAddr("udp", u.srv)
	if _, err := u.c.WriteTo([]byte(m), a); err != nil {
		u.t.Fatal(err)
	}
}

// response is the next response within d, or nil; NOTIFYs are answered
// 200 and counted in notifies.
func (u *udpClient) response(d time.Duration, notifies *[]*sip.Request) []byte {
	u.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-u.msgs:
			if bytes.HasPrefix(m, []byte("SIP/2.0 ")) {
				return m
			}
			msg, err := sip.ParseMessage(m)
			if err != nil {
				u.t.Fatalf("unparsable message: %v\n%s", err, m)
			}
			req := msg.(*sip.Request)
			if notifies != nil {
				*notifies = append(*notifies, req)
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			u.send(res.String())
		case <-deadline:
			return nil
		}
	}
}

// request is a SIP request from u with this branch.
func (u *udpClient) request(method, branch, callID string, extra ...string) string {
	local := u.c.LocalAddr().String()
	body := ""
	if method == "PUBLISH" {
		body = extra[0]
		extra = append(extra[1:], "Content-Type: text/plain")
	}
	return method + " sip:alice@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:watcher@example.com>;tag=f" + branch + "\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:watcher@" + local + ">\r\n" +
		"Event: echo\r\nExpires: 60\r\n" +
		strings.Join(append(extra, ""), "\r\n") +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}

// startMetered starts a UDP server on the echo module with metrics, its
// Timer J set when timerJ > 0, and returns it with a scraper.
func startMetered(t *testing.T, timerJ time.Duration) (string, func() map[string]float64) {
	t.Helper()
	var srv *server.Server
	m := metrics.New(func() []*extension.Module { return srv.Modules() })
	srv, err := server.New(server.Options{
		Listen:       []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 1, Max: 3600}, Publication: server.Bounds{Min: 1, Max: 3600},
		Modules: []*extension.Module{echo(t)}, Store: m.Store(store.NewMemory()), Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if timerJ > 0 {
		server.SetTimerJ(srv, timerJ)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	web := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	t.Cleanup(web.Close)
	return addrOf(srv, "udp"), func() map[string]float64 { return scrape(t, web.URL) }
}

func wantMetric(t *testing.T, got map[string]float64, name string, want float64) {
	t.Helper()
	if got[name] != want {
		t.Errorf("%s = %v, want %v", name, got[name], want)
	}
}

// A retransmitted PUBLISH or SUBSCRIBE (same branch) gets the very bytes
// of the first answer, and is handled once: one publication and one
// ETag, one subscription and one NOTIFY dialog (RFC 3261 §17.2.2).
func TestUDPRetransmissionAnsweredFromCache(t *testing.T) {
	addr, scrapeNow := startMetered(t, 0)
	u := newUDPClient(t, addr)

	pub := u.request("PUBLISH", "z9hG4bK-pub1", "pub1@test", "open")
	u.send(pub)
	first := u.response(5*time.Second, nil)
	if !bytes.HasPrefix(first, []byte("SIP/2.0 200 ")) || !bytes.Contains(first, []byte("SIP-ETag: ")) {
		t.Fatalf("PUBLISH: %s", first)
	}
	for range 2 {
		u.send(pub)
		if again := u.response(5*time.Second, nil); !bytes.Equal(again, first) {
			t.Fatalf("retransmitted PUBLISH answered\n%s\nnot\n%s", again, first)
		}
	}

	sub := u.request("SUBSCRIBE", "z9hG4bK-sub1", "sub1@test")
	var notifies []*sip.Request
	u.send(sub)
	first = u.response(5*time.Second, &notifies)
	if !bytes.HasPrefix(first, []byte("SIP/2.0 200 ")) {
		t.Fatalf("SUBSCRIBE: %s", first)
	}
	u.send(sub)
	if again := u.response(5*time.Second, &notifies); !bytes.Equal(again, first) {
		t.Fatalf("retransmitted SUBSCRIBE answered\n%s\nnot\n%s", again, first)
	}
	if extra := u.response(500*time.Millisecond, &notifies); extra != nil {
		t.Fatalf("a further answer: %s", extra)
	}
	tags := map[string]bool{}
	for _, n := range notifies {
		tag, _ := n.From().Params.Get("tag")
		tags[tag] = true
	}
	if len(notifies) == 0 || len(tags) != 1 {
		t.Errorf("NOTIFYs of %d dialogs (%d NOTIFYs), want one", len(tags), len(notifies))
	}

	got := scrapeNow()
	wantMetric(t, got, `presenced_sip_requests_total{method="PUBLISH"}`, 1)
	wantMetric(t, got, `presenced_sip_responses_total{code="200",method="PUBLISH"}`, 1)
	wantMetric(t, got, `presenced_publications{event="echo"}`, 1)
	wantMetric(t, got, `presenced_sip_requests_total{method="SUBSCRIBE"}`, 1)
	wantMetric(t, got, `presenced_subscriptions{event="echo"}`, 1)
}

// A retransmission that comes while its request is still being handled
// (here a module call that spins until its 2 s deadline) is absorbed: one
// answer, one handling; a later one gets that answer again.
func TestUDPRetransmissionDuringHandlingAbsorbed(t *testing.T) {
	addr, scrapeNow := startMetered(t, 0)
	u := newUDPClient(t, addr)
	pub := u.request("PUBLISH", "z9hG4bK-slow1", "slow1@test", "loop")
	u.send(pub)
	for range 3 {
		time.Sleep(100 * time.Millisecond)
		u.send(pub)
	}
	first := u.response(10*time.Second, nil)
	if !bytes.HasPrefix(first, []byte("SIP/2.0 500 ")) {
		t.Fatalf("PUBLISH loop: %s", first)
	}
	if extra := u.response(time.Second, nil); extra != nil {
		t.Fatalf("answered more than once: %s", extra)
	}
	u.send(pub)
	if again := u.response(5*time.Second, nil); !bytes.Equal(again, first) {
		t.Fatalf("retransmission answered\n%s\nnot\n%s", again, first)
	}
	got := scrapeNow()
	wantMetric(t, got, `presenced_sip_requests_total{method="PUBLISH"}`, 1)
	wantMetric(t, got, `presenced_extension_calls_total{extension="echo"}`, 1)
}

// An answered transaction is kept until Timer J, then forgotten: the same
// datagram is a new request, handled again (a second publication, another
// ETag).
func TestUDPTransactionForgottenAfterTimerJ(t *testing.T) {
	const timerJ = time.Second
	addr, scrapeNow := startMetered(t, timerJ)
	u := newUDPClient(t, addr)
	pub := u.request("PUBLISH", "z9hG4bK-j1", "j1@test", "open")
	u.send(pub)
	first := u.response(5*time.Second, nil)
	answered := time.Now() // after the answer was sent and kept
	time.Sleep(timerJ * 8 / 10)
	u.send(pub)
	if again := u.response(5*time.Second, nil); !bytes.Equal(again, first) {
		t.Fatalf("retransmission within Timer J answered\n%s\nnot\n%s", again, first)
	}
	time.Sleep(time.Until(answered.Add(timerJ * 3 / 2))) // kept timerJ to 1.125 timerJ
	u.send(pub)
	later := u.response(5*time.Second, nil)
	etag := func(m []byte) string {
		msg, err := sip.ParseMessage(m)
		if err != nil {
			t.Fatalf("%v: %s", err, m)
		}
		res := msg.(*sip.Response)
		if res.StatusCode != 200 {
			t.Fatalf("PUBLISH: %s", m)
		}
		return res.GetHeader("SIP-ETag").Value()
	}
	if etag(later) == etag(first) {
		t.Errorf("after Timer J the same ETag %s: not handled again", etag(first))
	}
	got := scrapeNow()
	wantMetric(t, got, `presenced_sip_requests_total{method="PUBLISH"}`, 2)
	wantMetric(t, got, `presenced_publications{event="echo"}`, 2)
}

// next is the next datagram within d, or nil.
func (u *udpClient) next(d time.Duration) []byte {
	select {
	case m := <-u.msgs:
		return m
	case <-time.After(d):
		return nil
	}
}

// nextNotify is the next NOTIFY within d, unanswered, skipping
// responses; nil if none comes.
func (u *udpClient) nextNotify(d time.Duration) []byte {
	deadline := time.Now().Add(d)
	for {
		m := u.next(time.Until(deadline))
		if m == nil || bytes.HasPrefix(m, []byte("NOTIFY ")) {
			return m
		}
	}
}

// subscribeUDP subscribes over UDP to a fresh server (call-ID id@test) and
// returns the client and the first NOTIFY, unanswered.
func subscribeUDP(t *testing.T, id string) (*udpClient, []byte) {
	t.Helper()
	addr, _ := startMetered(t, 0)
	u := newUDPClient(t, addr)
	u.send(u.request("SUBSCRIBE", "z9hG4bK-"+id, id+"@test"))
	first := u.nextNotify(5 * time.Second)
	if first == nil {
		t.Fatal("no NOTIFY")
	}
	return u, first
}

// A NOTIFY over UDP left unanswered is sent again, the same bytes, T1
// later and then at doubling intervals (RFC 3261 §17.1.2.2, Timer E); once
// answered it is not sent again, and the subscription lives on.
func TestUDPNotifyRetransmitted(t *testing.T) {
	u, first := subscribeUDP(t, "subE")
	sent := time.Now()
	again := u.nextNotify(5 * time.Second)
	if !bytes.Equal(again, first) {
		t.Fatalf("retransmission\n%s\nnot\n%s", again, first)
	}
	if d := time.Since(sent); d < sip.T1*8/10 {
		t.Errorf("retransmitted after %v, before T1", d)
	}
	third := u.nextNotify(5 * time.Second)
	if !bytes.Equal(third, first) {
		t.Fatalf("second retransmission\n%s\nnot\n%s", third, first)
	}
	if d := time.Since(sent); d < (sip.T1+2*sip.T1)*8/10 {
		t.Errorf("second retransmission %v after the NOTIFY, want about 3*T1", d)
	}
	msg, err := sip.ParseMessage(third)
	if err != nil {
		t.Fatal(err)
	}
	u.send(sip.NewResponseFromRequest(msg.(*sip.Request), 200, "OK", nil).String())
	if m := u.nextNotify(3 * sip.T1 * 2); m != nil {
		t.Fatalf("sent again after its 200:\n%s", m)
	}
	u.send(u.request("PUBLISH", "z9hG4bK-pubE", "pubE@test", "open"))
	n := u.nextNotify(5 * time.Second)
	if n == nil || bytes.Equal(n, first) || !bytes.Contains(n, []byte("\r\n\r\nopen")) {
		t.Fatalf("after the PUBLISH: %s", n)
	}
}

// TestUDPNotifyResponseReadFromBytes answers a NOTIFY over UDP with
// responses the server reads without parsing them whole: one whose status
// line is malformed is ignored (the NOTIFY is retransmitted), a 100 slows
// the retransmissions to T2, and a 200 written with compact headers and
// odd spacing ends the transaction.
func TestUDPNotifyResponseReadFromBytes(t *testing.T) {
	u, first := subscribeUDP(t, "subF")
	msg, err := sip.ParseMessage(first)
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	via := req.Via()
	branch, _ := via.Params.Get("branch")
	// respond writes a response to the NOTIFY with the given status line
	// and top Via header, the rest copied from the request.
	respond := func(status, topVia string) string {
		return status + "\r\n" + topVia + "\r\n" +
			"From: " + req.From().Value() + "\r\n" +
			"To: " + req.To().Value() + "\r\n" +
			"Call-ID: " + req.CallID().Value() + "\r\n" +
			"CSeq: " + req.CSeq().Value() + "\r\n" +
			"Content-Length: 0\r\n\r\n"
	}
	viaLine := "Via: SIP/2.0/UDP " + via.Host + ":" + fmt.Sprint(via.Port) + ";branch=" + branch
	for _, status := range []string{"SIP/2.0 2OO OK", "SIP/2.0  200 OK", "SIP/2.0 200", "SIP/3.0 200 OK"} {
		u.send(respond(status, viaLine))
	}
	sent := time.Now()
	if again := u.nextNotify(5 * time.Second); !bytes.Equal(again, first) {
		t.Fatalf("after malformed responses, not retransmitted: %s", again)
	}
	u.send(respond("SIP/2.0 100 Trying", viaLine))
	time.Sleep(100 * time.Millisecond)
	since := time.Now()
	if again := u.nextNotify(sip.T2 + 2*time.Second); !bytes.Equal(again, first) {
		t.Fatalf("after a 100, not retransmitted: %s", again)
	}
	if d := time.Since(since); d < sip.T2*8/10 {
		t.Errorf("after a 100, retransmitted within %v (%v since the NOTIFY), want T2", d, time.Since(sent))
	}
	u.send(respond("SIP/2.0 200 OK", "v :SIP/2.0/UDP  "+via.Host+" : "+fmt.Sprint(via.Port)+
		" ;rport ; BRANCH = "+branch+" , SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x"))
	if m := u.nextNotify(sip.T2 + time.Second); m != nil {
		t.Fatalf("sent again after its 200:\n%s", m)
	}
}
