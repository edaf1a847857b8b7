package server_test

import (
	"encoding/xml"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/internal/admin"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/rls"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

const (
	friends = "sip:friends@example.com"
	bob     = "sip:bob@example.com"
	carol   = "sip:carol@example.com"
	watcher = "sip:watcher@example.com"
)

var friendsList = rls.List{URI: friends, Members: []rls.Member{{URI: alice, Name: "Alice"}, {URI: bob}, {URI: carol}}}

// startLists is a fixture whose server serves lists, with pa asking each
// presentity to confirm its watchers.
func startLists(t *testing.T, st store.Store, throttle time.Duration, mod *extension.Module, lists ...rls.List) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv := startWith(t, server.Options{
		Listen:  []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: []*extension.Module{mod}, Store: st, Logger: log,
		Lists: lists, ListThrottle: throttle,
	})
	return &fixture{srv: srv, store: st, addr: map[string]string{"UDP": addrOf(srv, "udp")}, mods: []*extension.Module{mod}}
}

func confirmingPA(t *testing.T) *extension.Module {
	return extensiontest.Load(t, paPkg, map[string]string{"policy": "confirm"})
}

func approve(t *testing.T, f *fixture, presentity string) {
	t.Helper()
	if _, err := f.srv.Command("presence", presentity, "approve", map[string]string{"watcher": watcher}); err != nil {
		t.Fatal(err)
	}
}

var eventlist = []string{"Supported: eventlist", "Accept: multipart/related, application/rlmi+xml, application/pidf+xml", "Expires: 600"}

// listNotify is a list NOTIFY read: its RLMI document and its parts by
// Content-ID.
type listNotify struct {
	req      *sip.Request
	Version  int    `xml:"version,attr"`
	Full     bool   `xml:"fullState,attr"`
	URI      string `xml:"uri,attr"`
	Resource []struct {
		URI      string `xml:"uri,attr"`
		Instance []struct {
			ID     string `xml:"id,attr"`
			State  string `xml:"state,attr"`
			Reason string `xml:"reason,attr"`
			CID    string `xml:"cid,attr"`
		} `xml:"instance"`
	} `xml:"resource"`
	parts map[string]string
}

func readList(t *testing.T, n *sip.Request) *listNotify {
	t.Helper()
	mt, params, err := mime.ParseMediaType(siptest.Header(n, "Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != "application/rlmi+xml" {
		t.Fatalf("list NOTIFY Content-Type %q (%v):\n%s", siptest.Header(n, "Content-Type"), err, n)
	}
	ln := &listNotify{req: n, parts: map[string]string{}}
	mr := multipart.NewReader(strings.NewReader(string(n.Body())), params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v\n%s", i, err, n.Body())
		}
		b, _ := io.ReadAll(p)
		cid := strings.Trim(p.Header.Get("Content-ID"), "<>")
		if i == 0 {
			if "<"+cid+">" != params["start"] || xml.Unmarshal(b, ln) != nil {
				t.Fatalf("first part is not the RLMI root %s:\n%s", params["start"], b)
			}
			continue
		}
		ln.parts[cid] = string(b)
	}
	return ln
}

// instance is the one instance of member uri: its state and its document
// ("" if none is carried).
func (ln *listNotify) instance(t *testing.T, uri string) (state, doc string) {
	t.Helper()
	for _, r := range ln.Resource {
		if r.URI == uri {
			if len(r.Instance) != 1 {
				t.Fatalf("%s has %d instances", uri, len(r.Instance))
			}
			in := r.Instance[0]
			if in.CID != "" && ln.parts[in.CID] == "" {
				t.Fatalf("%s names part %s, which is not there", uri, in.CID)
			}
			return in.State, ln.parts[in.CID]
		}
	}
	t.Fatalf("no resource %s in:\n%s", uri, ln.req.Body())
	return "", ""
}

