//go:build !wasip1

// The dialog module end to end: a real presenced server runs it (siptest),
// and the tests speak SIP to it as a PBX and phones with busy lamp fields
// do. The server is the host's, which does not build for wasip1, where go
// vet reads these too.
package main_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const (
	pkg      = "github.com/presenced/presenced/extensions/dialog"
	infoType = "application/dialog-info+xml"
	bob      = "sip:bob@example.com"
)

// lamp is a phone watching bob's line as from, checking that each NOTIFY
// is dialog-info about bob with the version after the last one.
type lamp struct {
	from    string
	p       *siptest.Peer
	callID  string
	version int
}

var versionRe = regexp.MustCompile(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="(\d+)" state="full" entity="sip:bob@example.com">`)

func watch(t *testing.T, f *siptest.Server, from string) *lamp {
	t.Helper()
	l := &lamp{from: from, p: f.Peer(t, "UDP"), callID: siptest.NewCallID(), version: -1}
	r := l.p.Send(siptest.Request{Method: "SUBSCRIBE", URI: bob, Headers: []string{
		"From: <" + from + ">;tag=" + strings.NewReplacer("@", "-", ".", "-").Replace(l.callID), "To: <" + bob + ">",
		"Call-ID: " + l.callID, "CSeq: 1 SUBSCRIBE", l.p.Contact(), "Event: dialog", "Accept: " + infoType}})
	siptest.WantCode(t, r, 200)
	return l
}

func (l *lamp) next(t *testing.T) string {
	t.Helper()
	n := l.p.NotifyIn(l.callID)
	m := versionRe.FindStringSubmatch(string(n.Body()))
	if siptest.Header(n, "Content-Type") != infoType || m == nil {
		t.Fatalf("%s got\n%s", l.from, n)
	}
	if v, _ := strconv.Atoi(m[1]); v != l.version+1 {
		t.Fatalf("%s got version %d after %d", l.from, v, l.version)
	}
	l.version++
	return string(n.Body())
}

func dialogInfo(dialogs string) string {
	return `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:bob@example.com">` + dialogs + `</dialog-info>`
}

