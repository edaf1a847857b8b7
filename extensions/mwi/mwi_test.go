package main

import (
	"context"
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk/sdktest"
)

const (
	pkg     = "github.com/presenced/presenced/extensions/mwi"
	mailbox = "sip:alice@example.com"
)

// check as a pure function: what it accepts and, for what it refuses,
// that the reason names the fault.
func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		new        bool
		refused    string // "" accepted
	}{
		{"RFC 3842 example", string(sdktest.Testdata(t, "rfc3842.txt")), true, ""},
		{"message headers", string(sdktest.Testdata(t, "with-headers.txt")), true, ""},
		{"no messages", "Messages-Waiting: no\r\n", false, ""},
		{"old only", "Messages-Waiting: no\r\nVoice-Message: 0/3\r\n", false, ""},
		{"every class, any case", "messages-waiting: YES\r\nvoice-message: 1/0\r\nFax-Message: 0/0 (0/0)\r\nPager-Message: 0/0\r\nMultimedia-Message: 0/0\r\nText-Message: 0/0\r\nNone: 0/0\r\n", true, ""},
		{"empty", "", false, "empty summary"},
		{"status not first", "Voice-Message: 1/0\r\nMessages-Waiting: yes\r\n", false, "must be Messages-Waiting"},
		{"status value", "Messages-Waiting: maybe\r\n", false, `"maybe": want yes or no`},
		{"not a header", "Messages-Waiting: yes\r\nVoice-Message 1/0\r\n", false, "not a header line"},
		{"account not second", "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\nMessage-Account: sip:a@b\r\n", false, "must follow Messages-Waiting"},
		{"account not a URI", "Messages-Waiting: yes\r\nMessage-Account: alice\r\n", false, "not a URI"},
		{"unknown class", "Messages-Waiting: yes\r\nVideo-Message: 1/0\r\n", false, `unknown message class "Video-Message"`},
		{"class twice", "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\nvoice-message: 2/0\r\n", false, "Voice-Message twice"},
		{"counts", "Messages-Waiting: yes\r\nVoice-Message: 1\r\n", false, "want new/old"},
		{"negative", "Messages-Waiting: yes\r\nVoice-Message: -1/0\r\n", false, "want new/old"},
		{"too many", "Messages-Waiting: yes\r\nVoice-Message: 99999999999/0\r\n", false, "not a count"},
		{"urgent above new", "Messages-Waiting: yes\r\nVoice-Message: 1/0 (2/0)\r\n", false, "no more than them"},
		{"no but new", "Messages-Waiting: no\r\nFax-Message: 3/0\r\n", false, "Messages-Waiting: no, but Fax-Message has 3 new"},
		{"bad message header", "Messages-Waiting: yes\r\n\r\nSubject hello\r\n", false, "not a header line"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := check([]byte(tt.body))
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refused == "" && n != tt.new:
				t.Fatalf("new messages = %v", n)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused) || !strings.HasPrefix(err.Error(), "400 ")):
				t.Fatalf("got %v, want a 400 saying %q", err, tt.refused)
			}
		})
	}
}

func publish(state []byte, id, ctype, body string, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpPublish, Event: event, Resource: mailbox, State: state,
		Publication: &abi.Publication{ID: id, ContentType: ctype, Body: []byte(body)}, Watchers: ws}
}

// The module as real wasm: the latest publication or set is what watchers
// get, a summary that says the same again notifies nobody, and refusals
// change nothing.
func TestMWIModule(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	if p := m.Manifest().Packages; len(p) != 1 || p[0].Event != event || p[0].Accept[0] != summaryType || p[0].DefaultExpires != 3600 {
		t.Fatalf("manifest %+v", p)
	}
	w := abi.Watcher{ID: "w1", URI: "sip:alice@example.com", Full: true}
	body := func(res *abi.Response) string {
		t.Helper()
		if len(res.Notifications) != 1 || res.Notifications[0].ContentType != summaryType {
			t.Fatalf("notifications %+v", res.Notifications)
		}
		return string(res.Notifications[0].Body)
	}

	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: event, Resource: mailbox, Watchers: []abi.Watcher{w}})
	if got := body(res); got != "Messages-Waiting: no\r\n" {
		t.Fatalf("nothing published: %q", got)
	}
	vm := string(sdktest.Testdata(t, "rfc3842.txt"))
	res = sdktest.Handle(t, m, publish(nil, "p1", summaryType+"; charset=utf-8", vm, w))
	if body(res) != vm {
		t.Fatalf("got %q", body(res))
	}
	state := res.State
	// the same again: stored, nobody notified
	res = sdktest.Handle(t, m, publish(state, "p1", summaryType, vm, w))
	if len(res.Notifications) != 0 {
		t.Fatalf("unchanged summary notified: %+v", res.Notifications)
	}

	for _, c := range []struct {
		req  *abi.Request
		code uint32
	}{
		{publish(state, "p2", "text/plain", vm, w), 415},
		{publish(state, "p2", summaryType, "Messages-Waiting: no\r\nVoice-Message: 1/0\r\n", w), 400},
		{&abi.Request{Op: abi.OpRender, Event: event, Resource: mailbox, State: state,
			Watchers: []abi.Watcher{{ID: "w2", Accept: []string{"application/pidf+xml"}, Full: true}}}, 406},
		{&abi.Request{Op: abi.OpCommand, Event: event, Resource: mailbox, State: state,
			Command: &abi.Command{Name: "set", Args: map[string]string{"video": "1/0"}}}, 400},
		{&abi.Request{Op: abi.OpCommand, Event: event, Resource: mailbox, State: state,
			Command: &abi.Command{Name: "set", Args: map[string]string{"voice": "1/0", "waiting": "no"}}}, 400},
	} {
		r, err := m.Handle(context.Background(), c.req)
		if err != nil || r.Code != c.code || r.StateChanged || len(r.Notifications) != 0 {
			t.Fatalf("want %d and nothing changed, got %+v %v", c.code, r, err)
		}
	}

	// set: the operator's summary is the latest; waiting follows the counts
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpCommand, Event: event, Resource: mailbox, State: state, Watchers: []abi.Watcher{w},
		Command: &abi.Command{Name: "set", Args: map[string]string{"account": "sip:alice@vm.example.com", "voice": "0/3", "fax": "1/0 (1/0)"}}})
	want := "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vm.example.com\r\nVoice-Message: 0/3\r\nFax-Message: 1/0 (1/0)\r\n"
	if got := body(res); got != want || !strings.Contains(res.Reason, "1 watcher(s) notified") {
		t.Fatalf("set: %q, reason %q", got, res.Reason)
	}
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpCommand, Event: event, Resource: mailbox, State: res.State, Watchers: []abi.Watcher{w},
		Command: &abi.Command{Name: "set", Args: map[string]string{"voice": "0/3"}}})
	if got := body(res); got != "Messages-Waiting: no\r\nVoice-Message: 0/3\r\n" {
		t.Fatalf("set without new: %q", got)
	}
	// the voice mail server's publication goes: the operator's stays
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpUnpublish, Event: event, Resource: mailbox, State: res.State,
		Publication: &abi.Publication{ID: "p1"}, Watchers: []abi.Watcher{w}})
	if len(res.Notifications) != 0 {
		t.Fatalf("removing an older publication notified: %+v", res.Notifications)
	}
}