// A list of three, two of them published and approving the watcher: the
// first NOTIFY has all three, full state, the two PIDFs beside the RLMI
// and the third pending; a PUBLISH sends that member alone; the third's
// approval makes its instance active; a refresh is full state again. A
// SUBSCRIBE without eventlist gets 421.
func TestResourceList(t *testing.T) {
	f := startLists(t, store.NewMemory(), 0, confirmingPA(t), friendsList)
	approve(t, f, alice)
	approve(t, f, bob)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "a1", "open", "alice here")), 200)
	r := p.Publish("presence", bob, "application/pidf+xml", pidf(bob, "b1", "open", "bob here"))
	siptest.WantCode(t, r, 200)
	bobTag := siptest.Header(r, "SIP-ETag")

	_, r = w.Subscribe("presence", friends, "Accept: multipart/related, application/rlmi+xml, application/pidf+xml")
	siptest.WantCode(t, r, 421)
	if siptest.Header(r, "Require") != "eventlist" {
		t.Fatalf("421 without Require: eventlist:\n%s", r)
	}
	_, r = w.Subscribe("presence", friends, "Supported: eventlist", "Accept: application/pidf+xml")
	siptest.WantCode(t, r, 406)

	sub, r := w.Subscribe("presence", friends, eventlist...)
	siptest.WantCode(t, r, 200)
	if siptest.Header(r, "Require") != "eventlist" {
		t.Fatalf("200 without Require: eventlist:\n%s", r)
	}
	ln := readList(t, w.Notify())
	if ln.Version != 1 || !ln.Full || ln.URI != friends || len(ln.Resource) != 3 || len(ln.parts) != 2 {
		t.Fatalf("first NOTIFY: version %d full %t, %d resources, %d parts:\n%s", ln.Version, ln.Full, len(ln.Resource), len(ln.parts), ln.req.Body())
	}
	if st, doc := ln.instance(t, alice); st != "active" || !strings.Contains(doc, "alice here") {
		t.Fatalf("alice: %s\n%s", st, doc)
	}
	if st, doc := ln.instance(t, bob); st != "active" || !strings.Contains(doc, "bob here") {
		t.Fatalf("bob: %s\n%s", st, doc)
	}
	if st, doc := ln.instance(t, carol); st != "pending" || doc != "" {
		t.Fatalf("carol: %s\n%s", st, doc)
	}

	siptest.WantCode(t, p.Publish("presence", bob, "application/pidf+xml", pidf(bob, "b1", "closed", "bob gone"), "SIP-If-Match: "+bobTag), 200)
	ln = readList(t, w.Notify())
	if ln.Version != 2 || ln.Full || len(ln.Resource) != 1 || len(ln.parts) != 1 {
		t.Fatalf("NOTIFY after bob's PUBLISH: version %d full %t:\n%s", ln.Version, ln.Full, ln.req.Body())
	}
	if st, doc := ln.instance(t, bob); st != "active" || !strings.Contains(doc, "bob gone") {
		t.Fatalf("bob: %s\n%s", st, doc)
	}

	approve(t, f, carol)
	ln = readList(t, w.Notify())
	if ln.Version != 3 || ln.Full || len(ln.Resource) != 1 {
		t.Fatalf("NOTIFY after carol's approval: version %d full %t:\n%s", ln.Version, ln.Full, ln.req.Body())
	}
	if st, doc := ln.instance(t, carol); st != "active" || !strings.Contains(doc, carol) {
		t.Fatalf("carol: %s\n%s", st, doc)
	}

	siptest.WantCode(t, sub.Again(eventlist...), 200)
	ln = readList(t, w.Notify())
	if ln.Version != 4 || !ln.Full || len(ln.Resource) != 3 || len(ln.parts) != 3 {
		t.Fatalf("NOTIFY after a refresh: version %d full %t, %d parts:\n%s", ln.Version, ln.Full, len(ln.parts), ln.req.Body())
	}
	siptest.WantCode(t, sub.Again("Expires: 0"), 200)
	n := w.Notify()
	if !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "terminated") {
		t.Fatalf("NOTIFY after unsubscribe:\n%s", n)
	}
	if subs := f.srv.Subscriptions(server.Filter{}); len(subs) != 0 {
		t.Fatalf("subscriptions left after the unsubscribe: %+v", subs)
	}
}

