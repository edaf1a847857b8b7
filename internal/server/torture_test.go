package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/logtest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// tortureCase is one message of RFC 4475 (§3.1.1 valid, §3.1.2 invalid,
// and a few of §3.3), kept byte for byte in testdata/torture, plus a few
// of our own aimed at SUBSCRIBE and PUBLISH.
type tortureCase struct {
	file  string // testdata/torture/<file>.sip
	codes []int  // acceptable final response codes; nil: must be dropped
	warn  string // the answer's Warning must contain it
	tcp   bool   // also sent over TCP (its framing must allow it)
	// Over TCP sipgo's stream parser refuses it and closes the connection
	// unanswered: with no message boundary left there is nothing to answer
	// on (RATIONALE.md "Hostile messages"). Over UDP the read filter
	// answers it.
	tcpDrop bool
	state   bool   // may change state (a valid REGISTER)
	bug     string // a known bug: a code outside codes skips the case with it
	note    string // why these codes
}

var tortureCases = []tortureCase{
	// §3.1.1 valid messages: processed as any other.
	{file: "valid/wsinv", codes: []int{405}, tcp: true, note: "INVITE is not served: 405",
		bug: "sipgo does not parse LWS around = in parameters (From: ...;tag = 98asjd8): its transaction layer answers 400 'tag param not found'"},
	{file: "valid/intmeth", codes: []int{405}, tcp: true, note: "unknown Method: 405 (or 501)"},
	{file: "valid/esc01", codes: []int{405}, tcp: true},
	{file: "valid/escnull", codes: []int{200}, tcp: true, state: true, note: "REGISTER with %00 in the AOR and contacts"},
	{file: "valid/esc02", codes: []int{405}, tcp: true, note: "RE%47IST%45R is not REGISTER"},
	{file: "valid/lwsdisp", codes: []int{200}, tcp: true},
	{file: "valid/longreq", codes: []int{405}, tcp: true,
		bug: "sipgo will not send a UDP response over 1300 bytes (ErrUDPMTUCongestion): the 405 echoing the long headers is lost"},
	{file: "valid/dblreq", codes: []int{200}, state: true, note: "UDP: the INVITE after the body is noise"},
	{file: "valid/semiuri", codes: []int{200}, tcp: true},
	{file: "valid/transports", codes: []int{200}, tcp: true},
	{file: "valid/mpart01", codes: []int{405}, tcp: true, note: "MESSAGE with a binary multipart body"},
	{file: "valid/unreason", tcp: true, note: "a stray response: never answered"},
	{file: "valid/noreason", tcp: true, note: "a stray response: never answered"},

	// §3.1.2 invalid messages: 400, or dropped where nothing can be answered.
	{file: "invalid/badinv01", codes: []int{400}, warn: "malformed Via header", tcp: true, tcpDrop: true},
	{file: "invalid/clerr", codes: []int{400}, warn: "Content-Length 9999 is larger than the 150 bytes", note: "UDP only: Content-Length beyond the datagram"},
	{file: "invalid/scalar02", codes: []int{400}, warn: "malformed Content-Length header", note: "UDP only: negative Content-Length"},
	{file: "invalid/scalarlg", codes: []int{400}, warn: "malformed CSeq header", tcp: true, tcpDrop: true, note: "CSeq above 2**32; a folded Contact"},
	{file: "invalid/scalarlgrsp", tcp: true, note: "a response: dropped"},
	{file: "invalid/quotbal", codes: []int{400}, warn: "malformed To header", tcp: true, tcpDrop: true},
	{file: "invalid/ltgtruri", codes: []int{400}, warn: "malformed request-URI <sip:user@example.com>", tcp: true, tcpDrop: true},
	{file: "invalid/lwsruri", codes: []int{400}, warn: "malformed request line", tcp: true, tcpDrop: true},
	{file: "invalid/lwsstart", codes: []int{400}, warn: "malformed request line", tcp: true, tcpDrop: true},
	{file: "invalid/trws", codes: []int{400}, warn: "malformed request line", tcp: true, tcpDrop: true, note: "400 (RFC 4475 allows 200, ignoring the trailing SP)"},
	{file: "invalid/escruri", codes: []int{400, 405}, tcp: true, note: "400, or the INVITE's 405 when the headers are ignored"},
	{file: "invalid/baddate", codes: []int{400, 405}, tcp: true, note: "400, or 405 as the Date is unimportant"},
	{file: "invalid/regbadct", codes: []int{400, 200}, tcp: true, state: true, note: "400, or 200 inferring the <> (the binding is then legitimate)"},
	{file: "invalid/badaspec", codes: []int{400}, warn: "malformed To header", tcp: true, tcpDrop: true, note: "400 (RFC 4475 allows 200, ignoring the spaces)"},
	{file: "invalid/baddn", codes: []int{400, 200}, tcp: true, note: "400, or 200 inferring the quotes"},
	{file: "invalid/badvers", codes: []int{505}, tcp: true},
	{file: "invalid/mismatch01", codes: []int{400}, tcp: true},
	{file: "invalid/mismatch02", codes: []int{400}, tcp: true},
	{file: "invalid/bigcode", tcp: true, note: "a response: dropped"},
	{file: "invalid/badbranch", codes: []int{400, 200}, tcp: true, note: "400, or 200 with the RFC 2543 transaction key"},
	// §3.3
	{file: "invalid/insuf", codes: []int{400}, tcp: true, note: "no To, From, Call-ID, Max-Forwards"},
	{file: "invalid/mcl01", codes: []int{400}, warn: "more than one Content-Length header", note: "UDP only: two Content-Length values"},
	{file: "invalid/multi01", codes: []int{400}, tcp: true, note: "two CSeq, Call-ID, From, To"},
	{file: "invalid/unkscm", codes: []int{416}, tcp: true, note: "unknown request-URI scheme"},
	// ours: the methods we serve
	{file: "invalid/sub-mismatch", codes: []int{400}, tcp: true},
	{file: "invalid/pub-badevent", codes: []int{400}, tcp: true},
	{file: "invalid/sub-bigexpires", codes: []int{400}, tcp: true},
	{file: "invalid/sub-dupexpires", codes: []int{400}, warn: "more than one Expires header", tcp: true, note: "Expires 60 and 3600"},
	{file: "invalid/sub-dupevent", codes: []int{400}, warn: "more than one Event header", tcp: true, note: "Event: echo and o: presence"},
	{file: "invalid/pub-dupctype", codes: []int{400}, warn: "more than one Content-Type header", tcp: true, note: "Content-Type: text/plain and c: application/pidf+xml"},
	{file: "invalid/sub-manyheaders", codes: []int{513}, warn: "message larger than 32767 bytes",
		note: "UDP only: 3,000 headers, 36 KB, more than sipgo reads of a datagram (over TCP it is under max_message_bytes and served)"},
	{file: "invalid/pub-dupclen", codes: []int{400}, warn: "more than one Content-Length header", tcp: true,
		note: "Content-Length: 5 and l: 3; sipgo frames by the last, so over TCP the 2 bytes left over start the next message"},
}

