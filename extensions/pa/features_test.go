package main

import (
	"bytes"
	"context"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/sdk"
	"github.com/presenced/presenced/sdk/sdktest"
)

func bindingReq(state []byte, b abi.Binding, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpBinding, Event: "presence", Resource: resource, State: state,
		Binding: &b, Watchers: ws}
}

func render(state []byte, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource, State: state, Watchers: ws}
}

func TestBindings(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)

	// A registered contact alone shows the presentity open.
	res := sdktest.Handle(t, m, bindingReq(nil, abi.Binding{ID: "b1", Contact: "sip:alice@192.0.2.1:5060", Q: "0.7", ExpiresUnix: 2e9}, watcher("w1")))
	if !res.StateChanged || len(res.State) == 0 {
		t.Fatalf("binding did not change the state: %+v", res)
	}
	body := only(t, res).Body
	ts := find(parse(t, body), nsPIDF, "tuple")
	if len(ts) != 1 || !regexp.MustCompile(`^reg-[0-9a-f]{8}$`).MatchString(ts[0].id) {
		t.Fatalf("tuples = %+v\n%s", ts, body)
	}
	for _, want := range []string{"<basic>open</basic>", `<contact priority="0.7">sip:alice@192.0.2.1:5060</contact>`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("body lacks %s:\n%s", want, body)
		}
	}
	firstID := ts[0].id

	// A second binding without q: its contact has no priority; a refresh of
	// the first with the same values changes nothing.
	res = sdktest.Handle(t, m, bindingReq(res.State, abi.Binding{ID: "b2", Contact: "sip:alice@198.51.100.7"}))
	state := res.State
	res = sdktest.Handle(t, m, bindingReq(state, abi.Binding{ID: "b1", Contact: "sip:alice@192.0.2.1:5060", Q: "0.7", ExpiresUnix: 2e9}, watcher("w1")))
	if res.StateChanged {
		t.Error("an identical refresh changed the state")
	}
	body = only(t, res).Body
	ts = find(parse(t, body), nsPIDF, "tuple")
	if len(ts) != 2 || ts[0].id != firstID || !bytes.Contains(body, []byte("<contact>sip:alice@198.51.100.7</contact>")) {
		t.Fatalf("two bindings: %+v\n%s", ts, body)
	}

	// Registrar tuples follow the published ones.
	res = sdktest.Handle(t, m, publish(state, "p1", sdktest.Testdata(t, "simple.xml"), watcher("w1")))
	ts = find(parse(t, only(t, res).Body), nsPIDF, "tuple")
	if len(ts) != 3 || ts[0].id != "sg89ae" || ts[1].id != firstID {
		t.Fatalf("publication and bindings: %+v", ts)
	}
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpUnpublish, Event: "presence", Resource: resource,
		State: res.State, Publication: &abi.Publication{ID: "p1"}})

	// Removing both leaves nothing: the dummy closed document.
	res = sdktest.Handle(t, m, bindingReq(res.State, abi.Binding{ID: "b1", Removed: true}))
	res = sdktest.Handle(t, m, bindingReq(res.State, abi.Binding{ID: "b2", Removed: true}, watcher("w1")))
	if !res.StateChanged {
		t.Fatal("removal did not change the state")
	}
	body = only(t, res).Body
	if ts := find(parse(t, body), nsPIDF, "tuple"); len(ts) != 1 || ts[0].id != "pa-dummy" || !bytes.Contains(body, []byte("<basic>closed</basic>")) {
		t.Fatalf("all bindings gone: %s", body)
	}
	if r := sdktest.Handle(t, m, bindingReq(res.State, abi.Binding{ID: "b9", Removed: true})); r.StateChanged {
		t.Error("removing an unknown binding changed the state")
	}
}

func TestBindingExpiredOrBadQ(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, bindingReq(nil, abi.Binding{ID: "b1", Contact: "sip:alice@192.0.2.1", Q: "high", ExpiresUnix: 1000}))
	// Not yet expired by the host's clock: shown, without the bad q.
	r := render(res.State, watcher("w1"))
	r.NowUnixNano = 999e9
	if body := only(t, sdktest.Handle(t, m, r)).Body; !bytes.Contains(body, []byte("<contact>sip:alice@192.0.2.1</contact>")) {
		t.Fatalf("live binding: %s", body)
	}
	// Past its expiry, before the host removes it: not shown.
	r.NowUnixNano = 1001e9
	if body := only(t, sdktest.Handle(t, m, r)).Body; !bytes.Contains(body, []byte("pa-dummy")) {
		t.Fatalf("expired binding shown: %s", body)
	}
}