// A list made, grown and shrunk through the admin API: each change
// reaches its subscriber as a full-state NOTIFY; an edit of a list of the
// rls-services file is refused (409), and so is a member twice.
func TestResourceListChangedByAdminAPI(t *testing.T) {
	f := startLists(t, store.NewMemory(), 0, extensiontest.Load(t, paPkg, nil), friendsList)
	api := admin.New(f.srv, admin.Options{})
	call := func(method, path, body string) int {
		t.Helper()
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec.Code
	}
	mates := "sip:mates@example.com"
	if code := call("POST", "/v1/lists", `{"uri":"`+mates+`","members":[{"uri":"`+alice+`"}]}`); code != 204 {
		t.Fatalf("create: %d", code)
	}
	w := f.peer(t, "UDP")
	_, r := w.Subscribe("presence", mates, eventlist...)
	siptest.WantCode(t, r, 200)
	if ln := readList(t, w.Notify()); ln.Version != 1 || len(ln.Resource) != 1 {
		t.Fatalf("first NOTIFY:\n%s", ln.req.Body())
	}
	if code := call("POST", "/v1/lists/members/add", `{"list":"`+mates+`","uri":"`+bob+`","name":"Bob"}`); code != 204 {
		t.Fatalf("add: %d", code)
	}
	ln := readList(t, w.Notify())
	if ln.Version != 2 || !ln.Full || len(ln.Resource) != 2 {
		t.Fatalf("NOTIFY after bob was added: version %d full %t:\n%s", ln.Version, ln.Full, ln.req.Body())
	}
	if st, _ := ln.instance(t, bob); st != "active" {
		t.Fatalf("bob is %s", st)
	}
	if code := call("POST", "/v1/lists/members/remove", `{"list":"`+mates+`","uri":"`+alice+`"}`); code != 204 {
		t.Fatalf("remove: %d", code)
	}
	if ln = readList(t, w.Notify()); ln.Version != 3 || len(ln.Resource) != 1 || ln.Resource[0].URI != bob {
		t.Fatalf("NOTIFY after alice was removed:\n%s", ln.req.Body())
	}
	if code := call("POST", "/v1/lists/members/add", `{"list":"`+mates+`","uri":"`+bob+`"}`); code != 409 {
		t.Fatalf("bob added twice: %d", code)
	}
	if code := call("POST", "/v1/lists/members/add", `{"list":"`+friends+`","uri":"`+bob+`"}`); code != 409 {
		t.Fatalf("a list of the rls-services file changed through the API: %d", code)
	}
	if code := call("POST", "/v1/lists", `{"uri":"`+mates+`","members":[{"uri":"tel:+1"}]}`); code != 400 {
		t.Fatalf("a tel: member: %d", code)
	}
	if code := call("DELETE", "/v1/lists/"+mates, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if n := w.Notify(); siptest.Header(n, "Subscription-State") != "terminated;reason=noresource" {
		t.Fatalf("NOTIFY after the list was deleted:\n%s", n)
	}
}

// A list subscription outlives a restart: same dialog, CSeq rising, the
// full state sent again one version up, and the next change one above
// that; a list made by an operator is kept too.
func TestResourceListRestart(t *testing.T) {
	st := store.NewMemory()
	mod := extensiontest.Load(t, paPkg, nil)
	first := startLists(t, st, 0, mod)
	mates := "sip:mates@example.com"
	if err := first.srv.PutList(rls.List{URI: mates, Members: []rls.Member{{URI: alice}, {URI: bob}}}); err != nil {
		t.Fatal(err)
	}
	p, w := first.peer(t, "UDP"), first.peer(t, "UDP")
	sub, r := w.Subscribe("presence", mates, eventlist...)
	siptest.WantCode(t, r, 200)
	readList(t, w.Notify())
	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "a1", "open", "before")), 200)
	n := w.Notify()
	if ln := readList(t, n); ln.Version != 2 {
		t.Fatalf("second NOTIFY version %d", ln.Version)
	}
	cseq := n.CSeq().SeqNo
	first.srv.Close()

	second := startLists(t, st, 0, mod)
	w.SetServer(second.addr["UDP"])
	n = w.Notify()
	ln := readList(t, n)
	if ln.Version != 3 || !ln.Full || len(ln.Resource) != 2 || siptest.Header(n, "Call-ID") != sub.CallID || n.CSeq().SeqNo <= cseq {
		t.Fatalf("after the restart: version %d full %t CSeq %d (was %d):\n%s", ln.Version, ln.Full, n.CSeq().SeqNo, cseq, n)
	}
	if _, doc := ln.instance(t, alice); !strings.Contains(doc, "before") {
		t.Fatalf("alice after the restart:\n%s", doc)
	}
	p2 := second.peer(t, "UDP")
	siptest.WantCode(t, p2.Publish("presence", bob, "application/pidf+xml", pidf(bob, "b1", "open", "after")), 200)
	if ln := readList(t, w.Notify()); ln.Version != 4 || ln.Full || len(ln.Resource) != 1 {
		t.Fatalf("after the restart, bob's PUBLISH: version %d full %t:\n%s", ln.Version, ln.Full, ln.req.Body())
	}
	sub.Peer = w
	siptest.WantCode(t, sub.Again(eventlist...), 200)
	if ln := readList(t, w.Notify()); ln.Version != 5 || !ln.Full {
		t.Fatalf("refresh after the restart: version %d", ln.Version)
	}
}

