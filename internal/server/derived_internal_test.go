package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/header"
)

// derivedSipgo is derived as sipgo writes it: the response
// NewResponseFromRequest makes, with the To tag set, up to its
// Content-Length value.
func derivedSipgo(req *sip.Request, code int, reason, toTag string) []byte {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && toTag != "" {
		to.Params.Add("tag", toTag)
	}
	var buf bytes.Buffer
	res.StringWrite(&buf)
	out, _ := bytes.CutSuffix(buf.Bytes(), []byte("0\r\n\r\n"))
	return out
}

// TestDerivedAsSipgo holds derived's bytes equal to sipgo's for the
// requests of the torture corpus and the server's own kinds (rport, a
// Record-Route, a To tag already there), for final answers of each kind
// and To tags new, equal and different: a retransmission is answered
// with derived's bytes followed by what the first answer had after them.
func TestDerivedAsSipgo(t *testing.T) {
	parser := sip.NewParser(sip.WithHeadersParsers(header.Parsers()))
	msgs := map[string]string{
		"publish rport": "PUBLISH sip:p1@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n" +
			"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-0\r\nMax-Forwards: 70\r\nFrom: <sip:p1@example.com>;tag=f1\r\n" +
			"To: <sip:p1@example.com>\r\nCall-ID: c1@127.0.0.1\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
		"subscribe in dialog": "SUBSCRIBE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-2\r\n" +
			"Record-Route: <sip:proxy.example.com;lr>\r\nRecord-Route: <sip:192.0.2.1;lr>\r\nFrom: \"Bob\" <sip:bob@example.com>;tag=b\r\n" +
			"To: <sip:a@example.com>;tag=local;x=y\r\nCall-ID: c2\r\nCSeq: 7 SUBSCRIBE\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n",
		"register": "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-3;rport\r\n" +
			"Record-Route: <sip:proxy.example.com;lr>\r\nFrom: <sip:bob@example.com>;tag=b\r\nTo: <sip:bob@example.com>\r\n" +
			"Call-ID: c3\r\nCSeq: 2 REGISTER\r\nContact: <sip:bob@192.0.2.9>\r\nContent-Length: 0\r\n\r\n",
	}
	files, _ := filepath.Glob("testdata/torture/valid/*.sip")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs[filepath.Base(f)] = string(data)
	}
	checked := 0
	for name, data := range msgs {
		m, err := parser.ParseSIP([]byte(data))
		if err != nil {
			continue // the torture cases sipgo refuses never reach derived
		}
		req, ok := m.(*sip.Request)
		if !ok {
			continue
		}
		req.SetSource("192.0.2.77:5099")
		existing := ""
		if to := req.To(); to != nil {
			existing, _ = to.Params.Get("tag")
		}
		for _, code := range []int{200, 202, 400, 423, 481, 489, 503} {
			for _, tag := range []string{"", "t0k3n", existing} {
				got, want := derived(req, code, "Reason Phrase", tag), derivedSipgo(req, code, "Reason Phrase", tag)
				if tag == "" && existing == "" {
					// sipgo draws a random tag: only the lines before To
					// can agree.
					cut := func(b []byte) string { i := bytes.Index(b, []byte("\r\nTo:")); return string(b[:max(i, 0)]) }
					if cut(got) != cut(want) || strings.Contains(string(got), "\r\nTo:") != strings.Contains(string(want), "\r\nTo:") {
						t.Errorf("%s %d: derived\n%q\nsipgo\n%q", name, code, got, want)
					}
					continue
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s %d tag %q: derived\n%q\nsipgo\n%q", name, code, tag, got, want)
				}
				checked++
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d comparisons: the corpus did not parse", checked)
	}
}

// BenchmarkDerived is the check each final answer over UDP costs:
// derived as written now, against building it through sipgo.
func BenchmarkDerived(b *testing.B) {
	parser := sip.NewParser(sip.WithHeadersParsers(header.Parsers()))
	m, err := parser.ParseSIP([]byte("PUBLISH sip:p1@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:p1@example.com>;tag=f1\r\nTo: <sip:p1@example.com>\r\nCall-ID: c1@127.0.0.1\r\n" +
		"CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	for name, f := range map[string]func(*sip.Request, int, string, string) []byte{"direct": derived, "sipgo": derivedSipgo} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f(req, 200, "OK", "3b1f0c2e-5d4a-4c1e-9f0a-0d5c6b7a8e9f")
			}
		})
	}
}
