package server

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/abi"
)

// FuzzPresentityOf checks that the host and the modules agree on every
// request-URI: what the host reduces sipgo's parse of it to is what
// abi.Presentity, which modules call, makes of the text itself.
func FuzzPresentityOf(f *testing.F) {
	for _, s := range []string{"sip:alice@127.0.0.1:5393", "sips:Alice@EXAMPLE.com:5061;transport=tls", "sip:%61lice@example.com",
		"sip:alice:pw@[2001:DB8::1]:5060;lr?subject=x", "sip:+1555;phone-context=x@example.com", "sip:example.com", "pres:alice@example.com",
		"sip:alice@example.com:+5", "sip:alice@[::1]x", "sip:alice@b[::1]", "sip:a:[x]@b", "tel:+15551234", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var u sip.Uri
		if sip.ParseUri(raw, &u) != nil {
			return
		}
		if u.User != "" && strings.HasPrefix(u.Host, "[") && !strings.HasPrefix(raw[strings.IndexByte(raw, '@')+1:], "[") {
			// sipgo drops what stands between the '@' and a '['
			// ("sip:a@b[::1]" parses to host "[::1]"): the host never
			// sees that text, and reaches the presentity of the address
			// sipgo kept, where abi.Presentity refuses the host "b[::1]".
			return
		}
		got, gotOK := presentityOf(u)
		want, wantOK := abi.Presentity(raw)
		if got != want || gotOK != wantOK {
			t.Fatalf("request-URI %q: the host makes %q, %v of sipgo's %q; abi.Presentity makes %q, %v",
				raw, got, gotOK, u.String(), want, wantOK)
		}
	})
}
