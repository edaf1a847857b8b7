package xmpp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/logtest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
)

// These tests run the whole gateway, both ways, against a real Prosody,
// with real XMPP clients on slixmpp (testdata/client.py, Debian
// python3-slixmpp) and SIP peers over UDP.

// xev is one line the client wrote.
type xev struct {
	Ev, From, Type, Show, Status, Lang string
	Priority                           int
}

type xclient struct {
	t    *testing.T
	name string
	in   io.WriteCloser
	evs  chan xev
	mu   sync.Mutex
	seen []xev
}

// python returns a Python that imports slixmpp.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import slixmpp").Run() == nil {
			return p
		}
	}
	missing(t, "python3 with slixmpp is not installed (apt-get install python3-slixmpp)")
	return ""
}

// xmppUser logs user in at p as user@localhost/resource.
func xmppUser(t *testing.T, p *prosody, user, resource string) *xclient {
	t.Helper()
	cmd := exec.Command(python(t), filepath.Join("testdata", "client.py"), user+"@localhost", "pw", resource, p.c2s)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &xclient{t: t, name: user + "/" + resource, in: in, evs: make(chan xev, 256)}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e xev
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				c.mu.Lock()
				c.seen = append(c.seen, e)
				c.mu.Unlock()
				c.evs <- e
			}
		}
		close(c.evs)
	}()
	c.await("login", func(e xev) bool { return e.Ev == "ready" })
	return c
}

func (c *xclient) do(cmd string) { fmt.Fprintln(c.in, cmd) }

// quit logs the client out and waits for its process to end.
func (c *xclient) quit() {
	c.do("quit")
	for range c.evs {
	}
}

func (c *xclient) await(step string, ok func(xev) bool) xev {
	c.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, open := <-c.evs:
			if !open {
				c.t.Fatalf("%s: %s: client ended", c.name, step)
			}
			if ok(e) {
				return e
			}
		case <-timeout:
			c.t.Fatalf("%s: %s: nothing within 15s; seen %+v", c.name, step, c.events())
		}
	}
}

func (c *xclient) events() []xev {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]xev(nil), c.seen...)
}

// gateway is presenced as the daemon wires it: a server with the real pa
// module and the connector, over a store that outlives it (a restart).
type gateway struct {
	srv    *server.Server
	comp   *Component
	cancel func()
	done   chan struct{}
	log    logtest.Buffer
}

type serverHost struct{ srv *server.Server }

func (h serverHost) Presence(uri string, p abi.XMPPPresence) {
	h.srv.Input("presence", uri, abi.Request{Op: abi.OpXMPP, XMPP: &p})
}

func (h serverHost) Render(uri, watcher string) (string, []byte, error) {
	status, _, body, err := h.srv.Render("presence", uri, watcher)
	return status, body, err
}

type changeHook struct{ hook }

func (h changeHook) Changed(event, resource string) {
	if event == "presence" {
		h.c.Changed(resource)
	}
}

