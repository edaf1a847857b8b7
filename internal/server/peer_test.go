package server_test

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

// peer is a SIP user agent on a real 127.0.0.1 socket, written from raw
// text so tests control every byte. It answers each NOTIFY it receives
// with notifyCode (200 unless a test changes it) and queues it.
type peer struct {
	t         testing.TB
	transport string // "UDP" or "TCP"
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
	held       []*sip.Request // NOTIFYs set aside by notifyIn, handed out first by notify
}

const waitFor = 5 * time.Second

func newPeer(t testing.TB, transport, server string) *peer {
	t.Helper()
	p := &peer{t: t, transport: transport, serverStr: server, responses: make(chan *sip.Response, 64), notifies: make(chan *sip.Request, 64)}
	p.notifyCode.Store(200)
	switch transport {
	case "UDP":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.pc = pc
		p.server, _ = net.ResolveUDPAddr("udp", server)
		p.local = pc.LocalAddr().String()
		go p.readUDP()
	case "TCP":
		c, err := net.Dial("tcp", server)
		if err != nil {
			t.Fatal(err)
		}
		p.conn = c
		p.local = c.LocalAddr().String()
		go p.readTCP()
	}
	t.Cleanup(p.close)
	return p
}

func (p *peer) close() {
	p.closed.Store(true)
	if p.pc != nil {
		p.pc.Close()
	}
	if p.conn != nil {
		p.conn.Close()
	}
}

func (p *peer) write(b []byte) {
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

func (p *peer) readUDP() {
	buf := make([]byte, 65535)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		p.dispatch(append([]byte(nil), buf[:n]...), from)
	}
}

// readTCP frames messages by Content-Length, as RFC 3261 §18.3 requires.
func (p *peer) readTCP() {
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
// the connection (TCP).
func (p *peer) dispatch(b []byte, from net.Addr) {
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
func (p *peer) answer(req *sip.Request, code int, to net.Addr) {
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

// msg is a request under construction.
type msg struct {
	method, uri string
	headers     []string
	body        string
}

// send writes m with the peer's Via and the Max-Forwards and
// Content-Length headers added, and returns the final response.
func (p *peer) send(m msg) *sip.Response {
	p.t.Helper()
	p.sendRaw(p.render(m))
	return p.response()
}

func (p *peer) render(m msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", m.method, m.uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK-t%d-%d\r\n", p.transport, p.local, time.Now().UnixNano(), p.branch.Add(1))
	b.WriteString("Max-Forwards: 70\r\n")
	for _, h := range m.headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(m.body), m.body)
	return b.String()
}

func (p *peer) sendRaw(s string) { p.write([]byte(s)) }

func (p *peer) response() *sip.Response {
	p.t.Helper()
	select {
	case r := <-p.responses:
		if r.IsProvisional() {
			return p.response()
		}
		return r
	case <-time.After(waitFor):
		p.t.Fatal("no response")
		return nil
	}
}

func (p *peer) notify() *sip.Request {
	p.t.Helper()
	if len(p.held) > 0 {
		r := p.held[0]
		p.held = p.held[1:]
		return r
	}
	select {
	case r := <-p.notifies:
		return r
	case <-time.After(waitFor):
		p.t.Fatal("no NOTIFY")
		return nil
	}
}

// notifyIn returns the next NOTIFY of the dialog with this Call-ID. NOTIFYs
// of different dialogs leave on different send queues, so their order on
// the wire is not defined; the ones of other dialogs are held for notify.
func (p *peer) notifyIn(callID string) *sip.Request {
	p.t.Helper()
	for i, r := range p.held {
		if hdr(r, "Call-ID") == callID {
			p.held = append(p.held[:i:i], p.held[i+1:]...)
			return r
		}
	}
	deadline := time.After(waitFor)
	for {
		select {
		case r := <-p.notifies:
			if hdr(r, "Call-ID") == callID {
				return r
			}
			p.held = append(p.held, r)
		case <-deadline:
			p.t.Fatalf("no NOTIFY in dialog %s", callID)
			return nil
		}
	}
}

// quiet asserts that no NOTIFY arrives within d.
func (p *peer) quiet(d time.Duration) {
	p.t.Helper()
	select {
	case r := <-p.notifies:
		p.t.Fatalf("unexpected NOTIFY:\n%s", r)
	case <-time.After(d):
	}
}

func (p *peer) contact() string {
	return fmt.Sprintf("Contact: <sip:watcher@%s;transport=%s>", p.local, strings.ToLower(p.transport))
}

func hdr(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func tag(h string) string {
	_, t, _ := strings.Cut(h, "tag=")
	t, _, _ = strings.Cut(t, ";")
	return t
}
