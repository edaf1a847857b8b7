package server

import (
	"strings"
	"testing"
)

func TestBusyResponse(t *testing.T) {
	req := func(lines ...string) []byte {
		return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
	}
	base := []string{"SUBSCRIBE sip:a@example.com SIP/2.0", "Via: SIP/2.0/UDP h1;branch=z9hG4bK1",
		"v: SIP/2.0/UDP h2;branch=z9hG4bK2", "f: <sip:b@example.com>;tag=x", "To: <sip:a@example.com>;TAG=y",
		"Call-ID: c1", "CSeq: 3 SUBSCRIBE", "Event: presence", "Content-Length: 0"}
	method, res := busyResponse(req(base...), "presenced", "t0", "server busy")
	want := "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP h2;branch=z9hG4bK2\r\n" +
		"f: <sip:b@example.com>;tag=x\r\nTo: <sip:a@example.com>;TAG=y\r\nCall-ID: c1\r\nCSeq: 3 SUBSCRIBE\r\n" +
		"Retry-After: 1\r\nWarning: 399 presenced \"server busy\"\r\nContent-Length: 0\r\n\r\n"
	if method != "SUBSCRIBE" || string(res) != want {
		t.Fatalf("got %q %q", method, res)
	}
	noTag := append([]string{}, base...)
	noTag[4] = "t: <sip:a@example.com>"
	if _, res := busyResponse(req(noTag...), "presenced", "t0", "server busy"); !strings.Contains(string(res), "\r\nt: <sip:a@example.com>;tag=t0\r\n") {
		t.Errorf("no To tag added: %q", res)
	}
	for name, lines := range map[string][]string{
		"response": {"SIP/2.0 200 OK", "Via: SIP/2.0/UDP h1;branch=z9hG4bK1", "From: <sip:b@example.com>;tag=x", "To: <sip:a@example.com>", "Call-ID: c1", "CSeq: 3 SUBSCRIBE"},
		"ACK":      append([]string{"ACK sip:a@example.com SIP/2.0"}, base[1:]...),
		"no CSeq":  append(append([]string{}, base[:6]...), base[7:]...),
		"two From": append(append([]string{}, base...), "From: <sip:c@example.com>;tag=z"),
		"folded":   append(append([]string{}, base...), " continued"),
	} {
		if _, res := busyResponse(req(lines...), "presenced", "t0", "server busy"); res != nil {
			t.Errorf("%s: answered %q", name, res)
		}
	}
	if _, res := busyResponse([]byte("SUBSCRIBE sip:a@example.com SIP/2.0\r\nVia: x"), "presenced", "t0", "server busy"); res != nil {
		t.Errorf("truncated: answered %q", res)
	}
}
