package auth

import (
	"maps"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	for _, c := range []struct {
		in     string
		scheme string
		params map[string]string
	}{
		{
			`Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			"Digest", map[string]string{
				"username": "bob", "realm": "biloxi.com", "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
				"uri": "sip:bob@biloxi.com", "qop": "auth", "nc": "00000001", "cnonce": "0a4f113b",
				"response": "6629fae49393a05397450978507c4ef1", "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
			},
		},
		{
			// Any order, names in any case, unquoted values, folded lines,
			// empty list elements, commas and escapes inside quotes.
			"digest\tRESPONSE=abc ,, Realm = \"a, \\\"b\\\"\",\r\n nonce=x/y+z=,uri=sip:u@h;transport=tcp ,",
			"digest", map[string]string{"response": "abc", "realm": `a, "b"`, "nonce": "x/y+z=", "uri": "sip:u@h;transport=tcp"},
		},
		{"Digest", "Digest", map[string]string{}},
		{`Digest realm=""`, "Digest", map[string]string{"realm": ""}},
	} {
		scheme, params, err := parseAuthorization(c.in)
		if err != nil || scheme != c.scheme || !maps.Equal(params, c.params) {
			t.Errorf("parseAuthorization(%q) = %q, %v, %v\nwant %q, %v", c.in, scheme, params, err, c.scheme, c.params)
		}
	}
}

func TestParseAuthorizationErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"   ",
		`"Digest" realm=a`,
		`Digest realm`,
		`Digest realm=`,
		`Digest realm= ,`,
		`Digest realm="open`,
		`Digest realm="ends in backslash\`,
		`Digest realm=a realm=b`,
		`Digest realm=a, REALM=b`,
		`Digest =a`,
		`Digest realm="a"b`,
		`Digest,realm=a`,
		"Digest realm=a\x00",
		"Digest realm=a, " + strings.Repeat("x", maxHeaderLen),
		"Digest " + strings.Repeat("p=1,", maxParams) + "q=2",
	} {
		if _, _, err := parseAuthorization(in); err == nil {
			t.Errorf("parseAuthorization(%q) succeeded, want an error", in)
		}
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", `a "quoted" \ realm`, "comma, here"} {
		_, p, err := parseAuthorization("Digest realm=" + quote(s))
		if err != nil || p["realm"] != s {
			t.Errorf("quote(%q) read back as %q, %v", s, p["realm"], err)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1"`,
		`Digest username="a",realm="r",nonce="n",uri="sip:x",response="00",algorithm=SHA-256,qop=auth,nc=1,cnonce="c"`,
		`digest A="\"\\",,b=c`,
		`Digest realm="unterminated`,
		"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
	} {
		f.Add(s)
	}
	a, err := New(Options{Secret: []byte("fuzz")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		scheme, params, err := parseAuthorization(v)
		if err == nil {
			if scheme == "" {
				t.Errorf("empty scheme without an error for %q", v)
			}
			// What parses must survive being written out and read again.
			var b strings.Builder
			b.WriteString(scheme)
			for k, val := range params {
				b.WriteString(" ," + k + "=" + quote(val))
			}
			scheme2, params2, err := parseAuthorization(b.String())
			if err != nil || scheme2 != scheme || !maps.Equal(params, params2) {
				t.Errorf("%q: rewritten as %q reads %q, %v, %v", v, b.String(), scheme2, params2, err)
			}
		}
		// Verify must not panic either, whatever the header.
		_, _ = a.Verify("PUBLISH", "sip:a@b", "r", []string{v})
	})
}