// persons returns the ids of the dm:person elements of a composed body.
func persons(t *testing.T, body []byte) []string {
	var ids []string
	for _, e := range find(parse(t, body), nsDM, "person") {
		ids = append(ids, e.id)
	}
	return ids
}

func TestPersonMerge(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	// linphone's person ulaxua says away, rpid.xml's p1 on the phone.
	res := sdktest.Handle(t, m, publish(nil, "desk", sdktest.Testdata(t, "rpid.xml")))
	res = sdktest.Handle(t, m, publish(res.State, "mobile", sdktest.Testdata(t, "linphone.xml"), watcher("w1")))
	body := only(t, res).Body
	if ps := persons(t, body); len(ps) != 1 || ps[0] != "ulaxua" {
		t.Fatalf("persons = %v, want the most recent publication's ulaxua\n%s", ps, body)
	}
	if !bytes.Contains(body, []byte("<rpid:away/>")) || bytes.Contains(body, []byte("on-the-phone")) {
		t.Fatalf("person is not the most recent one:\n%s", body)
	}
	// Notes of every person are kept, in the winner, once.
	for _, note := range []string{"<dm:note>Back in ten minutes</dm:note>", "<dm:note>In a call with Bob</dm:note>"} {
		if bytes.Count(body, []byte(note)) != 1 {
			t.Errorf("want %s once:\n%s", note, body)
		}
	}
	// Tuples and devices of both are kept.
	es := parse(t, body)
	if len(find(es, nsPIDF, "tuple")) != 2 || len(find(es, nsDM, "device")) != 1 {
		t.Fatalf("tuples or device lost:\n%s", body)
	}

	// Modifying the older publication makes it the most recent: its person
	// wins now, though its tuples keep their place.
	mod := bytes.Replace(sdktest.Testdata(t, "rpid.xml"), []byte("<rp:happy/>"), []byte("<rp:sad/>"), 1)
	res = sdktest.Handle(t, m, publish(res.State, "desk", mod, watcher("w1")))
	body = only(t, res).Body
	if ps := persons(t, body); len(ps) != 1 || ps[0] != "p1" || !bytes.Contains(body, []byte("<rp:sad/>")) {
		t.Fatalf("after modify, persons = %v\n%s", ps, body)
	}
	if ts := find(parse(t, body), nsPIDF, "tuple"); ts[0].id != "sg89ae" || ts[1].id != "qmpb6e" {
		t.Fatalf("tuple order changed on modify: %+v", ts)
	}
	// The merged note sits before the winner's timestamp, in its prefix.
	if !inOrder(body, "<dm:note>In a call with Bob</dm:note>", "<dm:note>Back in ten minutes</dm:note>", "</dm:person>") {
		t.Errorf("merged note not after the winner's own:\n%s", body)
	}

	// Unpublishing the winner hands the person back.
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpUnpublish, Event: "presence", Resource: resource,
		State: res.State, Publication: &abi.Publication{ID: "desk"}, Watchers: []abi.Watcher{watcher("w1")}})
	if ps := persons(t, only(t, res).Body); len(ps) != 1 || ps[0] != "ulaxua" {
		t.Fatalf("after unpublish, persons = %v", ps)
	}
}

func TestPersonMergeKeepsTimestampLast(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	res := sdktest.Handle(t, m, publish(nil, "a", sdktest.Testdata(t, "linphone.xml")))
	body := bytes.ReplaceAll(sdktest.Testdata(t, "rfc4480.xml"), []byte("pres:someone@example.com"), []byte(resource))
	res = sdktest.Handle(t, m, publish(res.State, "b", body, watcher("w1")))
	out := only(t, res).Body
	if !inOrder(out, "<dm:note>Scoring 120</dm:note>", "<dm:note>Back in ten minutes</dm:note>", "<dm:timestamp>", "</dm:person>") {
		t.Fatalf("note not merged before the timestamp:\n%s", out)
	}
}

