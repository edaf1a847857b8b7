package header

import (
	"reflect"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestInstance(t *testing.T) {
	for in, want := range map[string]string{
		`"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"`: "<urn:uuid:00000000-0000-1000-8000-aabbccddeeff>",
		`"<URN:UUID:F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6>"`: "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>",
		`"<urn:gsma:imei:90420156-025763-0>"`:               "<urn:gsma:imei:90420156-025763-0>",
		`"<urn:X-Foo:CaseKept>"`:                            "<urn:x-foo:CaseKept>",
		`<urn:uuid:1>`:                                      "",
		`"urn:uuid:1"`:                                      "",
		`"<sip:a@b>"`:                                       "",
		`"<urn:uuid>"`:                                      "",
		`""`:                                                "",
		`"<urn:uuid:a b>"`:                                  "",
	} {
		got, err := Instance(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("Instance(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRegID(t *testing.T) {
	for in, want := range map[string]uint32{"1": 1, "2147483647": 1<<31 - 1, "0": 0, "2147483648": 0, "-1": 0, "+1": 0, "x": 0, "": 0} {
		got, err := RegID(in)
		if got != want || (err == nil) != (want != 0) {
			t.Errorf("RegID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestPathAndSupported(t *testing.T) {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
	req.AppendHeader(sip.NewHeader("Path", `<sip:edge.example.com;lr;ob>, "core, inner" <sip:core.example.com;lr>`))
	req.AppendHeader(sip.NewHeader("Path", "<sip:third;lr>"))
	req.AppendHeader(sip.NewHeader("Supported", "outbound, Path"))
	got, err := Path(req)
	want := []string{"<sip:edge.example.com;lr;ob>", `"core, inner" <sip:core.example.com;lr>`, "<sip:third;lr>"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Path = %q, %v", got, err)
	}
	if !Supported(req, "path") || !Supported(req, "outbound") || Supported(req, "gruu") {
		t.Fatal("Supported")
	}
	for _, bad := range []string{"sip:edge;lr", "<sip:edge;lr>,", "<>"} {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
		req.AppendHeader(sip.NewHeader("Path", bad))
		if p, err := Path(req); err == nil {
			t.Errorf("Path %q accepted as %q", bad, p)
		}
	}
}
