package rls

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseServices(t *testing.T) {
	data, err := os.ReadFile("testdata/rls-services.xml")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := ParseServices(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []List{
		{URI: "sip:friends@example.com", Packages: []string{"presence"}, Members: []Member{
			{URI: "sip:alice@example.com", Name: "Alice"}, {URI: "sip:bob@example.com"}, {URI: "sip:carol@example.com"}}},
		{URI: "sip:phones@example.com", Packages: []string{"dialog"}, Members: []Member{
			{URI: "sip:100@example.com"}, {URI: "sip:101@example.com"}}},
	}
	if !reflect.DeepEqual(ls, want) {
		t.Fatalf("got %+v", ls)
	}
	if !ls[0].Serves("presence") || ls[0].Serves("dialog") || !(&List{}).Serves("dialog") {
		t.Fatal("Serves")
	}
}

func TestParseServicesRefuses(t *testing.T) {
	const head = `<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">`
	for doc, want := range map[string]string{
		head + `<service uri="sip:a@x"><resource-list>http://xcap/x</resource-list></service></rls-services>`:    "only an inline <list>",
		head + `<service><list/></service></rls-services>`:                                                       "has no uri",
		head + `<service uri="sip:a@x"><list><rl:entry uri="sip:a@x"/></list></service></rls-services>`:          "names itself",
		head + `<service uri="sip:a@x"><list><rl:entry uri="tel:+1"/></list></service></rls-services>`:           "not a sip: or sips: URI",
		head + `<service uri="sip:a@x"><list/></service><service uri="sip:a@x"><list/></service></rls-services>`: "defined twice",
		`<rls-services xmlns="urn:other"/>`:                                                                      "expected element <rls-services>",
		head + `<service uri="sip:a@x"><list>`:                                                                   "unexpected EOF",
	} {
		if _, err := ParseServices([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", doc, err, want)
		}
	}
}

func TestMultipartCarriesRLMIFirst(t *testing.T) {
	doc := RLMI("sip:l@x", 7, false, []Resource{{URI: "sip:a@x", Name: `A "&" B`, Instances: []Instance{{ID: "i1", State: "active", CID: "c1@x"}}}})
	if !strings.Contains(string(doc), `version="7" fullState="false"`) || !strings.Contains(string(doc), `<name>A &#34;&amp;&#34; B</name>`) ||
		!strings.Contains(string(doc), `<instance id="i1" state="active" cid="c1@x"/>`) {
		t.Fatalf("%s", doc)
	}
	ctype, body := Multipart("root@x", doc, []Part{{CID: "c1@x", ContentType: "application/pidf+xml", Body: []byte("<presence/>")}}, "B")
	if ctype != `multipart/related;type="application/rlmi+xml";start="<root@x>";boundary="B"` {
		t.Fatal(ctype)
	}
	i, j := strings.Index(string(body), "Content-ID: <root@x>"), strings.Index(string(body), "Content-ID: <c1@x>")
	if i < 0 || j < i || !strings.HasSuffix(string(body), "--B--\r\n") {
		t.Fatalf("%s", body)
	}
}