// inOrder reports whether each of ss occurs in body, once, in that order.
func inOrder(body []byte, ss ...string) bool {
	last := -1
	for _, s := range ss {
		i := bytes.Index(body, []byte(s))
		if i <= last || bytes.Count(body, []byte(s)) != 1 {
			return false
		}
		last = i
	}
	return true
}

func TestLenientBasic(t *testing.T) {
	bad := sdktest.Testdata(t, "bad-basic.xml")
	strict := sdktest.Load(t, pkg, nil)
	res, err := strict.Handle(context.Background(), publish(nil, "p1", bad))
	if err != nil || res.Code != 400 || !strings.Contains(res.Reason, `"busy"`) {
		t.Fatalf("strict: %v %+v", err, res)
	}

	lenient := sdktest.Load(t, pkg, map[string]string{"lenient_basic": "true"})
	res = sdktest.Handle(t, lenient, publish(nil, "p1", bad, watcher("w1")))
	body := only(t, res).Body
	if !bytes.Contains(body, []byte("<basic>closed</basic>")) || bytes.Contains(body, []byte("busy")) {
		t.Fatalf("lenient: %s", body)
	}
	// Stored as closed: a render from the state says the same.
	if body := only(t, sdktest.Handle(t, lenient, render(res.State, watcher("w1")))).Body; !bytes.Contains(body, []byte("<basic>closed</basic>")) {
		t.Fatalf("lenient render: %s", body)
	}
	// Other errors are still errors.
	res, _ = lenient.Handle(context.Background(), publish(nil, "p1", sdktest.Testdata(t, "bad-tuple-status.xml")))
	if res.Code != 400 {
		t.Fatalf("lenient let a tuple without status through: %+v", res)
	}
}

func w(id, uri, status string) abi.Watcher {
	return abi.Watcher{ID: id, URI: uri, Full: true, Status: status}
}

func TestPolicy(t *testing.T) {
	type want struct {
		status string
		body   bool
	}
	tests := []struct {
		name string
		cfg  map[string]string
		ws   []abi.Watcher
		want []want
	}{
		{"allow", nil,
			[]abi.Watcher{w("1", "sip:bob@example.org", ""), w("2", "sip:carol@example.org", "active"), w("3", "sip:dave@example.org", "pending")},
			[]want{{"active", true}, {"", true}, {"", false}}},
		{"same-domain", map[string]string{"policy": "same-domain"},
			[]abi.Watcher{w("1", "sip:bob@EXAMPLE.com:5060", ""), w("2", "sip:eve@example.org", ""), w("3", "sips:bob@example.com;transport=tls", "")},
			[]want{{"active", true}, {"pending", false}, {"active", true}}},
		{"confirm", map[string]string{"policy": "confirm"},
			[]abi.Watcher{w("1", "sip:bob@example.com", ""), w("2", "sip:alice@example.com", ""), w("3", "sip:bob@example.com", "active")},
			[]want{{"pending", false}, {"active", true}, {"", true}}},
		{"lists", map[string]string{"policy": "confirm", "allow": "sip:bob@example.org, example.net", "block": "sip:mallory@example.net,spam.example"},
			[]abi.Watcher{w("1", "sip:bob@example.org", ""), w("2", "sip:x@example.net", ""), w("3", "sip:mallory@example.net", ""),
				w("4", "sip:a@spam.example", ""), w("5", "sip:a@spam.example", "active"), w("6", "sip:carol@example.org", "")},
			[]want{{"active", true}, {"active", true}, {"rejected", false}, {"rejected", false}, {"", true}, {"pending", false}}},
		// The presentity itself comes before the config's block of its
		// own domain.
		{"self over a block", map[string]string{"block": "example.com"},
			[]abi.Watcher{w("1", "sip:bob@example.com", ""), w("2", "sip:alice@example.com;transport=tcp", ""), w("3", "sip:bob@example.org", "")},
			[]want{{"rejected", false}, {"active", true}, {"active", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sdktest.Load(t, pkg, tt.cfg)
			for _, op := range []string{"render", "publish", "binding"} {
				var req *abi.Request
				switch op {
				case "render":
					req = render(nil, tt.ws...)
				case "publish":
					req = publish(nil, "p1", sdktest.Testdata(t, "simple.xml"), tt.ws...)
				case "binding":
					req = bindingReq(nil, abi.Binding{ID: "b1", Contact: "sip:alice@192.0.2.1"}, tt.ws...)
				}
				res := sdktest.Handle(t, m, req)
				if len(res.Notifications) != len(tt.ws) {
					t.Fatalf("%s: notifications = %+v", op, res.Notifications)
				}
				for i, n := range res.Notifications {
					if n.WatcherID != tt.ws[i].ID || n.Status != tt.want[i].status || (len(n.Body) > 0) != tt.want[i].body ||
						(n.ContentType != "") != tt.want[i].body {
						t.Errorf("%s: watcher %s (%s, %q): got status %q, body %d bytes %q; want %+v",
							op, tt.ws[i].ID, tt.ws[i].URI, tt.ws[i].Status, n.Status, len(n.Body), n.ContentType, tt.want[i])
					}
				}
			}
		})
	}
}

func command(state []byte, name string, args map[string]string, ws ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpCommand, Event: "presence", Resource: resource, State: state,
		Command: &abi.Command{Name: name, Args: args}, Watchers: ws}
}

