package server_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/logtest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// A flood of garbage and of malformed requests does not flood the log.
func TestMalformedFloodDoesNotFloodTheLog(t *testing.T) {
	var buf logtest.Buffer
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{echo(t)},
		Logger:  slog.New(slog.NewTextHandler(&buf, nil)),
	})
	p := siptest.NewPeer(t, "UDP", addrOf(srv, "udp"))
	garbage := strings.Repeat("\x00garbage\r\n", 50)
	bad := p.Render(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{"From: <sip:x@example.com>", "To: <" + alice + ">",
		"Call-ID: flood", "CSeq: 1 SUBSCRIBE", "Event: echo"}}) // no From tag: 400, logged as refused
	for i := 0; i < 1000; i++ {
		p.SendRaw(garbage)
		if i%4 == 0 {
			p.SendRaw(strings.Replace(bad, "flood", fmt.Sprint("flood", i), 1))
		}
	}
	time.Sleep(500 * time.Millisecond)
	// at most 20 sipgo lines and 50 refusal lines a second, plus the
	// counts of what was held back; the flood took well under 2 s
	if n := strings.Count(buf.String(), "\n"); n > 200 {
		t.Fatalf("%d log lines for 1,250 bad packets", n)
	}
	// and the server still answers
	r := siptest.NewPeer(t, "UDP", addrOf(srv, "udp")).Send(siptest.Request{Method: "OPTIONS", URI: "sip:presenced@example.com", Headers: []string{
		"From: <sip:x@example.com>;tag=1", "To: <sip:presenced@example.com>", "Call-ID: after-flood", "CSeq: 1 OPTIONS"}})
	siptest.WantCode(t, r, 200)
}
