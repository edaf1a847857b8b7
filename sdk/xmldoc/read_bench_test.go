package xmldoc

import (
	"os"
	"testing"
)

// benchPIDF is what bench/sipp/publish.xml sends (extensions/pa's
// benchPIDF): ~300 bytes, one tuple and a note.
const benchPIDF = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="t1"><status><basic>open</basic></status><contact>sip:alice@example.com</contact><timestamp>2026-01-01T00:00:00Z</timestamp></tuple>
  <note>in a benchmark</note>
</presence>`

// BenchmarkRead is the figure that matters inside a Go wasm guest, where
// pa reads every published body and every stored one it renders: run it
// there (RATIONALE.md says how) as well as natively.
func BenchmarkRead(b *testing.B) {
	rich, err := os.ReadFile("../../extensions/pa/testdata/rfc4480.xml")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		doc  []byte
	}{{"pidf", []byte(benchPIDF)}, {"rfc4480", rich}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.doc)))
			for b.Loop() {
				if _, err := Read(c.doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		// A Reader kept from call to call, as pa keeps one.
		b.Run(c.name+"/reader", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.doc)))
			var d Reader
			for b.Loop() {
				d.Reset()
				if _, err := d.Read(c.doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