// With a throttle window, a burst of member changes reaches the
// subscriber as one NOTIFY with every member that changed (RFC 4662 §6).
func TestResourceListThrottle(t *testing.T) {
	f := startLists(t, store.NewMemory(), 400*time.Millisecond, extensiontest.Load(t, paPkg, nil), friendsList)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	_, r := w.Subscribe("presence", friends, eventlist...)
	siptest.WantCode(t, r, 200)
	readList(t, w.Notify())
	r = p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "a1", "open", "one"))
	siptest.WantCode(t, r, 200)
	siptest.WantCode(t, p.Publish("presence", bob, "application/pidf+xml", pidf(bob, "b1", "open", "two")), 200)
	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "a1", "open", "three"), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag")), 200)
	ln := readList(t, w.Notify())
	if ln.Version != 2 || ln.Full || len(ln.Resource) != 2 {
		t.Fatalf("throttled NOTIFY: version %d full %t:\n%s", ln.Version, ln.Full, ln.req.Body())
	}
	if _, doc := ln.instance(t, alice); !strings.Contains(doc, "three") {
		t.Fatalf("alice in the throttled NOTIFY:\n%s", doc)
	}
	w.Quiet(600 * time.Millisecond)
}

// A list of the dialog package (RFC 4235, extensions/dialog): a busy lamp
// field of two lines as one subscription. The first NOTIFY carries each
// member's dialog-info document beside the RLMI, the busy line's dialog
// and the idle one's empty document, each at the module's first version;
// a PBX's PUBLISH for the idle line sends that member alone, its
// dialog-info one version up, which the list keeps per member as the
// module's per-watcher state. The list's <packages> names dialog only: a
// presence SUBSCRIBE to it gets 489 though pa serves presence here.
func TestResourceListOfDialogs(t *testing.T) {
	const infoType = "application/dialog-info+xml"
	lines := rls.List{URI: "sip:lines@example.com", Packages: []string{"dialog"},
		Members: []rls.Member{{URI: bob, Name: "Bob"}, {URI: carol}}}
	mods := []*extension.Module{extensiontest.Load(t, "github.com/presenced/presenced/extensions/dialog", nil), extensiontest.Load(t, paPkg, nil)}
	srv := startWith(t, server.Options{Listen: []server.Listener{{Transport: "udp", Address: "127.0.0.1:0"}},
		Modules: mods, Store: store.NewMemory(), Lists: []rls.List{lines}})
	f := &fixture{srv: srv, addr: map[string]string{"UDP": addrOf(srv, "udp")}, mods: mods}
	info := func(entity, dialogs string) string {
		return `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="` +
			entity + `">` + dialogs + `</dialog-info>`
	}
	pbx, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	siptest.WantCode(t, pbx.Publish("dialog", bob, infoType, info(bob, `<dialog id="d1" call-id="c1@pbx" local-tag="l1" remote-tag="r1">`+
		`<state>confirmed</state><remote><identity>sip:dave@example.com</identity></remote></dialog>`)), 200)

	accept := []string{"Supported: eventlist", "Accept: multipart/related, application/rlmi+xml, " + infoType, "Expires: 600"}
	_, r := w.Subscribe("presence", lines.URI, accept...)
	siptest.WantCode(t, r, 489)
	if siptest.Header(r, "Allow-Events") != "dialog" {
		t.Fatalf("489 for presence does not name the list's package:\n%s", r)
	}
	_, r = w.Subscribe("dialog", lines.URI, accept...)
	siptest.WantCode(t, r, 200)
	n := w.Notify()
	if siptest.Header(n, "Event") != "dialog" {
		t.Fatalf("first NOTIFY's Event:\n%s", n)
	}
	ln := readList(t, n)
	if ln.Version != 1 || !ln.Full || len(ln.Resource) != 2 || len(ln.parts) != 2 {
		t.Fatalf("first NOTIFY: version %d full %t, %d resources, %d parts:\n%s", ln.Version, ln.Full, len(ln.Resource), len(ln.parts), ln.req.Body())
	}
	for cid := range ln.parts {
		if !strings.Contains(string(ln.req.Body()), "Content-ID: <"+cid+">\r\nContent-Type: "+infoType) {
			t.Fatalf("part %s is not %s:\n%s", cid, infoType, ln.req.Body())
		}
	}
	st, doc := ln.instance(t, bob)
	if st != "active" || !strings.Contains(doc, `entity="`+bob+`"`) || !strings.Contains(doc, `version="0"`) ||
		!strings.Contains(doc, "<state>confirmed</state>") || !strings.Contains(doc, "sip:dave@example.com") {
		t.Fatalf("bob: %s\n%s", st, doc)
	}
	st, doc = ln.instance(t, carol)
	if st != "active" || !strings.Contains(doc, `entity="`+carol+`"`) || !strings.Contains(doc, `version="0"`) || strings.Contains(doc, "<dialog ") {
		t.Fatalf("carol: %s\n%s", st, doc)
	}

	siptest.WantCode(t, pbx.Publish("dialog", carol, infoType, info(carol, `<dialog id="d2" direction="recipient"><state>early</state></dialog>`)), 200)
	ln = readList(t, w.Notify())
	if ln.Version != 2 || ln.Full || len(ln.Resource) != 1 || len(ln.parts) != 1 {
		t.Fatalf("NOTIFY after carol's PUBLISH: version %d full %t, %d resources:\n%s", ln.Version, ln.Full, len(ln.Resource), ln.req.Body())
	}
	if st, doc := ln.instance(t, carol); st != "active" || !strings.Contains(doc, `version="1"`) || !strings.Contains(doc, "<state>early</state>") {
		t.Fatalf("carol after her PUBLISH: %s\n%s", st, doc)
	}
	w.Quiet(100 * time.Millisecond)
}

