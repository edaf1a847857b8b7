package sdk

import "testing"

// The rules themselves are tested in abi (TestPresentity); these check
// what the wrappers add: an unparsable URI matches nothing, not even
// itself, and the comparison is symmetric.
func TestSameResource(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"sip:alice@example.com", "sip:alice@example.com", true},
		{"sip:alice@example.com", "pres:alice@EXAMPLE.com", true},
		{"sip:alice@127.0.0.1:5393", "sip:alice@127.0.0.1", true},
		{"sip:Alice@example.com", "sip:alice@example.com", false},
		{"sip:alice@example.com", "sip:alice@example.org", false},
		{"sip:alice@example.com", "tel:alice@example.com", false},
		{"", "", false},
		{"not a uri", "not a uri", false},
		{"sip:example.com", "sip:example.com", false},
	}
	for _, tt := range tests {
		if got := SameResource(tt.a, tt.b); got != tt.want {
			t.Errorf("SameResource(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := SameResource(tt.b, tt.a); got != tt.want {
			t.Errorf("SameResource(%q, %q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestResourceKey(t *testing.T) {
	for uri, want := range map[string]string{
		`Alice <sips:alice@Example.com:5061;transport=tls>`: "sip:alice@example.com",
		"sip:bob@example.com:5080":                          "sip:bob@example.com",
		"mailto:x@y":                                        "",
	} {
		if got := ResourceKey(uri); got != want {
			t.Errorf("ResourceKey(%q) = %q, want %q", uri, got, want)
		}
	}
}
