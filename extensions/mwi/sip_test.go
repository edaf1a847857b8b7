//go:build !wasip1

// The mwi module end to end: a real presenced server runs it (siptest),
// and the tests speak SIP to it as a voice mail server and phones do. The
// server is the host's, which does not build for wasip1, where go vet
// reads these too.
package main_test

import (
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const (
	pkg         = "github.com/presenced/presenced/extensions/mwi"
	summaryType = "application/simple-message-summary"
)

func TestMessageSummaryOverSIP(t *testing.T) {
	f := siptest.Start(t, siptest.Module{Package: pkg})
	const box = "sip:alice@example.com"
	vm, other := f.Peer(t, "UDP"), f.Peer(t, "UDP")
	desk, mobile := f.Peer(t, "UDP"), f.Peer(t, "TCP")
	next := func(p *siptest.Peer, want string) {
		t.Helper()
		n := p.Notify()
		if siptest.Header(n, "Content-Type") != summaryType || string(n.Body()) != want {
			t.Fatalf("NOTIFY:\n%s\nwant body %q", n, want)
		}
	}

	// nothing published: "no", never an empty NOTIFY
	_, r := desk.Subscribe("message-summary", box, "Accept: "+summaryType)
	siptest.WantCode(t, r, 200)
	if siptest.Header(r, "Expires") != "3600" {
		t.Fatalf("Expires %q", siptest.Header(r, "Expires"))
	}
	next(desk, "Messages-Waiting: no\r\n")
	_, r = mobile.Subscribe("message-summary", box)
	siptest.WantCode(t, r, 200)
	next(mobile, "Messages-Waiting: no\r\n")

	// the voice mail server's counts change: both phones follow
	etag := ""
	for _, body := range []string{
		"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 1/0\r\n",
		"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/0 (1/0)\r\n",
		"Messages-Waiting: no\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 0/2 (0/1)\r\n",
	} {
		var extra []string
		if etag != "" {
			extra = append(extra, "SIP-If-Match: "+etag)
		}
		r = vm.Publish("message-summary", box, summaryType, body, extra...)
		siptest.WantCode(t, r, 200)
		etag = siptest.Header(r, "SIP-ETag")
		next(desk, body)
		next(mobile, body)
	}

	// malformed summaries: 400 saying what is wrong, nothing sent
	for _, c := range []struct{ body, warning string }{
		{"Messages-Waiting: perhaps\r\n", "want yes or no"},
		{"Messages-Waiting: no\r\nVoice-Message: 3/0\r\n", "Voice-Message has 3 new"},
		{"Messages-Waiting: yes\r\nVoice-Message: three/0\r\n", "want new/old"},
		{"Messages-Waiting: yes\r\nHologram-Message: 1/0\r\n", "unknown message class"},
	} {
		r = other.Publish("message-summary", box, summaryType, c.body)
		siptest.WantCode(t, r, 400)
		if w := siptest.Header(r, "Warning"); !strings.Contains(w, c.warning) {
			t.Fatalf("Warning %q does not say %q", w, c.warning)
		}
	}
	siptest.WantCode(t, other.Publish("message-summary", box, "text/plain", "hello"), 415)
	desk.Quiet(200 * time.Millisecond)
	mobile.Quiet(time.Millisecond)

	// the operator sets the counts
	answer, err := f.Command("message-summary", box, "set", map[string]string{"voice": "3/2 (1/0)"})
	if err != nil || !strings.Contains(answer, "2 watcher(s) notified") {
		t.Fatalf("set: %q %v", answer, err)
	}
	next(desk, "Messages-Waiting: yes\r\nVoice-Message: 3/2 (1/0)\r\n")
	next(mobile, "Messages-Waiting: yes\r\nVoice-Message: 3/2 (1/0)\r\n")
	if _, err := f.Command("message-summary", box, "set", map[string]string{"voice": "x"}); err == nil {
		t.Fatal("set voice=x accepted")
	}

	// a phone that takes no message-summary is refused
	_, r = other.Subscribe("message-summary", box, "Accept: application/pidf+xml")
	siptest.WantCode(t, r, 406)
}