// A member watched by many is rendered for its watchers after its
// PUBLISH is answered, the list's back-end among them: the list's
// subscriber gets the member's new state as its other watchers do.
func TestResourceListMemberWithACrowd(t *testing.T) {
	f := startLists(t, store.NewMemory(), 0, extensiontest.Load(t, paPkg, nil), friendsList)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	r := p.Publish("presence", bob, "application/pidf+xml", pidf(bob, "b1", "open", "bob here"))
	siptest.WantCode(t, r, 200)
	_, subs := crowd(t, f, bob, server.RenderApart)
	_, res := w.Subscribe("presence", friends, eventlist...)
	siptest.WantCode(t, res, 200)
	readList(t, w.Notify())

	siptest.WantCode(t, p.Publish("presence", bob, "application/pidf+xml", pidf(bob, "b1", "closed", "bob gone"), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag")), 200)
	ln := readList(t, w.Notify())
	if st, doc := ln.instance(t, bob); ln.Version != 2 || st != "active" || !strings.Contains(doc, "bob gone") {
		t.Fatalf("list NOTIFY after bob's PUBLISH: version %d, bob %s:\n%s", ln.Version, st, ln.req.Body())
	}
	for _, sub := range subs {
		if n := sub.Peer.NotifyIn(sub.CallID); !strings.Contains(string(n.Body()), "bob gone") {
			t.Fatalf("NOTIFY to bob's watcher:\n%s", n)
		}
	}
}
