package siptest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Timeout is how long a peer waits for a response or a NOTIFY before it
// fails the test.
const Timeout = 5 * time.Second

// Peer is a SIP user agent on a real 127.0.0.1 socket, writing requests
// from raw text so a test controls every byte. It answers each NOTIFY it
// receives (200 unless AnswerNotifies says otherwise) and queues it for
// Notify.
type Peer struct {
	t         testing.TB
	transport string // "UDP", "TCP" or "TLS"
	conn      net.Conn
	pc        net.PacketConn
	server    net.Addr // UDP destination
	serverStr string   // host:port
	local     string   // host:port

	responses  chan *sip.Response
	notifies   chan *sip.Request
	notifyCode atomic.Int32
	wmu        sync.Mutex
	branch     atomic.Int64
	closed     atomic.Bool    // after it, the reader's late answers may fail quietly
	held       []*sip.Request // NOTIFYs set aside by NotifyIn, handed out first by Notify
}

// NewPeer opens a peer to the server at addr (host:port) over transport,
// "UDP" or "TCP". It is closed when the test ends.
func NewPeer(tb testing.TB, transport, addr string) *Peer {
	tb.Helper()
	p := newPeer(tb, transport)
	p.serverStr = addr
	switch transport {
	case "UDP":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		p.pc = pc
		p.server, _ = net.ResolveUDPAddr("udp", addr)
		p.local = pc.LocalAddr().String()
		go p.readUDP()
	case "TCP":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		p.conn = c
		p.local = c.LocalAddr().String()
		go p.readStream()
	default:
		tb.Fatalf("siptest: no peer over %q: UDP or TCP", transport)
	}
	tb.Cleanup(p.close)
	return p
}

// NewPeerOn makes a peer of a stream connection the test opened or
// accepted itself (a TLS connection, or one the server opened to a
// listener of the test's); transport ("TCP" or "TLS") goes in its Via and
// Contact. The connection is closed when the test ends.
func NewPeerOn(tb testing.TB, transport string, conn net.Conn) *Peer {
	p := newPeer(tb, transport)
	p.conn = conn
	p.local = conn.LocalAddr().String()
	p.serverStr = conn.RemoteAddr().String()
	go p.readStream()
	tb.Cleanup(p.close)
	return p
}

func newPeer(tb testing.TB, transport string) *Peer {
	p := &Peer{t: tb, transport: transport, responses: make(chan *sip.Response, 64), notifies: make(chan *sip.Request, 64)}
	p.notifyCode.Store(200)
	return p
}

// Local is the peer's own host:port, the one its Contact names.
func (p *Peer) Local() string { return p.local }

// SetServer points a UDP peer at another server address: the same
// subscriber, after the server restarted on a new port.
func (p *Peer) SetServer(addr string) {
	p.server, _ = net.ResolveUDPAddr("udp", addr)
	p.serverStr = addr
}

// AnswerNotifies sets the code the peer answers NOTIFYs with from now on:
// 481 says the dialog is gone.
func (p *Peer) AnswerNotifies(code int) { p.notifyCode.Store(int32(code)) }

// Contact is a Contact header line for the peer's address.
func (p *Peer) Contact() string {
	return fmt.Sprintf("Contact: <sip:watcher@%s;transport=%s>", p.local, strings.ToLower(p.transport))
}

func (p *Peer) close() {
	p.closed.Store(true)
	if p.pc != nil {
		p.pc.Close()
	}
	if p.conn != nil {
		p.conn.Close()
	}
}

func (p *Peer) write(b []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var err error
	if p.pc != nil {
		_, err = p.pc.WriteTo(b, p.server)
	} else {
		_, err = p.conn.Write(b)
	}
	if err != nil && !p.closed.Load() {
		p.t.Errorf("peer write: %v", err)
	}
}

func (p *Peer) readUDP() {
	buf := make([]byte, 65535)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		p.dispatch(append([]byte(nil), buf[:n]...), from)
	}
}

// readStream frames messages by Content-Length, as RFC 3261 §18.3 requires.
func (p *Peer) readStream() {
	r := bufio.NewReader(p.conn)
	for {
		var head bytes.Buffer
		length := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" && head.Len() == 0 {
				continue // keep-alive
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if name, v, ok := strings.Cut(line, ":"); ok &&
				(strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.TrimSpace(name) == "l") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		p.dispatch(append(head.Bytes(), body...), nil)
	}
}

