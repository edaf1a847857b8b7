package xmpp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/logtest"
)

// prosody is a Prosody server the test runs, with the component
// sip.localhost and the users juliet and romeo on localhost.
type prosody struct {
	c2s, component string
	dir            string
}

const componentSecret = "s3cret-for-tests"

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// missing skips the test for want of a tool, or fails it in CI (CI set),
// where .ci/run installs every tool a test needs: there a skip would hide a
// test that never ran.
func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: CI must install it (.ci/run)", what)
	}
	t.Skip(what + ": skipping the test against a real XMPP server")
}

// startProsody runs Prosody, whose absence skips the test (fails it in CI).
func startProsody(t *testing.T) *prosody {
	t.Helper()
	bin, err := exec.LookPath("prosody")
	if err != nil {
		missing(t, "prosody is not installed (apt-get install prosody)")
	}
	ctl, err := exec.LookPath("prosodyctl")
	if err != nil {
		missing(t, "prosodyctl is not installed (apt-get install prosody)")
	}
	dir := t.TempDir()
	p := &prosody{dir: dir}
	c2s, s2s, comp := freePort(t), freePort(t), freePort(t)
	p.c2s, p.component = fmt.Sprintf("127.0.0.1:%d", c2s), fmt.Sprintf("127.0.0.1:%d", comp)
	cfg := fmt.Sprintf(`-- written by presenced's internal/xmpp test
run_as_root = true
daemonize = false
pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { { levels = { min = "info" }, to = "file", filename = %[4]q } }
modules_enabled = { "roster", "saslauth", "disco", "ping" }
modules_disabled = { "s2s", "offline" }
c2s_ports = { %[5]d }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { %[6]d }
s2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
component_ports = { %[7]d }
component_interfaces = { "127.0.0.1" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
allow_registration = false
VirtualHost "localhost"
Component "sip.localhost"
  component_secret = %[8]q
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), filepath.Join(dir, "certs"),
		filepath.Join(dir, "prosody.log"), c2s, s2s, comp, componentSecret)
	if u := os.Getenv("USER"); os.Geteuid() == 0 || u == "" {
		cfg = `prosody_user = "root"` + "\n" + cfg
	}
	file := filepath.Join(dir, "prosody.cfg.lua")
	for _, d := range []string{"data", "certs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"juliet", "romeo"} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := exec.CommandContext(ctx, ctl, "--config", file, "register", u, "localhost", "pw").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("prosodyctl register %s: %v\n%s", u, err, out)
		}
	}
	cmd := exec.Command(bin, "--config", file, "-F")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "prosody.log"))
			t.Logf("prosody output:\n%s\nprosody.log:\n%s", out.String(), log)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range []string{p.c2s, p.component} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("prosody exited: %s", out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("prosody does not listen on %s: %v", a, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p
}

// client is a minimal XMPP client (RFC 6120/6121): SASL PLAIN on a
// plaintext loopback stream, resource binding, presence. It approves every
// subscription request and reports the stanzas it receives.
type client struct {
	t    *testing.T
	conn net.Conn
	dec  *xml.Decoder
	wmu  sync.Mutex
	in   chan stanza
}

func (c *client) write(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Errorf("client write: %v", err)
	}
}

// next returns the next top-level element of the stream, skipping stream
// headers.
func (c *client) next() (xml.StartElement, error) {
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if s, ok := tok.(xml.StartElement); ok && s.Name.Local != "stream" {
			return s, nil
		}
	}
}

func (c *client) expect(local string) {
	c.t.Helper()
	s, err := c.next()
	if err != nil {
		c.t.Fatalf("client: waiting for <%s>: %v", local, err)
	}
	var raw struct {
		Inner string `xml:",innerxml"`
	}
	if err := c.dec.DecodeElement(&raw, &s); err != nil {
		c.t.Fatal(err)
	}
	if s.Name.Local != local {
		c.t.Fatalf("client: got <%s>%s, want <%s>", s.Name.Local, raw.Inner, local)
	}
}

func login(t *testing.T, addr, user, resource string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn, dec: xml.NewDecoder(conn), in: make(chan stanza, 64)}
	header := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`
	c.write(header)
	c.expect("features")
	c.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` +
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00pw")) + `</auth>`)
	c.expect("success")
	c.write(header)
	c.expect("features")
	c.write(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	c.expect("iq")
	conn.SetDeadline(time.Time{})
	go func() {
		for {
			s, err := c.next()
			if err != nil {
				close(c.in)
				return
			}
			var st stanza
			if err := c.dec.DecodeElement(&st, &s); err != nil {
				close(c.in)
				return
			}
			if st.XMLName.Local == "presence" && st.Type == "subscribe" {
				c.write(fmt.Sprintf(`<presence to='%s' type='subscribed'/>`, esc(st.From)))
			}
			c.in <- st
		}
	}()
	return c
}

// TestProsody runs the connector against a real Prosody, with juliet's
// presence reduced by the real pa module into what a SIP watcher of
// sip:juliet@localhost gets.
func TestProsody(t *testing.T) {
	p := startProsody(t)
	m := extensiontest.Load(t, "github.com/presenced/presenced/extensions/pa", nil)

	var logBuf logtest.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	docs := make(chan string, 32)
	var state []byte
	comp, err := New(Config{Server: p.component, Domain: "sip.localhost", Secret: componentSecret,
		Domains: map[string]string{"localhost": "localhost"}, MinBackoff: 100 * time.Millisecond, Logger: logger},
		testHost{presence: func(uri string, x abi.XMPPPresence) {
			if uri != "sip:juliet@localhost" {
				t.Errorf("presence for %s", uri)
				return
			}
			res, err := m.Handle(context.Background(), &abi.Request{Op: abi.OpXMPP, Event: "presence", Resource: uri,
				State: state, XMPP: &x, Watchers: []abi.Watcher{{ID: "w1", URI: "sip:romeo@example.com", Status: abi.StatusActive}}})
			if err != nil || res.Code != 0 {
				t.Errorf("pa refused %+v: %v %+v", x, err, res)
				return
			}
			if res.StateChanged {
				state = res.State
			}
			if len(res.Notifications) == 1 { // none for a reset
				docs <- string(res.Notifications[0].Body)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	juliet := login(t, p.c2s, "juliet", "balcony")
	// Requesting the roster makes the resource interested (RFC 6121
	// §2.1.6): the server delivers subscription requests only to those.
	juliet.write(`<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq><presence/>`)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { comp.Run(ctx); close(done) }()
	comp.Watch("sip:juliet@localhost")

	expect := func(step string, want, not []string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		var last string
		for {
			select {
			case d := <-docs:
				last = d
				ok := true
				for _, w := range want {
					ok = ok && strings.Contains(d, w)
				}
				for _, n := range not {
					ok = ok && !strings.Contains(d, n)
				}
				if ok {
					t.Logf("%s:\n%s", step, d)
					return
				}
			case <-timeout:
				t.Fatalf("%s: no matching PIDF within 10s; last:\n%s\nlog:\n%s", step, last, logBuf.String())
			}
		}
	}
	expect("available", []string{"<basic>open</basic>", "xmpp:juliet@localhost/balcony"}, []string{"rpid:away", "<basic>closed</basic>"})
	juliet.write(`<presence><show>away</show><status xml:lang='en'>On the balcony</status><priority>5</priority></presence>`)
	expect("away", []string{"<basic>open</basic>", "<rpid:away/>", `<note xml:lang="en">On the balcony</note>`, `priority="0.039"`}, nil)
	juliet.write(`<presence type='unavailable'/>`)
	expect("unavailable", []string{"<basic>closed</basic>"}, []string{"<basic>open</basic>"})

}

// TestProsodyRefused checks a wrong secret is logged as a refused
// handshake and retried.
func TestProsodyRefused(t *testing.T) {
	p := startProsody(t)
	var logBuf logtest.Buffer
	comp, err := New(Config{Server: p.component, Domain: "sip.localhost", Secret: "wrong",
		Domains: map[string]string{"localhost": "localhost"}, MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil))}, testHost{presence: func(string, abi.XMPPPresence) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { comp.Run(ctx); close(done) }()
	for strings.Count(logBuf.String(), "not-authorized") < 2 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if n := strings.Count(logBuf.String(), "handshake refused"); n < 2 {
		t.Fatalf("want two refused handshakes logged, got:\n%s", logBuf.String())
	}
}
