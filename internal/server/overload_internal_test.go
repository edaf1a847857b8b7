package server

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/header"
)

// The one builder of the read filter's answers, 503 when busy and 400 or 513
// for what sipgo would drop.
func TestBusyAndMalformedResponses(t *testing.T) {
	req := func(lines ...string) []byte {
		return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
	}
	base := []string{"SUBSCRIBE sip:a@example.com SIP/2.0", "Via: SIP/2.0/UDP h1;branch=z9hG4bK1",
		"v: SIP/2.0/UDP h2;branch=z9hG4bK2", "f: <sip:b@example.com>;tag=x", "To: <sip:a@example.com>;TAG=y",
		"Call-ID: c1", "CSeq: 3 SUBSCRIBE", "Event: presence", "Content-Length: 0"}
	method, res := statelessResponse(req(base...), "503 Service Unavailable", "presenced", "t0", "server busy", "Retry-After: 1")
	want := "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP h2;branch=z9hG4bK2\r\n" +
		"f: <sip:b@example.com>;tag=x\r\nTo: <sip:a@example.com>;TAG=y\r\nCall-ID: c1\r\nCSeq: 3 SUBSCRIBE\r\n" +
		"Retry-After: 1\r\nWarning: 399 presenced \"server busy\"\r\nContent-Length: 0\r\n\r\n"
	if method != "SUBSCRIBE" || string(res) != want {
		t.Fatalf("got %q %q", method, res)
	}
	noTag := append([]string{}, base...)
	noTag[4] = "t: <sip:a@example.com>"
	if _, res := statelessResponse(req(noTag...), "503 Service Unavailable", "presenced", "t0", "server busy"); !strings.Contains(string(res), "\r\nt: <sip:a@example.com>;tag=t0\r\n") {
		t.Errorf("no To tag added: %q", res)
	}
	for name, lines := range map[string][]string{
		"response": {"SIP/2.0 200 OK", "Via: SIP/2.0/UDP h1;branch=z9hG4bK1", "From: <sip:b@example.com>;tag=x", "To: <sip:a@example.com>", "Call-ID: c1", "CSeq: 3 SUBSCRIBE"},
		"ACK":      append([]string{"ACK sip:a@example.com SIP/2.0"}, base[1:]...),
		"no CSeq":  append(append([]string{}, base[:6]...), base[7:]...),
		"two From": append(append([]string{}, base...), "From: <sip:c@example.com>;tag=z"),
	} {
		if _, res := statelessResponse(req(lines...), "503 Service Unavailable", "presenced", "t0", "server busy"); res != nil {
			t.Errorf("%s: answered %q", name, res)
		}
	}
	if _, res := statelessResponse([]byte("SUBSCRIBE sip:a@example.com SIP/2.0\r\nVia: x"), "503 Service Unavailable", "presenced", "t0", "server busy"); res != nil {
		t.Errorf("truncated: answered %q", res)
	}

	// A folded From is copied joined, as sipgo joins it; a line that is no
	// header is skipped; a datagram cut before the empty line is answered
	// from the headers before the cut, the line the cut left out.
	odd := append([]string{}, base[:3]...)
	odd = append(odd, "f: <sip:b@example.com>", "\t;tag=x", "no colon here")
	odd = append(odd, base[4:]...)
	data := req(odd...)
	data = append(data[:len(data)-4], "\r\nX-Cut: abc"...)
	_, res = statelessResponse(data, "400 Bad Request", "presenced", "t0", "malformed X header")
	want = "SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP h2;branch=z9hG4bK2\r\n" +
		"f: <sip:b@example.com> ;tag=x\r\nTo: <sip:a@example.com>;TAG=y\r\nCall-ID: c1\r\nCSeq: 3 SUBSCRIBE\r\n" +
		"Warning: 399 presenced \"malformed X header\"\r\nContent-Length: 0\r\n\r\n"
	if string(res) != want {
		t.Errorf("got %q\nwant %q", res, want)
	}
	if !strings.Contains(string(data), "\r\n\t;tag=x\r\n") {
		t.Errorf("joining a folded line wrote into the datagram: %q", data)
	}
}

// publishDatagram is a 400-byte PUBLISH datagram, as a phone sends one.
var publishDatagram = "PUBLISH sip:alice@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK.Zb1nTm0GdT7Yh3pQ\r\n" +
	"From: <sip:alice@example.com>;tag=3c950764\r\nTo: <sip:alice@example.com>\r\n" +
	"Call-ID: 1-14745@192.0.2.1\r\nCSeq: 1 PUBLISH\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\n" +
	"Content-Type: application/pidf+xml\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100)

// BenchmarkReadFilter is what parsing costs a sound request datagram (a
// 400-byte PUBLISH) in refuseEarly, the only parse it gets.
func BenchmarkReadFilter(b *testing.B) {
	s := &Server{parser: sip.NewParser(sip.WithHeadersParsers(header.Parsers()))}
	data := []byte(publishDatagram)
	b.ReportAllocs()
	for b.Loop() {
		if _, code, reason := s.parse(data); code != 0 {
			b.Fatal(code, reason)
		}
	}
}

// TestRequestMethodAllocs holds requestMethod to no allocation for a
// method the server serves.
func TestRequestMethodAllocs(t *testing.T) {
	data := []byte("PUBLISH sip:a@example.com SIP/2.0\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() {
		if requestMethod(data) != "PUBLISH" {
			t.Fatal("not PUBLISH")
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
	if m := requestMethod([]byte("FOO sip:a@example.com SIP/2.0\r\n\r\n")); m != "FOO" {
		t.Errorf("method %q, want FOO", m)
	}
}

// BenchmarkStatelessResponse is the 503 the read filter answers a
// PUBLISH with while the server is over its limits: under overload, one
// for most datagrams.
func BenchmarkStatelessResponse(b *testing.B) {
	data := []byte(publishDatagram)
	b.ReportAllocs()
	for b.Loop() {
		if _, res := statelessResponse(data, "503 Service Unavailable", "presenced", "t0", "server busy", "Retry-After: 1"); res == nil {
			b.Fatal("no answer")
		}
	}
}