// TestTorture sends each message to a fresh server over UDP (and TCP) and
// checks the answer, that the server goes on answering, and that an
// invalid message left no state behind.
func TestTorture(t *testing.T) {
	mod := echo(t)
	seen := map[string]bool{}
	for _, c := range tortureCases {
		seen[c.file] = true
	}
	files, _ := filepath.Glob("testdata/torture/*/*.sip")
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.ToSlash(f), "testdata/torture/"), ".sip")
		if !seen[name] {
			t.Errorf("%s has no case in the table", f)
		}
	}
	for _, c := range tortureCases {
		data, err := os.ReadFile("testdata/torture/" + c.file + ".sip")
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range []string{"UDP", "TCP"} {
			if tr == "TCP" && !c.tcp {
				continue
			}
			t.Run(c.file+"/"+tr, func(t *testing.T) {
				t.Parallel()
				f := start(t, nil, mod)
				code, raw := sendRaw(t, tr, f.addr[tr], data)
				// the server still answers
				p := f.peer(t, "UDP")
				siptest.WantCode(t, p.Send(siptest.Request{Method: "OPTIONS", URI: "sip:presenced@" + f.addr["UDP"], Headers: []string{
					"From: <sip:probe@example.com>;tag=probe", "To: <sip:presenced@example.com>",
					"Call-ID: " + siptest.NewCallID(), "CSeq: 1 OPTIONS"}}), 200)
				if !c.state {
					noState(t, f)
				}
				codes := c.codes
				if tr == "TCP" && c.tcpDrop {
					codes = nil
				}
				var bad string
				switch {
				case codes == nil && code != 0:
					bad = fmt.Sprintf("got %d, want no response:\n%s", code, raw)
				case codes != nil && code == 0:
					bad = fmt.Sprintf("no response, want %v", codes)
				case codes != nil && !slices.Contains(codes, code):
					bad = fmt.Sprintf("got %d, want %v:\n%s", code, codes, raw)
				}
				if bad == "" && codes != nil && c.warn != "" && !strings.Contains(warning(raw), c.warn) {
					bad = fmt.Sprintf("Warning %q does not say %q", warning(raw), c.warn)
				}
				if bad != "" && c.bug != "" {
					t.Skipf("bug: %s (got %d)", c.bug, code)
				}
				if bad != "" {
					t.Error(bad)
				}
			})
		}
	}
}

// noState checks that the server holds no subscription, publication or
// binding.
func noState(t *testing.T, f *fixture) {
	t.Helper()
	if s := f.srv.Subscriptions(server.Filter{}); len(s) != 0 {
		t.Errorf("subscriptions left: %+v", s)
	}
	if s := f.srv.Publications(server.Filter{}); len(s) != 0 {
		t.Errorf("publications left: %+v", s)
	}
	if s := f.srv.Bindings(""); len(s) != 0 {
		t.Errorf("bindings left: %+v", s)
	}
}

// tortureWait is how long a dropped message must stay unanswered.
const tortureWait = 500 * time.Millisecond

