package server

import (
	"bytes"
	"fmt"
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

// answerCorpus is the requests answers are checked against: the torture
// corpus and the server's own kinds (rport, a Record-Route, a To tag
// already there), parsed, their source set.
func answerCorpus(t *testing.T) map[string]*sip.Request {
	parser := sip.NewParser(sip.WithHeadersParsers(header.Parsers()))
	raw := map[string]string{
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
		raw[filepath.Base(f)] = string(data)
	}
	msgs := map[string]*sip.Request{}
	for name, data := range raw {
		m, err := parser.ParseSIP([]byte(data))
		if err != nil {
			continue // the torture cases sipgo refuses are never answered this way
		}
		if req, ok := m.(*sip.Request); ok {
			req.SetSource("192.0.2.77:5099")
			msgs[name] = req
		}
	}
	return msgs
}

// TestDerivedAsSipgo holds derived's bytes equal to sipgo's for the
// requests of the torture corpus and the server's own kinds (rport, a
// Record-Route, a To tag already there), for final answers of each kind
// and To tags new, equal and different: a retransmission is answered
// with derived's bytes followed by what the first answer had after them.
func TestDerivedAsSipgo(t *testing.T) {
	msgs := answerCorpus(t)
	checked := 0
	for name, req := range msgs {
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

// TestAnswerBytesAsSipgo holds answerBytes equal to the response sipgo
// builds and writes (NewResponseFromRequest, the To tag set, the headers
// appended), over the corpus, for answers of each kind, To tags new,
// equal, different and drawn, and the header sets the server adds: an
// answer over UDP is those bytes.
func TestAnswerBytesAsSipgo(t *testing.T) {
	var contact sip.Uri
	if err := sip.ParseUri("sip:presenced@192.0.2.1:5060;transport=udp", &contact); err != nil {
		t.Fatal(err)
	}
	binding := &sip.ContactHeader{Address: contact, Params: sip.NewParams()}
	binding.Params.Add("expires", "3600")
	binding.Params.Add("+sip.instance", `"<urn:uuid:00000000-0000-0000-0000-000000000001>"`)
	hdrSets := [][]sip.Header{
		nil,
		{&sip.ContactHeader{Address: contact}, sip.NewHeader("Expires", "600")},
		{sip.NewHeader("SIP-ETag", "e7a1"), sip.NewHeader("Expires", "3600")},
		{header.Warning("presenced", "bad Event header: x"), sip.NewHeader("Retry-After", "1")},
		{binding, sip.NewHeader("Path", "<sip:p.example.com;lr>"), sip.NewHeader("Date", "Mon, 07 Dec 2026 12:00:00 GMT")},
	}
	checked := 0
	for name, req := range answerCorpus(t) {
		existing, has := "", false
		if to := req.To(); to != nil {
			existing, has = to.Params.Get("tag")
		}
		for _, code := range []int{200, 202, 400, 423, 481, 489, 503} {
			for _, tag := range []string{"", "t0k3n", existing} {
				for _, hdrs := range hdrSets {
					got, gotTag, n := answerBytes(req, code, "Reason Phrase", tag, hdrs)
					res := sip.NewResponseFromRequest(req, code, "Reason Phrase", nil)
					want := tag
					if tag == "" && !has && req.To() != nil {
						// Both draw a random tag: answerBytes's must be
						// a UUID; sipgo's is replaced with it.
						if u, ok := packUUID([]byte(gotTag)); !ok || u[6]>>4 != 4 || u[8]>>6 != 2 {
							t.Errorf("%s %d: drawn To tag %q is not a version 4 UUID", name, code, gotTag)
						}
						want = gotTag
					}
					if to := res.To(); to != nil && want != "" {
						to.Params.Add("tag", want)
					}
					for _, h := range hdrs {
						res.AppendHeader(h)
					}
					var buf bytes.Buffer
					res.StringWrite(&buf)
					if !bytes.Equal(got, buf.Bytes()) {
						t.Errorf("%s %d tag %q: answerBytes\n%q\nsipgo\n%q", name, code, tag, got, buf.Bytes())
					}
					if d := derived(req, code, "Reason Phrase", gotTag); !bytes.Equal(got[:n], d) {
						t.Errorf("%s %d tag %q: first %d bytes %q, derived %q", name, code, tag, n, got[:n], d)
					}
					checked++
				}
			}
		}
	}
	if checked < 500 {
		t.Fatalf("only %d comparisons: the corpus did not parse", checked)
	}
}

// benchPublish is the PUBLISH the benchmarks answer.
func benchPublish(b *testing.B) *sip.Request {
	parser := sip.NewParser(sip.WithHeadersParsers(header.Parsers()))
	m, err := parser.ParseSIP([]byte("PUBLISH sip:p1@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:p1@example.com>;tag=f1\r\nTo: <sip:p1@example.com>\r\nCall-ID: c1@127.0.0.1\r\n" +
		"CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	return m.(*sip.Request)
}

// BenchmarkDerived is the check each final answer over UDP costs:
// derived as written now, against building it through sipgo.
func BenchmarkDerived(b *testing.B) {
	req := benchPublish(b)
	for name, f := range map[string]func(*sip.Request, int, string, string) []byte{"direct": derived, "sipgo": derivedSipgo} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f(req, 200, "OK", "3b1f0c2e-5d4a-4c1e-9f0a-0d5c6b7a8e9f")
			}
		})
	}
}

// repeatedByName is what missingHeader says of a repeated header, found
// name by name with sipgo's GetHeaders.
func repeatedByName(req *sip.Request) string {
	for _, name := range singleValued {
		hs := req.GetHeaders(name)
		for _, h := range hs[min(1, len(hs)):] {
			if h.Value() != hs[0].Value() {
				return fmt.Sprintf("more than one %s header (%s; %s)", name, hs[0].Value(), h.Value())
			}
		}
	}
	return ""
}

// TestMissingHeaderAsGetHeaders holds missingHeader's one pass to what
// sipgo's GetHeaders finds, name by name, over the corpus, valid and
// invalid: the same request is refused with the same words.
func TestMissingHeaderAsGetHeaders(t *testing.T) {
	parser := sip.NewParser(sip.WithHeadersParsers(header.Parsers()))
	files, _ := filepath.Glob("testdata/torture/*/*.sip")
	repeated := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := parser.ParseSIP(data)
		if err != nil {
			continue
		}
		req, ok := m.(*sip.Request)
		if !ok {
			continue
		}
		want := repeatedByName(req)
		if got := missingHeader(req); want != "" && got != want || want == "" && strings.HasPrefix(got, "more than one") {
			t.Errorf("%s: missingHeader %q, by name %q", f, got, want)
		}
		if want != "" {
			repeated++
		}
	}
	if repeated < 4 {
		t.Fatalf("only %d requests with a repeated header: the corpus did not parse", repeated)
	}
}

