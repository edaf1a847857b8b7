package header

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
)

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{"presence", "Presence;id=42", " dialog ; ID = x ;foo", ";id=1", "", "a b", "pres\x00ence", "conference;id=;id=2", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ev, err := ParseEvent(v)
		if err != nil {
			return
		}
		if !isToken(ev.Package) || ev.Package != strings.ToLower(ev.Package) {
			t.Fatalf("ParseEvent(%q).Package = %q: not a lower-case token", v, ev.Package)
		}
		again, err := ParseEvent(ev.String())
		if err != nil || again.Package != ev.Package {
			t.Fatalf("ParseEvent(%q) = %+v, but its String %q parses to %+v, %v", v, ev, ev.String(), again, err)
		}
	})
}

func FuzzParseExpires(f *testing.F) {
	for _, s := range []string{"0", "3600", " 60 ", "", "-1", "1e3", "99999999999999999999999", "4294967296", "０"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := ParseExpires(v)
		if err != nil {
			return
		}
		if n < 0 || n > MaxExpires {
			t.Fatalf("ParseExpires(%q) = %d, outside [0, MaxExpires]", v, n)
		}
	})
}

// FuzzRequest runs header values through the parser the server uses
// (Parsers) and every helper that reads a parsed request.
func FuzzRequest(f *testing.F) {
	f.Add("application/pidf+xml, application/xpidf+xml;q=0.5", "3600", "presence;id=1", "text/plain")
	f.Add(",,, ;", "", "", "")
	f.Add("a/b", "  0", "o", ";x")
	parser := sip.NewParser(sip.WithHeadersParsers(Parsers()))
	f.Fuzz(func(t *testing.T, accept, expires, event, ctype string) {
		var b strings.Builder
		b.WriteString("SUBSCRIBE sip:alice@example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
			"From: <sip:bob@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n" +
			"Call-ID: c1\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\n")
		for _, h := range [][2]string{{"Accept", accept}, {"Expires", expires}, {"o", event}, {"c", ctype}} {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		msg, err := parser.ParseSIP([]byte(b.String()))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		for _, m := range Accept(req) {
			if m == "" || m != abi.MediaType(m) {
				t.Fatalf("Accept gave %q", m)
			}
		}
		ContentType(req)
		if secs, given, err := Expires(req); err == nil && given && (secs < 0 || secs > MaxExpires) {
			t.Fatalf("Expires = %d", secs)
		}
		if h := req.GetHeader("Event"); h != nil {
			ParseEvent(h.Value())
		}
		Warning("presenced", accept+expires+event+ctype)
	})
}