func TestCommands(t *testing.T) {
	m := sdktest.Load(t, pkg, map[string]string{"policy": "confirm"})
	res := sdktest.Handle(t, m, publish(nil, "p1", sdktest.Testdata(t, "simple.xml")))

	bob := map[string]string{"watcher": "sip:bob@example.org"}
	res = sdktest.Handle(t, m, command(res.State, "approve", bob,
		w("1", "sip:bob@example.org", "pending"), w("2", "sip:carol@example.org", "pending"), w("3", "sip:bob@example.org", "active")))
	if !res.StateChanged || len(res.Notifications) != 1 {
		t.Fatalf("approve: %+v", res)
	}
	if n := res.Notifications[0]; n.WatcherID != "1" || n.Status != "active" || n.ContentType != pidfType ||
		!bytes.Contains(n.Body, []byte("<basic>open</basic>")) {
		t.Fatalf("approve notification = %+v", n)
	}
	state := res.State
	// The approval is remembered: bob's next subscription is active at once.
	n := only(t, sdktest.Handle(t, m, render(state, w("w1", "sip:bob@example.org", ""))))
	if n.Status != "active" || len(n.Body) == 0 {
		t.Fatalf("approved watcher subscribing again: %+v", n)
	}
	// Approving again changes nothing.
	if r := sdktest.Handle(t, m, command(state, "approve", bob)); r.StateChanged {
		t.Error("approving twice changed the state")
	}

	res = sdktest.Handle(t, m, command(state, "reject", bob,
		w("1", "sip:bob@example.org", "active"), w("2", "sip:bob@example.org;transport=tcp", "pending"), w("3", "sip:carol@example.org", "pending")))
	if !res.StateChanged || len(res.Notifications) != 2 {
		t.Fatalf("reject: %+v", res)
	}
	for _, n := range res.Notifications {
		if n.Status != "rejected" || n.Body != nil || n.ContentType != "" {
			t.Fatalf("reject notification = %+v", n)
		}
	}
	// Rejection replaces the approval.
	if n := only(t, sdktest.Handle(t, m, render(res.State, w("w1", "sip:bob@example.org", "")))); n.Status != "rejected" || n.Body != nil {
		t.Fatalf("rejected watcher subscribing again: %+v", n)
	}

	for _, c := range []struct {
		name string
		args map[string]string
	}{
		{"block", bob},
		{"approve", nil},
		{"approve", map[string]string{"watcher": " "}},
		{"reject", map[string]string{"watcher": "bob@"}},
	} {
		res, err := m.Handle(context.Background(), command(state, c.name, c.args))
		if err != nil || res.Code != 400 || res.Reason == "" || res.StateChanged {
			t.Errorf("%s %v: %v %+v, want 400", c.name, c.args, err, res)
		}
	}
}

func winfoSub(id string, state []byte, full bool) abi.Watcher {
	return abi.Watcher{ID: id, URI: "sip:alice@example.com", Full: full, State: state}
}