func startGateway(t *testing.T, st store.Store, cfg Config) *gateway {
	t.Helper()
	g := &gateway{done: make(chan struct{})}
	h := &serverHost{}
	cfg.Domains = map[string]string{"localhost": "localhost"}
	cfg.MinBackoff, cfg.MaxBackoff = 100*time.Millisecond, 200*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&g.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	comp, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{
		Listen:       []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Subscription: server.Bounds{Min: 1, Max: 3600}, Publication: server.Bounds{Min: 1, Max: 3600},
		Modules: []*extension.Module{extensiontest.Load(t, "github.com/presenced/presenced/extensions/pa", nil)},
		Watch:   changeHook{hook{comp}}, Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.srv, g.comp, g.cancel = srv, comp, cancel
	go func() { comp.Run(ctx); close(g.done) }()
	t.Cleanup(g.stop)
	return g
}

// stop stops it as the daemon does: the server first, so that nothing the
// connector does while stopping reaches the store.
func (g *gateway) stop() {
	if g.cancel == nil {
		return
	}
	g.srv.Close()
	g.cancel()
	<-g.done
	g.cancel = nil
}

func (g *gateway) addr() string {
	_, a, _ := strings.Cut(g.srv.Addrs()[0], ":")
	return a
}

// sipPeer is a SIP user agent over UDP: a watcher that answers every
// NOTIFY 200 and keeps them, and a publisher.
type sipPeer struct {
	t       *testing.T
	pc      net.PacketConn
	notify  chan notify
	answers chan *sip.Response
	cseq    int
}

type notify struct{ callID, state, body string }

func newSIPPeer(t *testing.T) *sipPeer {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	p := &sipPeer{t: t, pc: pc, notify: make(chan notify, 256), answers: make(chan *sip.Response, 16)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			if res, ok := msg.(*sip.Response); ok {
				p.answers <- res
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
			pc.WriteTo([]byte(b.String()), from)
			p.notify <- notify{req.CallID().Value(), req.GetHeader("Subscription-State").Value(), string(req.Body())}
		}
	}()
	return p
}

// request sends a request to the server at addr and waits for its final
// answer.
func (p *sipPeer) request(addr, method, uri, callID, toTag, headers, body string) *sip.Response {
	p.t.Helper()
	p.cseq++
	to, _ := net.ResolveUDPAddr("udp", addr)
	msg := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%d\r\nMax-Forwards: 70\r\n"+
		"From: <sip:romeo@example.com>;tag=r1\r\nTo: <%s>%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:romeo@%s>\r\n%s"+
		"Content-Length: %d\r\n\r\n%s", method, uri, p.pc.LocalAddr(), time.Now().UnixNano(), uri, toTag, callID, p.cseq, method,
		p.pc.LocalAddr(), headers, len(body), body)
	p.pc.WriteTo([]byte(msg), to)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case res := <-p.answers:
			if res.CallID().Value() == callID && res.StatusCode >= 200 {
				return res
			}
		case <-timeout:
			p.t.Fatalf("%s %s: no answer", method, uri)
		}
	}
}

// subscribe watches uri's presence in the dialog callID and returns the
// To tag the server chose.
func (p *sipPeer) subscribe(addr, uri, callID, toTag, expires string) string {
	p.t.Helper()
	res := p.request(addr, "SUBSCRIBE", uri, callID, toTag, "Event: presence\r\nExpires: "+expires+"\r\n", "")
	if res.StatusCode != 200 {
		p.t.Fatalf("SUBSCRIBE %s: %d", uri, res.StatusCode)
	}
	tag, _ := res.To().Params.Get("tag")
	return ";tag=" + tag
}

// publish publishes pidf for uri, replacing the publication etag if not
// empty, and returns its SIP-ETag.
func (p *sipPeer) publish(addr, uri, etag, pidf string) string {
	p.t.Helper()
	h := "Event: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\n"
	if etag != "" {
		h += "SIP-If-Match: " + etag + "\r\n"
	}
	res := p.request(addr, "PUBLISH", uri, fmt.Sprintf("pub-%d", time.Now().UnixNano()), "", h, pidf)
	if res.StatusCode != 200 {
		p.t.Fatalf("PUBLISH %s: %d %s", uri, res.StatusCode, res.Reason)
	}
	return res.GetHeader("SIP-ETag").Value()
}

// await returns the next NOTIFY of the dialog whose body has every want
// and no not.
func (p *sipPeer) await(step, callID string, want, not []string) notify {
	p.t.Helper()
	timeout := time.After(15 * time.Second)
	var last string
	for {
		select {
		case n := <-p.notify:
			if n.callID != callID {
				continue
			}
			last = n.body
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(n.body, w)
			}
			for _, w := range not {
				ok = ok && !strings.Contains(n.body, w)
			}
			if ok {
				return n
			}
		case <-timeout:
			p.t.Fatalf("%s: no matching NOTIFY within 15s; last:\n%s", step, last)
		}
	}
}