// BenchmarkMissingHeader is the check of a PUBLISH's headers: the one
// pass, against GetHeaders name by name.
func BenchmarkMissingHeader(b *testing.B) {
	req := benchPublish(b)
	for name, f := range map[string]func(*sip.Request) string{"onepass": missingHeader, "byname": repeatedByName} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f(req)
			}
		})
	}
}

// BenchmarkAnswer is a PUBLISH's 200 over UDP up to its send: written as
// bytes, against built through sipgo, written, and its derived part
// built again to be checked, as Respond keeps it.
func BenchmarkAnswer(b *testing.B) {
	req := benchPublish(b)
	hdrs := func() []sip.Header {
		return []sip.Header{sip.NewHeader("SIP-ETag", "0193a5c2e1f47c3e8a9d"), sip.NewHeader("Expires", "3600")}
	}
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			answerBytes(req, 200, "OK", "", hdrs())
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			for _, h := range hdrs() {
				res.AppendHeader(h)
			}
			var buf bytes.Buffer
			buf.Grow(512)
			res.StringWrite(&buf)
			tag, _ := res.To().Params.Get("tag")
			bytes.HasPrefix(buf.Bytes(), derived(req, 200, "OK", tag))
		}
	})
}

// TestHeaderLookupAsSipgo holds header.All and header.Get to what
// sipgo's GetHeaders and GetHeader find, over the corpus, for every name
// a request carries in its own case, upper and lower case, and names it
// may lack.
func TestHeaderLookupAsSipgo(t *testing.T) {
	checked := 0
	for name, req := range answerCorpus(t) {
		names := []string{"Event", "Expires", "Accept", "SIP-If-Match", "Record-Route", "X-None"}
		for _, h := range req.Headers() {
			names = append(names, h.Name(), strings.ToUpper(h.Name()), strings.ToLower(h.Name()))
		}
		for _, n := range names {
			got, want := header.All(req, n), req.GetHeaders(n)
			if len(got) != len(want) {
				t.Errorf("%s %q: %d headers, sipgo %d", name, n, len(got), len(want))
				continue
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("%s %q #%d: %v, sipgo %v", name, n, i, got[i], want[i])
				}
			}
			if g, w := header.Get(req, n), req.GetHeader(n); g != w {
				t.Errorf("%s %q: Get %v, sipgo %v", name, n, g, w)
			}
			checked++
		}
	}
	if checked < 400 {
		t.Fatalf("only %d names checked: the corpus did not parse", checked)
	}
}