func watcherEvent(state []byte, ev abi.WatcherEvent, now int64, subs ...abi.Watcher) *abi.Request {
	return &abi.Request{Op: abi.OpWatcherEvent, Event: "presence.winfo", Resource: resource, State: state,
		WatcherEvent: &ev, Watchers: subs, NowUnixNano: now * 1e9}
}

func TestWatcherInfo(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	const now = 1_000_000

	// The presentity subscribes to its winfo: full, version 0, nobody yet.
	res := sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "presence.winfo", Resource: resource,
		Watchers: []abi.Watcher{winfoSub("s1", nil, true)}, NowUnixNano: now * 1e9})
	n := only2(t, res, "s1")
	if res.StateChanged || n.ContentType != winfoType || n.Partial || n.Status != "" || !n.StateChanged {
		t.Fatalf("first winfo notify = %+v", n)
	}
	want := `<?xml version="1.0" encoding="UTF-8"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">
<watcher-list resource="sip:alice@example.com" package="presence">
</watcher-list>
</watcherinfo>
`
	if string(n.Body) != want {
		t.Fatalf("full document:\n%s\nwant\n%s", n.Body, want)
	}
	sub := n.State

	// Bob subscribes and is pending: a partial document, version 1.
	res = sdktest.Handle(t, m, watcherEvent(nil, abi.WatcherEvent{ID: "d1", URI: "sip:bob@example.org", Status: "pending",
		Event: "subscribe", Duration: 0, Expires: 3600}, now, winfoSub("s1", sub, false)))
	n = only2(t, res, "s1")
	want = `<?xml version="1.0" encoding="UTF-8"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="partial">
<watcher-list resource="sip:alice@example.com" package="presence">
<watcher id="d1" event="subscribe" status="pending" duration-subscribed="0" expiration="3600">sip:bob@example.org</watcher>
</watcher-list>
</watcherinfo>
`
	if !res.StateChanged || !n.Partial || string(n.Body) != want {
		t.Fatalf("partial document (changed %v, partial %v):\n%s\nwant\n%s", res.StateChanged, n.Partial, n.Body, want)
	}
	sub = n.State

	// Carol is approved: version 2, only Carol in it.
	res = sdktest.Handle(t, m, watcherEvent(res.State, abi.WatcherEvent{ID: "d2", URI: "sip:carol@example.org", Status: "active",
		Event: "approved", Duration: 5, Expires: 3595}, now, winfoSub("s1", sub, false)))
	n = only2(t, res, "s1")
	if !strings.Contains(string(n.Body), `version="2" state="partial"`) || strings.Contains(string(n.Body), "bob") ||
		!strings.Contains(string(n.Body), `<watcher id="d2" event="approved" status="active" duration-subscribed="5" expiration="3595">sip:carol@example.org</watcher>`) {
		t.Fatalf("second partial:\n%s", n.Body)
	}
	sub, state := n.State, res.State

	// A refresh 100 s later: full, version 3, both, aged.
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "presence.winfo", Resource: resource, State: state,
		Watchers: []abi.Watcher{winfoSub("s1", sub, true)}, NowUnixNano: (now + 100) * 1e9})
	n = only2(t, res, "s1")
	for _, s := range []string{`version="3" state="full"`,
		`<watcher id="d1" event="subscribe" status="pending" duration-subscribed="100" expiration="3500">sip:bob@example.org</watcher>`,
		`<watcher id="d2" event="approved" status="active" duration-subscribed="105" expiration="3495">sip:carol@example.org</watcher>`} {
		if !strings.Contains(string(n.Body), s) {
			t.Fatalf("refresh lacks %s:\n%s", s, n.Body)
		}
	}
	sub = n.State

	// Bob's subscription times out: reported once, terminated, then gone.
	res = sdktest.Handle(t, m, watcherEvent(state, abi.WatcherEvent{ID: "d1", URI: "sip:bob@example.org", Status: "terminated",
		Event: "timeout", Duration: 3600}, now+3600, winfoSub("s1", sub, false)))
	n = only2(t, res, "s1")
	if !strings.Contains(string(n.Body), `version="4" state="partial"`) ||
		!strings.Contains(string(n.Body), `<watcher id="d1" event="timeout" status="terminated" duration-subscribed="3600">sip:bob@example.org</watcher>`) {
		t.Fatalf("terminated partial:\n%s", n.Body)
	}
	res = sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "presence.winfo", Resource: resource, State: res.State,
		Watchers: []abi.Watcher{winfoSub("s2", nil, true)}, NowUnixNano: (now + 3600) * 1e9})
	n = only2(t, res, "s2")
	if strings.Contains(string(n.Body), "bob") || !strings.Contains(string(n.Body), "carol") || !strings.Contains(string(n.Body), `version="0"`) {
		t.Fatalf("after termination, a new subscriber sees:\n%s", n.Body)
	}
}

