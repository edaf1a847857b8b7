package xmldoc

import "testing"

const pidf = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="t1"><status><basic>open</basic></status></tuple>
</presence>`

func FuzzParse(f *testing.F) {
	for _, s := range []string{pidf, "", "<a/><b/>", "text<a/>", "<x:a/>", `<a xmlns:x="u"><x:b x:c="1"/></a>`, "<a>&unknown;</a>", "<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>", "<a", "\xff<a/>"} {
		f.Add([]byte(s), "sip:alice@example.com")
	}
	f.Fuzz(func(t *testing.T, body []byte, resource string) {
		if root, err := Parse(body); err == nil && root == nil {
			t.Fatal("Parse: nil root without an error")
		}
		if root, err := ParseRoot(body, "urn:ietf:params:xml:ns:pidf", "presence", resource); err == nil && root == nil {
			t.Fatal("ParseRoot: nil root without an error")
		}
	})
}