// TestURIStringAsSipgo holds uriString to sipgo's Uri.String over the
// URIs of the corpus's request-URIs and address headers, and URIs made to
// reach each branch (no scheme, a password, slashes, headers, quoted and
// bare parameters, IPv6 and IPv4 hosts, ports).
func TestURIStringAsSipgo(t *testing.T) {
	var uris []sip.Uri
	for _, req := range answerCorpus(t) {
		uris = append(uris, req.Recipient)
		for _, h := range req.Headers() {
			switch h := h.(type) {
			case *sip.FromHeader:
				uris = append(uris, h.Address)
			case *sip.ToHeader:
				uris = append(uris, h.Address)
			case *sip.ContactHeader:
				uris = append(uris, h.Address)
			}
		}
	}
	for _, s := range []string{"sip:alice@example.com", "sips:bob:secret@[2001:db8::1]:5061;transport=tls",
		"sip:127.0.0.1:5060;lr;maddr=10.0.0.1?subject=hi&priority=urgent", "sip:host", "tel:+15551234567",
		"sip:u@h;x=\"a b\"", "sip:u@[::ffff:192.0.2.1]"} {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		uris = append(uris, u)
	}
	made := []sip.Uri{
		{Host: "example.com", User: "noscheme"},
		{Scheme: "sip", HierarhicalSlashes: true, User: "u", Password: "p", Host: "h.example", Port: 65535},
		{Scheme: "sip", Host: "h", UriParams: sip.HeaderParams{{K: "a", V: "x\ty"}, {K: "b"}, {K: "c", V: "1"}},
			Headers: sip.HeaderParams{{K: "h", V: "v w"}, {K: "k"}}},
	}
	uris = append(uris, made...)
	for i := range uris {
		if got, want := uriString(&uris[i]), uris[i].String(); got != want {
			t.Errorf("uriString %q, sipgo %q", got, want)
		}
	}
	if len(uris) < 50 {
		t.Fatalf("only %d URIs: the corpus did not parse", len(uris))
	}
}

// BenchmarkURIString is the three URIs a new subscription keeps: written
// by uriString, against sipgo's String.
func BenchmarkURIString(b *testing.B) {
	var uris [3]sip.Uri
	for i, s := range []string{"sip:watcher17@example.com", "sip:presentity42@example.com", "sip:sipp@127.0.0.1:5061;transport=udp"} {
		if err := sip.ParseUri(s, &uris[i]); err != nil {
			b.Fatal(err)
		}
	}
	for name, f := range map[string]func(*sip.Uri) string{"direct": uriString, "sipgo": (*sip.Uri).String} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for i := range uris {
					f(&uris[i])
				}
			}
		})
	}
}