func only2(t *testing.T, res *abi.Response, id string) abi.Notification {
	t.Helper()
	if len(res.Notifications) != 1 || res.Notifications[0].WatcherID != id {
		t.Fatalf("notifications = %+v", res.Notifications)
	}
	return res.Notifications[0]
}

func TestWatcherInfoRefusals(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	handle := func(req *abi.Request) *abi.Response {
		res, err := m.Handle(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := handle(&abi.Request{Op: abi.OpRender, Event: "presence.winfo", Resource: resource,
		Watchers: []abi.Watcher{{ID: "s1", URI: "sip:bob@example.com", Full: true}}})
	if res.Code != 403 || res.Reason != "only the presentity may watch its watchers" {
		t.Fatalf("non-owner: %d %q", res.Code, res.Reason)
	}
	// The presentity, however written.
	res = handle(&abi.Request{Op: abi.OpRender, Event: "presence.winfo", Resource: resource,
		Watchers: []abi.Watcher{{ID: "s1", URI: "<sips:alice@EXAMPLE.COM:5061>;tag=x", Full: true}}})
	if res.Code != 0 {
		t.Fatalf("owner refused: %d %q", res.Code, res.Reason)
	}
	res = handle(&abi.Request{Op: abi.OpRender, Event: "presence.winfo", Resource: resource,
		Watchers: []abi.Watcher{{ID: "s1", URI: resource, Full: true, Accept: []string{"application/pidf+xml"}}}})
	if res.Code != 406 {
		t.Fatalf("Accept without watcherinfo: %d %q", res.Code, res.Reason)
	}
	res = handle(&abi.Request{Op: abi.OpPublish, Event: "presence.winfo", Resource: resource,
		Publication: &abi.Publication{ID: "p1", ContentType: winfoType, Body: []byte("<x/>")}})
	if res.Code != 489 {
		t.Fatalf("publish to winfo: %d %q", res.Code, res.Reason)
	}
	// A watcher event for the presence package is a host bug, not input.
	_, err := m.Handle(context.Background(), &abi.Request{Op: abi.OpWatcherEvent, Event: "presence", Resource: resource,
		WatcherEvent: &abi.WatcherEvent{ID: "d1", URI: "sip:bob@example.com", Status: "active", Event: "subscribe"}})
	if err == nil {
		t.Fatal("watcher event for presence did not fail")
	}
}

// TestClientDocuments publishes documents as the RFCs and real clients
// write them, alone and all together, and re-parses what watchers get.
func TestClientDocuments(t *testing.T) {
	m := sdktest.Load(t, pkg, nil)
	tests := []struct {
		file    string
		tuples  []string
		persons int
		has     []string
	}{
		{"rfc3863-minimal.xml", []string{"sg89ae"}, 0, []string{`<contact priority="0.8">tel:+09012345678</contact>`}},
		{"rfc3863-extended.xml", []string{"bs35r9", "eg92n8"}, 0, []string{"<im:im>busy</im:im>", "<myex:location>home</myex:location>",
			`<note xml:lang="fr">Ne dérangez pas, s'il vous plaît</note>`, "<note>I'll be in Tokyo next week</note>"}},
		{"rfc4480.xml", []string{"bs35r9", "ty4658", "eg92n8"}, 1, []string{"<lt:residence/>", "<rpid:away/>", `<dm:device id="pc147">`}},
		{"linphone.xml", []string{"qmpb6e"}, 1, []string{"<rpid:away/>", "<timestamp>2026-01-05T09:30:47Z</timestamp>"}},
		{"baresip.xml", []string{"t4109"}, 1, []string{"<note>Online</note>", "<rpid:activities/>"}},
	}
	var state []byte
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := bytes.ReplaceAll(sdktest.Testdata(t, tt.file), []byte("pres:someone@example.com"), []byte(resource))
			res := sdktest.Handle(t, m, publish(nil, "p1", body, watcher("w1")))
			out := only(t, res).Body
			es := parse(t, out)
			var ids []string
			for _, e := range find(es, nsPIDF, "tuple") {
				ids = append(ids, e.id)
			}
			if strings.Join(ids, " ") != strings.Join(tt.tuples, " ") || len(find(es, nsDM, "person")) != tt.persons {
				t.Fatalf("tuples %v, persons %d; want %v, %d\n%s", ids, len(find(es, nsDM, "person")), tt.tuples, tt.persons, out)
			}
			for _, s := range tt.has {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("lacks %s:\n%s", s, out)
				}
			}
			state = sdktest.Handle(t, m, publish(state, tt.file, body)).State
		})
	}
	// All five at once: one person (baresip's, the last), every tuple, ids unique.
	out := only(t, sdktest.Handle(t, m, render(state, watcher("w1")))).Body
	es := parse(t, out)
	seen := map[string]bool{}
	for _, e := range es {
		if e.id != "" && seen[e.id] {
			t.Fatalf("id %q twice:\n%s", e.id, out)
		}
		seen[e.id] = true
	}
	if ps := persons(t, out); len(ps) != 1 || ps[0] != "p4159" || len(find(es, nsPIDF, "tuple")) != 8 {
		t.Fatalf("composed: persons %v, %d tuples\n%s", ps, len(find(es, nsPIDF, "tuple")), out)
	}
	for _, note := range []string{"<dm:note>Scoring 120</dm:note>", "<dm:note>Back in ten minutes</dm:note>"} {
		if !bytes.Contains(out, []byte(note)) {
			t.Errorf("merged person lacks %s:\n%s", note, out)
		}
	}
}