// dispatch routes one message; a request is answered to from (UDP) or on
// the connection (a stream).
func (p *Peer) dispatch(b []byte, from net.Addr) {
	msg, err := sip.ParseMessage(b)
	if err != nil {
		if !p.closed.Load() {
			p.t.Errorf("peer got unparsable message: %v\n%s", err, b)
		}
		return
	}
	switch m := msg.(type) {
	case *sip.Response:
		p.responses <- m
	case *sip.Request:
		if m.Method == sip.NOTIFY {
			p.answer(m, int(p.notifyCode.Load()), from)
			p.notifies <- m
		}
	}
}

// answer sends a response to req, built by hand like everything else.
func (p *Peer) answer(req *sip.Request, code int, to net.Addr) {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, map[int]string{200: "OK", 481: "Call/Transaction Does Not Exist"}[code])
	for _, name := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
		for _, h := range req.GetHeaders(name) {
			fmt.Fprintf(&b, "%s: %s\r\n", h.Name(), h.Value())
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if to == nil {
		p.write([]byte(b.String()))
		return
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.pc.WriteTo([]byte(b.String()), to); err != nil && !p.closed.Load() {
		p.t.Errorf("peer write: %v", err)
	}
}

// Request is a request as a test writes it: Render adds the Via,
// Max-Forwards and Content-Length headers, the rest is Headers, one
// "Name: value" line each, in order.
type Request struct {
	Method, URI string
	Headers     []string
	Body        string
}

// Send writes r and returns its final response, failing the test when
// none comes within Timeout.
func (p *Peer) Send(r Request) *sip.Response {
	p.t.Helper()
	p.SendRaw(p.Render(r))
	return p.Response()
}

// Render is r as the text Send would write, for a test that alters it
// before SendRaw.
func (p *Peer) Render(r Request) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", r.Method, r.URI)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK-t%d-%d\r\n", p.transport, p.local, time.Now().UnixNano(), p.branch.Add(1))
	b.WriteString("Max-Forwards: 70\r\n")
	for _, h := range r.Headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(r.Body), r.Body)
	return b.String()
}

// SendRaw writes s as it is; its response is read with Response.
func (p *Peer) SendRaw(s string) { p.write([]byte(s)) }

// Response returns the next final response, skipping provisional ones,
// failing the test when none comes within Timeout.
func (p *Peer) Response() *sip.Response {
	p.t.Helper()
	select {
	case r := <-p.responses:
		if r.IsProvisional() {
			return p.Response()
		}
		return r
	case <-time.After(Timeout):
		p.t.Fatal("no response")
		return nil
	}
}

// ResponsesWaiting is how many responses have arrived that Response has
// not returned yet: whether a request sent with SendRaw is answered.
func (p *Peer) ResponsesWaiting() int { return len(p.responses) }

// Notify returns the next NOTIFY, failing the test when none comes within
// Timeout.
func (p *Peer) Notify() *sip.Request {
	p.t.Helper()
	if n := p.NotifyWithin(Timeout); n != nil {
		return n
	}
	p.t.Fatal("no NOTIFY")
	return nil
}

// NotifyWithin returns the next NOTIFY, or nil when none comes within d.
func (p *Peer) NotifyWithin(d time.Duration) *sip.Request {
	if len(p.held) > 0 {
		r := p.held[0]
		p.held = p.held[1:]
		return r
	}
	select {
	case r := <-p.notifies:
		return r
	case <-time.After(d):
		return nil
	}
}

// NotifyIn returns the next NOTIFY of the dialog with this Call-ID. NOTIFYs
// of different dialogs leave the server on different send queues, so
// their order on the wire is not defined; the ones of other dialogs are
// held for Notify.
func (p *Peer) NotifyIn(callID string) *sip.Request {
	p.t.Helper()
	for i, r := range p.held {
		if Header(r, "Call-ID") == callID {
			p.held = append(p.held[:i:i], p.held[i+1:]...)
			return r
		}
	}
	deadline := time.After(Timeout)
	for {
		select {
		case r := <-p.notifies:
			if Header(r, "Call-ID") == callID {
				return r
			}
			p.held = append(p.held, r)
		case <-deadline:
			p.t.Fatalf("no NOTIFY in dialog %s", callID)
			return nil
		}
	}
}

// Quiet fails the test if a NOTIFY arrives within d. NOTIFYs NotifyIn
// already holds do not count: they arrived before.
func (p *Peer) Quiet(d time.Duration) {
	p.t.Helper()
	select {
	case r := <-p.notifies:
		p.t.Fatalf("unexpected NOTIFY:\n%s", r)
	case <-time.After(d):
	}
}
