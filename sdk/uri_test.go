package sdk

import "testing"

func TestSameResource(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"sip:alice@example.com", "sip:alice@example.com", true},
		{"pres:alice@example.com", "sip:alice@example.com", true},
		{"sips:alice@example.com", "sip:alice@example.com", true},
		{"SIP:alice@example.com", "Pres:alice@example.com", true},
		{"sip:alice@EXAMPLE.com", "sip:alice@example.COM", true},
		{"sip:Alice@example.com", "sip:alice@example.com", false},
		{"sip:alice@example.com:5060", "sip:alice@example.com", true},
		{"sips:alice@example.com:5061", "sip:alice@example.com", true},
		{"sip:alice@example.com:5070", "sip:alice@example.com", false},
		{"sip:alice@example.com;transport=tcp", "sip:alice@example.com", true},
		{"sip:alice@example.com;user=phone?subject=x", "sip:alice@example.com", true},
		{"sip:alice@example.com:5060;transport=udp", "sip:alice@example.com", true},
		{`"Alice" <sip:alice@example.com;lr>;tag=1`, "sip:alice@example.com", true},
		{"<pres:alice@example.com>", "sip:alice@example.com", true},
		{"  sip:alice@example.com  ", "sip:alice@example.com", true},
		{"sip:%61lice@example.com", "sip:alice@example.com", true},
		{"sip:al%3bice@example.com", "sip:al%3Bice@example.com", true},
		{"sip:al%3Bice@example.com", "sip:al;ice@example.com", false},
		{"sip:alice:secret@example.com", "sip:alice@example.com", true},
		{"sip:+1555;phone-context=x@example.com", "sip:+1555;phone-context=x@example.com", true},
		{"sip:+1555;phone-context=x@example.com", "sip:+1555@example.com", false},
		{"sip:alice@[2001:DB8::1]:5060", "sip:alice@[2001:db8::1]", true},
		{"sip:alice@[2001:db8::5060]", "sip:alice@[2001:db8::]", false},
		{"sip:example.com", "sip:example.com:5060", true},
		{"sip:alice@example.com", "sip:bob@example.com", false},
		{"sip:alice@example.com", "sip:alice@example.org", false},
		{"sip:alice@example.com", "tel:alice@example.com", false},
		{"tel:+15551234", "tel:+15551234", true},
		{"", "", false},
		{"alice@example.com", "alice@example.com", false},
		{"sip:", "sip:", false},
		{"sip:@example.com", "sip:@example.com", false},
	}
	for _, tt := range tests {
		if got := SameResource(tt.a, tt.b); got != tt.want {
			t.Errorf("SameResource(%q, %q) = %v, want %v (keys %q, %q)",
				tt.a, tt.b, got, tt.want, ResourceKey(tt.a), ResourceKey(tt.b))
		}
		if got := SameResource(tt.b, tt.a); got != tt.want {
			t.Errorf("SameResource(%q, %q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestResourceKey(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"pres:alice@Example.COM", "sip:alice@example.com"},
		{`Alice <sips:alice@example.com:5061;transport=tls>`, "sip:alice@example.com"},
		{"sip:bob@example.com:5080", "sip:bob@example.com:5080"},
		{"sip:a%2fb@example.com", "sip:a%2Fb@example.com"},
		{"sip:a%7Eb@example.com", "sip:a~b@example.com"},
		{"sip:a%zz@example.com", "sip:a%zz@example.com"},
		{"sip:a%4@example.com", "sip:a%4@example.com"},
		{"mailto:x@y", "mailto:x@y"},
		{"not a uri", ""},
		{"1sip:a@b", ""},
	}
	for _, tt := range tests {
		if got := ResourceKey(tt.uri); got != tt.want {
			t.Errorf("ResourceKey(%q) = %q, want %q", tt.uri, got, tt.want)
		}
	}
}