// TestReuseUntil: a full rendering is anyone's under the default policy,
// until the first registration it shows expires; under a block list only
// a watcher already decided has one to share, and a change for every
// watcher (not full) offers none.
func TestReuseUntil(t *testing.T) {
	render := func(m *sdktest.Module, state []byte, w abi.Watcher) abi.Notification {
		t.Helper()
		return only(t, sdktest.Handle(t, m, &abi.Request{Op: abi.OpRender, Event: "presence", Resource: resource,
			State: state, Watchers: []abi.Watcher{w}, NowUnixNano: 1e18}))
	}
	m := sdktest.Load(t, pkg, nil)
	if n := render(m, nil, watcher("w1")); n.ReuseUntilUnixNano != math.MaxInt64 {
		t.Errorf("dummy document: reuse until %d, want forever", n.ReuseUntilUnixNano)
	}
	res := sdktest.Handle(t, m, bindingReq(nil, abi.Binding{ID: "b1", Contact: "sip:alice@192.0.2.1", ExpiresUnix: 2e9}))
	res = sdktest.Handle(t, m, bindingReq(res.State, abi.Binding{ID: "b2", Contact: "sip:alice@192.0.2.2", ExpiresUnix: 3e9}))
	state := res.State
	if n := render(m, state, watcher("w1")); n.ReuseUntilUnixNano != 2e18 {
		t.Errorf("with bindings expiring at 2e9 and 3e9 s: reuse until %d, want 2e18", n.ReuseUntilUnixNano)
	}
	changed := watcher("w1")
	changed.Full, changed.Status = false, sdk.StatusActive
	if n := render(m, state, changed); n.ReuseUntilUnixNano != 0 {
		t.Errorf("a change's rendering offered reuse until %d", n.ReuseUntilUnixNano)
	}

	blocking := sdktest.Load(t, pkg, map[string]string{"block": "sip:mallory@example.com"})
	if n := render(blocking, state, watcher("w1")); n.ReuseUntilUnixNano != 0 || n.Status != sdk.StatusActive {
		t.Errorf("new watcher under a block list: status %q, reuse until %d, want active and none", n.Status, n.ReuseUntilUnixNano)
	}
	decided := watcher("w1")
	decided.Status = sdk.StatusActive
	if n := render(blocking, state, decided); n.ReuseUntilUnixNano != 2e18 {
		t.Errorf("refresh of an active watcher under a block list: reuse until %d, want 2e18", n.ReuseUntilUnixNano)
	}
}
