package abi

import (
	"strings"
	"testing"
)

func TestPresentity(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"sip:alice@example.com", "sip:alice@example.com"},
		{"pres:alice@Example.COM", "sip:alice@example.com"},
		{"sips:alice@example.com", "sip:alice@example.com"},
		{"SIP:alice@example.com", "sip:alice@example.com"},
		{"sip:Alice@example.com", "sip:Alice@example.com"},
		// the port, default or not, is a location detail
		{"sip:alice@example.com:5060", "sip:alice@example.com"},
		{"sips:alice@example.com:5061", "sip:alice@example.com"},
		{"sip:alice@127.0.0.1:5393", "sip:alice@127.0.0.1"},
		{"sip:alice@example.com:5060;transport=udp", "sip:alice@example.com"},
		{"sip:alice@example.com;transport=tcp", "sip:alice@example.com"},
		{"sip:alice@example.com;user=phone?subject=x", "sip:alice@example.com"},
		{`"Alice" <sip:alice@example.com;lr>;tag=1`, "sip:alice@example.com"},
		{`Alice <sips:alice@example.com:5061;transport=tls>`, "sip:alice@example.com"},
		{"<pres:alice@example.com>", "sip:alice@example.com"},
		{"  sip:alice@example.com  ", "sip:alice@example.com"},
		{"sip:alice:secret@example.com", "sip:alice@example.com"},
		// escapes: unreserved ones decoded, the others' hex upper-cased
		{"sip:%61lice@example.com", "sip:alice@example.com"},
		{"sip:a%7Eb@example.com", "sip:a~b@example.com"},
		{"sip:a%2fb@example.com", "sip:a%2Fb@example.com"},
		{"sip:al%3bice@example.com", "sip:al%3Bice@example.com"},
		{"sip:a%zz@example.com", "sip:a%zz@example.com"},
		{"sip:a%4@example.com", "sip:a%4@example.com"},
		{"sip:a%7%30@example.com", "sip:ap@example.com"},
		{"sip:+1555;phone-context=x@example.com", "sip:+1555;phone-context=x@example.com"},
		{"sip:j\xc3\xb6rg@example.com", "sip:j\xc3\xb6rg@example.com"},
		// IPv6 literals, canonical, a port after the bracket dropped
		{"sip:alice@[::1]:5060", "sip:alice@[::1]"},
		{"sip:alice@[2001:DB8::1]:5070", "sip:alice@[2001:db8::1]"},
		{"sip:alice@[2001:db8::5060]", "sip:alice@[2001:db8::5060]"},
		{"sip:my_box@host_1.lan", "sip:my_box@host_1.lan"},
		// no presentity
		{"sip:example.com", ""},
		{"sip:example.com:5060", ""},
		{"sip:@example.com", ""},
		{"sip:", ""},
		{"", ""},
		{"alice@example.com", ""},
		{"tel:+15551234", ""},
		{"mailto:x@y", ""},
		{"1sip:a@b", ""},
		{"not a uri", ""},
		{"sip:alice@2001:db8::1", ""},      // IPv6 without brackets
		{"sip:alice@[2001:db8::1", ""},     // unclosed
		{"sip:alice@[fe80::1%25eth0]", ""}, // a zone names no host
		{"sip:alice@[192.0.2.1]", ""},
		{"sip:alice@exa mple.com", ""},
		{"sip:al ice@example.com", ""},
		{`sip:"alice"@example.com`, ""},
		{"sip:a[1]@example.com", ""},
		{"<sip:alice@example.com", "sip:alice@example.com"},
		{"sip:alice@example.com>", ""},
		{"<A:0<", ""},
		{`"Dr. A: Lice" <sip:alice@example.com>`, "sip:alice@example.com"},
		{`"a<b \"c\" <d>" <sip:alice@example.com>`, "sip:alice@example.com"},
		{`"Alice" sip:alice@example.com`, ""},
		{`"Alice <sip:alice@example.com>`, ""},
		{"sip:alice@example.com;x=<", "sip:alice@example.com"},
		{"sip:alice@example.com?\x00<", "sip:alice@example.com"},
		{"<<sip:alice@example.com>", ""},
		// next to canonical: what the fast path must leave to the general one
		{"sip:a@b", "sip:a@b"},
		{"sip:a@B", "sip:a@b"},
		{"sip:a@b:1", "sip:a@b"},
		{"sip:a@b;x", "sip:a@b"},
		{"sip:a:@b", "sip:a@b"},
		{"sip:a%41@b", "sip:aA@b"},
		{"sip:a%2F@b", "sip:a%2F@b"},
		{"sip:&=+$,;?/@b", "sip:&=+$,;?/@b"},
		{"sip:a@b@c", ""},
		{"sip:a@", ""},
		{"sip:a@b ", "sip:a@b"},
		{"sip:a<@b", ""},
		{"sip:a@[::1]", "sip:a@[::1]"},
	}
	for _, tt := range tests {
		got, ok := Presentity(tt.uri)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Presentity(%q) = %q, %v; want %q", tt.uri, got, ok, tt.want)
		}
		// The fast path takes only what is canonical, and every plain
		// sip:user@host; it leaves escapes and IPv6 to the general one.
		plain := tt.want != "" && tt.uri == tt.want && !strings.ContainsAny(tt.uri, "%[")
		if canonical(tt.uri) != plain {
			t.Errorf("canonical(%q) = %v, want %v", tt.uri, canonical(tt.uri), plain)
		}
	}
}

// BenchmarkPresentity is what a module pays to reduce a URI; run it in
// wasm (sdk/sdktest/wasmrun) for the figures of RATIONALE.md.
func BenchmarkPresentity(b *testing.B) {
	for _, uri := range []string{"sip:alice@example.com", `"Alice" <sips:alice@Example.com:5061>`} {
		b.Run(uri, func(b *testing.B) {
			for b.Loop() {
				Presentity(uri)
			}
		})
	}
}