// quiet returns the NOTIFYs of the dialog that come within d.
func (p *sipPeer) quiet(callID string, d time.Duration) []notify {
	var got []notify
	timeout := time.After(d)
	for {
		select {
		case n := <-p.notify:
			if n.callID == callID {
				got = append(got, n)
			}
		case <-timeout:
			return got
		}
	}
}

const (
	open   = "<basic>open</basic>"
	closed = "<basic>closed</basic>"
)

func gatewayConfig(p *prosody) Config {
	return Config{Server: p.component, Domain: "sip.localhost", Secret: componentSecret}
}

// The reverse direction: an XMPP user subscribes to alice@sip.localhost and
// sees sip:alice@localhost's composed presence, now and at each change.
func TestSlixmppSeesSIPUser(t *testing.T) {
	p := startProsody(t)
	g := startGateway(t, store.NewMemory(), gatewayConfig(p))
	romeo := xmppUser(t, p, "romeo", "orchard")
	romeo.do("subscribe alice@sip.localhost")
	romeo.await("approval", func(e xev) bool { return e.Ev == "subscribed" && e.From == "alice@sip.localhost" })
	romeo.await("nothing published", func(e xev) bool {
		return e.Ev == "presence" && strings.HasPrefix(e.From, "alice@sip.localhost") && e.Type == "unavailable"
	})
	alice := newSIPPeer(t)
	doc := func(basic, extra string) string {
		return `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"` +
			` xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@localhost"><tuple id="t1"><status><basic>` + basic +
			`</basic></status><contact priority="0.5">sip:alice@192.0.2.1</contact></tuple>` + extra + `</presence>`
	}
	etag := alice.publish(g.addr(), "sip:alice@localhost", "", doc("open", `<dm:person id="p1"><rpid:activities><rpid:busy/></rpid:activities>`+
		`<dm:note xml:lang="en">In a meeting</dm:note></dm:person>`))
	defer func() {
		if t.Failed() {
			t.Log(g.log.String())
		}
	}()
	e := romeo.await("published", func(e xev) bool { return e.Ev == "presence" && e.Type != "unavailable" })
	if e.From != "alice@sip.localhost/sip" || e.Show != "dnd" || e.Status != "In a meeting" || e.Priority != 64 {
		t.Errorf("romeo sees %+v, want alice@sip.localhost/sip dnd \"In a meeting\" priority 64", e)
	}
	alice.publish(g.addr(), "sip:alice@localhost", etag, doc("closed", ""))
	romeo.await("closed", func(e xev) bool { return e.Ev == "presence" && e.Type == "unavailable" })
}

// (e) A SIP watcher of an XMPP user is not sent the same document twice in
// a row: not when the user approves the gateway, not when the connector
// reconnects (the user shows closed while it is away, then open once).
func TestSlixmppNoRepeatedNotify(t *testing.T) {
	p := startProsody(t)
	proxy := newProxy(t, p.component)
	cfg := gatewayConfig(p)
	cfg.Server = proxy.addr
	g := startGateway(t, store.NewMemory(), cfg)
	juliet := xmppUser(t, p, "juliet", "balcony")
	w := newSIPPeer(t)
	w.subscribe(g.addr(), "sip:juliet@localhost", "e-1", "", "600")
	w.await("approved", "e-1", []string{open, "juliet@localhost/balcony"}, nil)
	juliet.await("asked once", func(e xev) bool { return e.Ev == "subscribe" })
	got := w.quiet("e-1", 2*time.Second)
	proxy.cut()
	w.await("unreachable", "e-1", []string{closed, "XMPP server unreachable"}, []string{open})
	w.await("reconnected", "e-1", []string{open, "juliet@localhost/balcony"}, nil)
	got = append(got, w.quiet("e-1", 2*time.Second)...)
	if len(got) > 0 {
		t.Errorf("%d NOTIFYs repeated what the watcher had; first:\n%s", len(got), got[0].body)
	}
}

