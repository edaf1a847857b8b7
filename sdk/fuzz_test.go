package sdk

import "testing"

func FuzzResourceKey(f *testing.F) {
	for _, s := range []string{"sip:alice@example.com", "<sips:Alice@EXAMPLE.com:5061;transport=tls>", "pres:a%6Cice@example.com",
		`"Alice" <sip:alice@example.com:5060?subject=x>`, "sip:", ":", "", "tel:+123", "sip:@", "sip:[::1]:5060", "sip:a@b:99999999999999999999", "sip:%"} {
		f.Add(s, "sip:alice@example.com")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka := ResourceKey(a)
		same := SameResource(a, b)
		if ka != "" && !SameResource(a, a) {
			t.Fatalf("SameResource(%q, itself) is false (key %q)", a, ka)
		}
		if same != SameResource(b, a) {
			t.Fatalf("SameResource not symmetric on %q, %q", a, b)
		}
		if ka != "" && ResourceKey(ka) != ka {
			t.Fatalf("ResourceKey(%q) = %q, whose key is %q", a, ka, ResourceKey(ka))
		}
	})
}
