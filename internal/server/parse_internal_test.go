package server

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// parseCases are requests parseRequest must read itself (want true) or
// leave to sipgo (false), beside the RFC 4475 corpus in testdata/torture.
var parseCases = []struct {
	name string
	msg  string
	own  bool
}{
	{"publish", "PUBLISH sip:bench1@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\nMax-Forwards: 70\r\n" +
		"From: <sip:bench1@example.com>;tag=pub1\r\nTo: <sip:bench1@example.com>\r\nCall-ID: abc@127.0.0.1\r\nCSeq: 1 PUBLISH\r\n" +
		"Event: presence\r\nExpires: 3600\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nopen", true},
	{"subscribe", "SUBSCRIBE sip:bench1@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-2\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-x\r\n" +
		"From: \"Bob\" <sip:bob@example.com>;tag=s1\r\nTo: <sip:bench1@example.com>\r\nCall-ID: def\r\nCSeq: 7 SUBSCRIBE\r\n" +
		"Contact: <sip:bob@127.0.0.1:5070;transport=udp>\r\nRecord-Route: <sip:p1.example.com;lr>\r\nEvent: presence;id=7\r\nAccept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", true},
	{"compact", "SUBSCRIBE sip:a@example.com SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-3\r\nf: <sip:b@example.com>;tag=1\r\nt: <sip:a@example.com>\r\n" +
		"i: x\r\nCSEQ: 1 SUBSCRIBE\r\nm: <sip:b@127.0.0.1>\r\no: presence\r\nk: path\r\nu: presence\r\nl: 0\r\n\r\n", true},
	{"no content-length", "PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-4\r\nFrom: <sip:a@example.com>;tag=1\r\n" +
		"To: <sip:a@example.com>\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\n\r\nbody bytes", true},
	{"body beyond content-length", "PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-5\r\nFrom: <sip:a@example.com>;tag=1\r\n" +
		"To: <sip:a@example.com>\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\nContent-Length: 2\r\n\r\nbody", true},
	{"lower-case method", "publish sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-6\r\nCall-ID: y\r\n\r\n", true},
	{"via list", "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-7, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-8\r\nCall-ID: y\r\n\r\n", false},
	{"folded", "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-9\r\nSubject: one\r\n  two\r\nCall-ID: y\r\n\r\n", false},
	{"short body", "PUBLISH sip:a@example.com SIP/2.0\r\nCall-ID: y\r\nContent-Length: 20\r\n\r\nbody", false},
	{"bare CR", "OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: y\rz\r\n\r\n", false},
	{"no colon", "OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID y\r\n\r\n", false},
	{"bad cseq", "OPTIONS sip:a@example.com SIP/2.0\r\nCSeq: x OPTIONS\r\n\r\n", false},
	{"wildcard", "OPTIONS * SIP/2.0\r\nCall-ID: y\r\n\r\n", false},
	{"response", "SIP/2.0 200 OK\r\nCall-ID: y\r\n\r\n", false},
	{"no end of headers", "OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: y\r\n", false},
}

// TestParseRequestAsSipgo holds parseRequest to sipgo's parser: what it
// reads itself is the request sipgo reads, header by header, and the
// usual requests are read without sipgo.
func TestParseRequestAsSipgo(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			if got := sameAsSipgo(t, []byte(c.msg)); got != c.own {
				t.Errorf("read without sipgo: %v, want %v", got, c.own)
			}
		})
	}
	files, _ := filepath.Glob("testdata/torture/*/*.sip")
	if len(files) == 0 {
		t.Fatal("no RFC 4475 corpus")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sameAsSipgo(t, data)
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c.msg))
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsSipgo(t, data) })
}

// sameAsSipgo fails t unless parseRequest declines data or reads it as
// sipgo's parser does; it reports whether parseRequest read it.
func sameAsSipgo(t *testing.T, data []byte) bool {
	t.Helper()
	const max = 65535
	req := parseRequest(headerParsers, max, data)
	if req == nil {
		return false
	}
	p := sip.NewParser(sip.WithHeadersParsers(headerParsers))
	p.MaxMessageLength = max
	msg, err := p.ParseSIP(data)
	if err != nil {
		t.Fatalf("read, but sipgo refuses it: %v", err)
	}
	want, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("read, but sipgo reads a %T", msg)
	}
	if req.String() != want.String() || req.Method != want.Method || req.SipVersion != want.SipVersion {
		t.Fatalf("read as\n%q\nsipgo reads\n%q", req.String(), want.String())
	}
	if !reflect.DeepEqual(req.Recipient, want.Recipient) {
		t.Fatalf("request-URI %#v, sipgo %#v", req.Recipient, want.Recipient)
	}
	got, exp := req.Headers(), want.Headers()
	for i := range exp {
		if !reflect.DeepEqual(got[i], exp[i]) {
			t.Fatalf("header %d: %#v, sipgo %#v", i, got[i], exp[i])
		}
	}
	if !strings.EqualFold(string(req.Body()), string(want.Body())) || len(req.Body()) != len(want.Body()) {
		t.Fatalf("body %q, sipgo %q", req.Body(), want.Body())
	}
	return true
}

// TestTxKeyAsSipgo holds appendTxKey to sipgo's ServerTxKeyMake over the
// corpus and requests with each kind of Via and CSeq.
func TestTxKeyAsSipgo(t *testing.T) {
	msgs := []string{
		"PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\n\r\n",
		"PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-2\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\n\r\n",
		"ACK sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TLS [::1];branch=z9hG4bK-3\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: y\r\nCSeq: 1 ACK\r\n\r\n",
		"PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\n\r\n",
		"PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=old\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\n\r\n",
		"PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070\r\nFrom: <sip:a@example.com>\r\nCall-ID: y\r\nCSeq: 1 PUBLISH\r\n\r\n",
		"PUBLISH sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4\r\nCall-ID: y\r\n\r\n",
		"PUBLISH sip:a@example.com SIP/2.0\r\nCSeq: 1 PUBLISH\r\n\r\n",
	}
	for _, c := range parseCases {
		msgs = append(msgs, c.msg)
	}
	files, _ := filepath.Glob("testdata/torture/*/*.sip")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(data))
	}
	keys := 0
	for _, m := range msgs {
		msg, err := sip.ParseMessage([]byte(m))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			continue
		}
		want, werr := sip.ServerTxKeyMake(req)
		got, err := appendTxKey(nil, req)
		if (err != nil) != (werr != nil) || string(got) != want {
			t.Errorf("%.40q: key %q (%v), sipgo %q (%v)", m, got, err, want, werr)
		}
		if werr == nil {
			keys++
		}
	}
	if keys < 10 {
		t.Fatalf("only %d requests with a key", keys)
	}
}