// (a) A resource that went offline while presenced was stopped is gone
// after the restart, and the user shows closed once fully offline.
func TestSlixmppRestart(t *testing.T) {
	p := startProsody(t)
	st := store.NewMemory()
	g := startGateway(t, st, gatewayConfig(p))
	balcony := xmppUser(t, p, "juliet", "balcony")
	garden := xmppUser(t, p, "juliet", "garden")
	w := newSIPPeer(t)
	w.subscribe(g.addr(), "sip:juliet@localhost", "a-1", "", "600")
	w.await("both", "a-1", []string{"juliet@localhost/balcony", "juliet@localhost/garden"}, nil)
	g.stop()
	garden.quit()
	startGateway(t, st, gatewayConfig(p))
	w.await("garden left while stopped", "a-1", []string{"juliet@localhost/balcony"}, []string{"juliet@localhost/garden"})
	balcony.quit()
	w.await("offline", "a-1", []string{closed}, []string{open})
}

// (b) Started while the XMPP server is unreachable or refuses the
// component, presenced shows watched users closed, not what it saved;
// (d) an unknown component domain is logged as Prosody's host-unknown.
func TestSlixmppUnreachableAtStart(t *testing.T) {
	p := startProsody(t)
	st := store.NewMemory()
	xmppUser(t, p, "juliet", "balcony")
	w := newSIPPeer(t)
	for i, c := range []struct {
		name string
		bad  func(*Config)
		log  string
	}{
		{"wrong secret", func(c *Config) { c.Secret = "wrong" }, "not-authorized"},
		{"unknown domain", func(c *Config) { c.Domain = "nowhere.localhost" }, "host-unknown"},
		{"unreachable", func(c *Config) { c.Server = fmt.Sprintf("127.0.0.1:%d", freePort(t)) }, "connection refused"},
	} {
		g := startGateway(t, st, gatewayConfig(p))
		if i == 0 {
			w.subscribe(g.addr(), "sip:juliet@localhost", "b-1", "", "3600")
		}
		w.await(c.name+": open first", "b-1", []string{open}, nil)
		g.stop()
		cfg := gatewayConfig(p)
		c.bad(&cfg)
		g = startGateway(t, st, cfg)
		w.await(c.name, "b-1", []string{closed, "XMPP server unreachable"}, []string{open})
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(g.log.String(), c.log) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(g.log.String(), c.log) {
			t.Errorf("%s: log lacks %q:\n%s", c.name, c.log, g.log.String())
		}
		g.stop()
	}
}

// (c) The last SIP watcher leaving keeps the gateway's subscription: the
// next watcher sees the XMPP user without the user approving again.
func TestSlixmppNoReapproval(t *testing.T) {
	p := startProsody(t)
	g := startGateway(t, store.NewMemory(), gatewayConfig(p))
	juliet := xmppUser(t, p, "juliet", "balcony")
	w := newSIPPeer(t)
	tag := w.subscribe(g.addr(), "sip:juliet@localhost", "c-1", "", "600")
	w.await("first watcher", "c-1", []string{open}, nil)
	w.subscribe(g.addr(), "sip:juliet@localhost", "c-1", tag, "0")
	time.Sleep(time.Second)
	w.subscribe(g.addr(), "sip:juliet@localhost", "c-2", "", "600")
	w.await("second watcher", "c-2", []string{open, "juliet@localhost/balcony"}, nil)
	time.Sleep(time.Second)
	var asked, cancelled int
	for _, e := range juliet.events() {
		switch e.Ev {
		case "subscribe":
			asked++
		case "unsubscribe":
			cancelled++
		}
	}
	if asked != 1 || cancelled != 0 {
		t.Errorf("juliet was asked %d times and the gateway unsubscribed %d times; want 1 and 0: %+v", asked, cancelled, juliet.events())
	}
}

// proxy forwards TCP to a server and can cut its connections: the XMPP
// server going away and coming back.
type proxy struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