// sendRaw writes data to addr from a new socket and returns the code of
// the first final response and its text, or 0 when none came within
// tortureWait. Responses are read as bytes: they may echo what no parser
// would take.
func sendRaw(t *testing.T, transport, addr string, data []byte) (int, string) {
	t.Helper()
	conn, err := net.Dial(strings.ToLower(transport), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(tortureWait))
	next := udpMessages(conn)
	if transport == "TCP" {
		next = tcpMessages(conn)
	}
	for {
		m, err := next()
		if err != nil {
			return 0, ""
		}
		code := statusCode(m)
		if code >= 200 {
			return code, string(m)
		}
		if code == 0 {
			t.Errorf("server sent a non-response:\n%q", m)
		}
	}
}

func udpMessages(c net.Conn) func() ([]byte, error) {
	buf := make([]byte, 65535)
	return func() ([]byte, error) {
		n, err := c.Read(buf)
		return append([]byte(nil), buf[:n]...), err
	}
}

func tcpMessages(c net.Conn) func() ([]byte, error) {
	r := bufio.NewReader(c)
	return func() ([]byte, error) {
		var head bytes.Buffer
		length := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			if line == "\r\n" && head.Len() == 0 {
				continue
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
		_, err := io.ReadFull(r, body)
		return append(head.Bytes(), body...), err
	}
}

// warning is the value of the first Warning header of the response raw.
func warning(raw string) string {
	for _, line := range strings.Split(raw, "\r\n") {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Warning") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// statusCode is the code of a response's status line, 0 for anything else.
func statusCode(m []byte) int {
	line, _, _ := bytes.Cut(m, []byte("\r\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// What the torture table cannot show, with a small max_message_bytes and
// tcp_idle_timeout: an 18 KB request of 3,000 headers over the limit is
// answered 513 over UDP and closes its TCP connection at once; a
// Content-Length beyond what arrives over TCP holds the connection until
// the idle timeout closes it, unanswered; and a malformed datagram with
// nothing to address an answer with is dropped with a log line naming its
// source.
func TestMalformedBounds(t *testing.T) {
	var log logtest.Buffer
	srv := startWith(t, server.Options{
		Listen: []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"},
			{Transport: "tcp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Limits:  server.Limits{MaxMessageBytes: 16384, TCPIdleTimeout: time.Second},
		Logger:  slog.New(slog.NewTextHandler(&log, nil)),
	})
	head := "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP host9.example.com;rport;branch=z9hG4bKbig1\r\n" +
		"To: <sip:alice@example.com>\r\nFrom: <sip:bob@example.com>;tag=b1\r\nCall-ID: big.1@example.com\r\nCSeq: 1 SUBSCRIBE\r\n" +
		"Max-Forwards: 70\r\nContact: <sip:bob@host9.example.com>\r\nEvent: echo\r\n"
	big := []byte(head + strings.Repeat("A: b\r\n", 3000) + "Content-Length: 0\r\n\r\n")

	code, raw := sendRaw(t, "UDP", addrOf(srv, "udp"), big)
	if code != 513 || !strings.Contains(warning(raw), "message larger than 16384 bytes") {
		t.Errorf("%d-byte request over UDP: got %d %q, want 513 naming the limit", len(big), code, warning(raw))
	}

	// closed returns how long the server took to close conn, having
	// answered nothing, or fails after within.
	closed := func(conn net.Conn, within time.Duration) time.Duration {
		t.Helper()
		began := time.Now()
		conn.SetReadDeadline(began.Add(within))
		b := make([]byte, 512)
		n, err := conn.Read(b)
		if n > 0 {
			t.Fatalf("answered %q", b[:n])
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open after %v", within)
		}
		return time.Since(began)
	}
	tcp := func(data []byte) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", addrOf(srv, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write(data); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	if d := closed(tcp(big), 500*time.Millisecond); d > 500*time.Millisecond {
		t.Errorf("request over max_message_bytes: TCP connection closed after %v", d)
	}
	clerr, err := os.ReadFile("testdata/torture/invalid/clerr.sip")
	if err != nil {
		t.Fatal(err)
	}
	if d := closed(tcp(clerr), 3*time.Second); d < 500*time.Millisecond {
		t.Errorf("Content-Length beyond the data: TCP connection closed after %v, before the idle timeout", d)
	}

	// a CSeq sipgo refuses and no Call-ID: nothing to answer with
	conn, err := net.Dial("udp", addrOf(srv, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP host9.example.com;rport;branch=z9hG4bKx\r\n" +
		"To: <sip:alice@example.com>\r\nFrom: <sip:bob@example.com>;tag=b1\r\nCSeq: one SUBSCRIBE\r\nContent-Length: 0\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(tortureWait))
	if m, err := udpMessages(conn)(); err == nil {
		t.Errorf("a request without Call-ID was answered:\n%s", m)
	}
	dropped := ""
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `msg="request dropped"`) {
			dropped = line
		}
	}
	if !strings.Contains(dropped, "source="+conn.LocalAddr().String()) || !strings.Contains(dropped, "malformed CSeq header") {
		t.Errorf("no 'request dropped' line naming the source and the CSeq: %q", dropped)
	}
}
