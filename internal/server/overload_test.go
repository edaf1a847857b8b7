package server_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// rawPublish is a PUBLISH of body from the socket c, built by hand so the
// test controls every header the refusal must copy.
func rawPublish(c net.Conn, branch, callID, body string) error {
	local := c.LocalAddr().String()
	m := "PUBLISH sip:alice@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.com>;tag=raw1\r\n" +
		"t: <sip:alice@example.com>\r\n" + // compact To, no tag
		"i: " + callID + "\r\n" +
		"CSeq: 7 PUBLISH\r\n" +
		"Event: echo\r\nExpires: 60\r\nContent-Type: text/plain\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	_, err := c.Write([]byte(m))
	return err
}

// Past max_in_flight, a UDP request is answered 503 in the socket's read
// loop, before sipgo parses it, with what RFC 3261 §8.2.6 asks of a
// response: the request's Vias, From, Call-ID and CSeq, a To tag; and
// Retry-After with a Warning. Once the slot is free, requests are served.
func TestOverloadRefusedOnRead(t *testing.T) {
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Limits:  server.Limits{MaxInFlight: 1},
	})
	addr := addrOf(srv, "udp")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The one slot is held by a call the echo module spins in until its
	// deadline (2 s); a probe sent while it is held must be refused by
	// the read filter, whose answer copies the request's compact headers
	// as they came ("i:", where sipgo would write "Call-ID:"). The held
	// request may itself lose the race for the slot to a probe, so it is
	// sent again until one holds.
	parser := sip.NewParser()
	buf := make([]byte, 4096)
	var res *sip.Response
	for attempt := 0; attempt < 10 && res == nil; attempt++ {
		if err := rawPublish(c, fmt.Sprintf("z9hG4bK-hold%d", attempt), fmt.Sprintf("hold%d@test", attempt), "loop"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		branch, callID := fmt.Sprintf("z9hG4bK-busy%d", attempt), fmt.Sprintf("busy%d@test", attempt)
		if err := rawPublish(c, branch, callID, "hello"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no answer to %s: %v", branch, err)
			}
			if !strings.Contains(string(buf[:n]), "busy") {
				continue // a held request's answer
			}
			m, err := parser.ParseSIP(buf[:n])
			if err != nil {
				t.Fatalf("unparsable answer: %v\n%s", err, buf[:n])
			}
			if r, ok := m.(*sip.Response); ok && r.StatusCode == 503 && strings.Contains(string(buf[:n]), "\r\ni: "+callID+"\r\n") {
				res = r
				if v := r.Via(); v == nil || v.Params.GetOr("branch", "") != branch {
					t.Errorf("Via not the request's: %v", r.Via())
				}
			}
			break
		}
	}
	if res == nil {
		t.Fatal("no 503 from the read filter while the only slot was held")
	}
	if h := res.GetHeader("Retry-After"); h == nil || h.Value() != "1" {
		t.Errorf("Retry-After: %v", h)
	}
	if h := res.GetHeader("Warning"); h == nil || !strings.Contains(h.Value(), "server busy") {
		t.Errorf("Warning: %v", h)
	}
	if res.CSeq().SeqNo != 7 || res.CSeq().MethodName != sip.PUBLISH {
		t.Errorf("CSeq: %v", res.CSeq())
	}
	if tag, _ := res.To().Params.Get("tag"); tag == "" {
		t.Errorf("To without a tag: %v", res.To())
	}
	if tag, _ := res.From().Params.Get("tag"); tag != "raw1" {
		t.Errorf("From: %v", res.From())
	}
	// The held call ends (500 at its deadline); then a PUBLISH is served.
	p := siptest.NewPeer(t, "UDP", addr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := p.Publish("echo", "sip:bob@example.com", "text/plain", "hello")
		if r.StatusCode == 200 {
			break
		}
		if r.StatusCode != 503 || time.Now().After(deadline) {
			t.Fatalf("after the held call: %d", r.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