// A forked call to bob, published by two PBXes, watched by phones with
// each quirk and by one that may not see who calls.
func TestBusyLampFieldOverSIP(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg, Config: map[string]string{
		"identities": "sip:boss@example.com", "dummy_dialog": "sip:yealink@example.com",
		"single_dialog": "sip:spa@example.com", "always_direction": "sip:gs@example.com"}})
	boss, plain := watch(t, f, "sip:boss@example.com"), watch(t, f, "sip:plain@example.com")
	yealink, spa, gs := watch(t, f, "sip:yealink@example.com"), watch(t, f, "sip:spa@example.com"), watch(t, f, "sip:gs@example.com")
	all := []*lamp{boss, plain, yealink, spa, gs}
	pbx1, pbx2 := f.Peer(t, "UDP"), f.Peer(t, "TCP")

	// idle: no dialog, but the phone that needs one gets one
	for _, l := range all {
		b := l.next(t)
		if has := strings.Contains(b, `<dialog id="bob" direction="recipient"><state>terminated</state></dialog>`); has != (l == yealink) {
			t.Fatalf("%s idle:\n%s", l.from, b)
		}
	}

	branchA := func(state string) string {
		return `<dialog id="a" call-id="call1@pbx" local-tag="la" remote-tag="ra"><state>` + state + `</state>` +
			`<local><identity>sip:bob@example.com</identity><target uri="sip:bob@192.0.2.1"/></local>` +
			`<remote><identity display="Carol">sip:carol@example.org</identity><target uri="sip:carol@198.51.100.7"/></remote></dialog>`
	}
	branchB := func(state string) string {
		return `<dialog id="b" call-id="call1@pbx" local-tag="lb" remote-tag="ra" direction="recipient"><state>` + state + `</state></dialog>`
	}
	var etag1, etag2 string
	publish := func(p *siptest.Peer, etag *string, body string) {
		t.Helper()
		var extra []string
		if *etag != "" {
			extra = append(extra, "SIP-If-Match: "+*etag)
		}
		r := p.Publish("dialog", bob, infoType, body, extra...)
		siptest.WantCode(t, r, 200)
		*etag = siptest.Header(r, "SIP-ETag")
	}
	type want struct {
		l     *lamp
		check func(string) bool
	}
	step := func(name string, do func(), wants ...want) {
		t.Helper()
		do()
		for _, w := range wants {
			if b := w.l.next(t); !w.check(b) {
				t.Fatalf("%s: %s got\n%s", name, w.l.from, b)
			}
		}
		for _, l := range all {
			l.p.Quiet(50 * time.Millisecond)
		}
	}
	has := func(subs ...string) func(string) bool {
		return func(b string) bool {
			for _, s := range subs {
				if strings.HasPrefix(s, "!") == strings.Contains(b, strings.TrimPrefix(s, "!")) {
					return false
				}
			}
			return true
		}
	}

	step("branch a rings", func() { publish(pbx1, &etag1, dialogInfo(branchA("early"))) },
		want{boss, has(`call-id="call1@pbx"`, `<identity display="Carol">sip:carol@example.org</identity>`, `<target uri="sip:bob@192.0.2.1"/>`, "<state>early</state>")},
		want{plain, has(`<dialog id="a"><state>early</state></dialog>`, "!carol", "!call-id")},
		want{yealink, has(`id="a"`, "!bob\" direction")}, want{spa, has(`id="a"`)},
		want{gs, has(`<dialog id="a" direction="recipient"><state>early</state>`)})
	// the second branch rings too: the single-dialog phone keeps showing
	// the first ringing one, and is sent nothing
	step("branch b rings", func() { publish(pbx2, &etag2, dialogInfo(branchB("early"))) },
		want{boss, has(`id="a"`, `id="b"`)}, want{plain, has(`id="a"`, `id="b"`)}, want{yealink, has(`id="b"`)}, want{gs, has(`id="b"`)})
	// a is cancelled: every lamp still rings, from b
	ringsFromB := has(`<dialog id="b"`, "<state>early</state>", `!id="a"`, "!terminated")
	step("branch a cancelled", func() { publish(pbx1, &etag1, dialogInfo(branchA("terminated"))) },
		want{boss, ringsFromB}, want{plain, ringsFromB}, want{yealink, ringsFromB}, want{spa, ringsFromB}, want{gs, ringsFromB})
	talks := has(`<dialog id="b"`, "<state>confirmed</state>", `!id="a"`)
	step("b answers", func() { publish(pbx2, &etag2, dialogInfo(branchB("confirmed"))) },
		want{boss, talks}, want{plain, talks}, want{yealink, talks}, want{spa, talks}, want{gs, talks})
	step("b hangs up", func() { publish(pbx2, &etag2, dialogInfo(branchB("terminated"))) },
		want{boss, has(`id="a"`, `id="b"`, "!early", "!confirmed")}, want{plain, has(`id="b"`, "!confirmed")},
		want{yealink, has(`id="b"`, "!confirmed")}, want{spa, has(`<dialog id="`, "!confirmed")}, want{gs, has(`id="b"`, "!confirmed")})

	// malformed and foreign bodies change nothing
	for _, c := range []struct{ body, warning string }{
		{`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"`, "not well-formed"},
		{dialogInfo(`<dialog id="x"><state>ringing</state></dialog>`), "state 'ringing': want trying"},
		{dialogInfo(`<dialog><state>early</state></dialog>`), "no id"},
		{strings.Replace(dialogInfo(""), "sip:bob@", "sip:eve@", 1), "not the resource"},
	} {
		r := pbx1.Publish("dialog", bob, infoType, c.body)
		siptest.WantCode(t, r, 400)
		if w := siptest.Header(r, "Warning"); !strings.Contains(w, c.warning) {
			t.Fatalf("Warning %q does not say %q", w, c.warning)
		}
	}
	siptest.WantCode(t, pbx1.Publish("dialog", bob, "application/pidf+xml", dialogInfo("")), 415)
	for _, l := range all {
		l.p.Quiet(50 * time.Millisecond)
	}
	_, r := f.Peer(t, "UDP").Subscribe("dialog", bob, "Accept: application/pidf+xml")
	siptest.WantCode(t, r, 406)

	// both publications go: idle again, each lamp's version goes on
	var r2 *sip.Response
	step("pbx1 unpublishes", func() {
		siptest.WantCode(t, pbx1.Publish("dialog", bob, "", "", "SIP-If-Match: "+etag1, "Expires: 0"), 200)
	},
		want{boss, has(`!id="a"`)}, want{plain, has(`!id="a"`)}, want{yealink, has(`!id="a"`)}, want{spa, has(`id="b"`)}, want{gs, has(`!id="a"`)})
	step("pbx2 unpublishes", func() {
		r2 = pbx2.Publish("dialog", bob, "", "", "SIP-If-Match: "+etag2, "Expires: 0")
		siptest.WantCode(t, r2, 200)
	}, want{boss, has("!<dialog ")}, want{plain, has("!<dialog ")}, want{yealink, has(`<dialog id="bob" direction="recipient"><state>terminated</state>`)},
		want{spa, has("!<dialog ")}, want{gs, has("!<dialog ")})
	if boss.version != 7 || spa.version != 6 {
		t.Fatalf("versions: boss %d, spa %d", boss.version, spa.version)
	}
}
