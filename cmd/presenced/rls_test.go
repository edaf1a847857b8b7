package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// rlmi is a list NOTIFY as the subscriber reads it (RFC 4662 §5): the
// RLMI document, and the member documents beside it by Content-ID.
type rlmi struct {
	n        *sip.Request
	Version  int  `xml:"version,attr"`
	Full     bool `xml:"fullState,attr"`
	Resource []struct {
		URI      string `xml:"uri,attr"`
		Instance []struct {
			ID    string `xml:"id,attr"`
			State string `xml:"state,attr"`
			CID   string `xml:"cid,attr"`
		} `xml:"instance"`
	} `xml:"resource"`
	parts map[string]string
}

func readRLMI(t *testing.T, n *sip.Request) *rlmi {
	t.Helper()
	mt, params, err := mime.ParseMediaType(siptest.Header(n, "Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != "application/rlmi+xml" {
		t.Fatalf("not a list NOTIFY (%v):\n%s", err, n)
	}
	l := &rlmi{n: n, parts: map[string]string{}}
	mr := multipart.NewReader(strings.NewReader(string(n.Body())), params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return l
		}
		if err != nil {
			t.Fatalf("part %d: %v\n%s", i, err, n)
		}
		b, _ := io.ReadAll(p)
		if i == 0 {
			if err := xml.Unmarshal(b, l); err != nil {
				t.Fatalf("RLMI: %v\n%s", err, b)
			}
			continue
		}
		l.parts[strings.Trim(p.Header.Get("Content-ID"), "<>")] = string(b)
	}
}

// members are the member URIs in document order.
func (l *rlmi) members() []string {
	var out []string
	for _, r := range l.Resource {
		out = append(out, r.URI)
	}
	return out
}

// member is the one instance of uri, and the document its cid names.
func (l *rlmi) member(t *testing.T, uri string) (id, state, doc string) {
	t.Helper()
	for _, r := range l.Resource {
		if r.URI == uri && len(r.Instance) == 1 {
			in := r.Instance[0]
			return in.ID, in.State, l.parts[in.CID]
		}
	}
	t.Fatalf("no one instance of %s:\n%s", uri, l.n.Body())
	return "", "", ""
}

// rlsServices is an rls-services document of lists, each a URI and its
// members.
func rlsServices(lists ...[]string) string {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
		"<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\" xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\">\n")
	for _, l := range lists {
		fmt.Fprintf(&b, "  <service uri=%q>\n    <list>\n", l[0])
		for _, m := range l[1:] {
			fmt.Fprintf(&b, "      <rl:entry uri=%q/>\n", m)
		}
		b.WriteString("    </list>\n    <packages><package>presence</package></packages>\n  </service>\n")
	}
	b.WriteString("</rls-services>\n")
	return b.String()
}

// The rls-services file of [rls] services, read again on SIGHUP, against
// the real daemon with pa (issue 18). A subscriber of a list from the file
// gets its members' PIDFs beside the RLMI; the file rewritten (a member
// added, one removed, a list deleted) and SIGHUP sent, the list's
// subscriber gets a full-state NOTIFY one version up with the new
// membership, the kept member's instance unchanged, and the removed
// member sees the subscriber leave her watcher info (presence.winfo); the
// deleted list's subscription ends with noresource. A file made invalid is
// refused on SIGHUP, logged with its path and the line of the fault, and
// the running lists stay: a member's PUBLISH still reaches the list's
// subscriber, one version up, and a new subscription gets the lists of
// the last good file.
func TestReloadRereadsTheRLSServicesFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	dir := t.TempDir()
	bin := buildDaemon(t)
	pa := sdktest.Build(t, paPkg)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const (
		friends = "sip:friends@example.com"
		mates   = "sip:mates@example.com"
		bob     = "sip:bob@example.com"
		carol   = "sip:carol@example.com"
	)
	services := filepath.Join(dir, "lists.xml")
	write := func(text string) {
		t.Helper()
		// Written aside and renamed, as an editor saves: the daemon never
		// reads half a file.
		if err := os.WriteFile(services+".new", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(services+".new", services); err != nil {
			t.Fatal(err)
		}
	}
	write(rlsServices([]string{friends, alice, bob}, []string{mates, carol}))
	cfg := filepath.Join(dir, "presenced.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
data_dir = %q
[[listen]]
transport = "udp"
address = %q
[admin]
listen = ""
[rls]
services = "lists.xml"
[extension.pa]
path = %q
`, filepath.Join(dir, "data"), addr, pa)), 0o644)
	d := startDaemon(t, bin, "-config", cfg)
	d.serving(t)
	reloads := 0
	sighup := func(want *regexp.Regexp) {
		t.Helper()
		d.cmd.Process.Signal(syscall.SIGHUP)
		reloads++
		// The n-th answer to a SIGHUP: a reload logs "reloaded" or
		// "reload refused", one line each.
		answered := regexp.MustCompile(`msg=reloaded|msg="reload refused`)
		deadline := time.Now().Add(30 * time.Second)
		for len(answered.FindAllString(d.output(), -1)) < reloads {
			if time.Now().After(deadline) {
				t.Fatalf("no answer to SIGHUP %d:\n%s", reloads, d.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		d.await(t, want, time.Second)
	}

	p := siptest.NewPeer(t, "UDP", addr)
	for _, u := range []string{alice, bob, carol} {
		siptest.WantCode(t, p.Publish("presence", u, "application/pidf+xml", pidf(u, "t1", "open", u+" here")), 200)
	}
	eventlist := []string{"Supported: eventlist", "Accept: multipart/related, application/rlmi+xml, application/pidf+xml", "Expires: 600"}
	w := siptest.NewPeer(t, "UDP", addr)
	fsub, r := w.Subscribe("presence", friends, eventlist...)
	siptest.WantCode(t, r, 200)
	l := readRLMI(t, w.NotifyIn(fsub.CallID))
	if l.Version != 1 || !l.Full || strings.Join(l.members(), " ") != alice+" "+bob || len(l.parts) != 2 {
		t.Fatalf("first NOTIFY of %s: version %d full %t:\n%s", friends, l.Version, l.Full, l.n.Body())
	}
	bobID, st, doc := l.member(t, bob)
	if st != "active" || !strings.Contains(doc, bob+" here") {
		t.Fatalf("bob: %s\n%s", st, doc)
	}
	// alice watches her watchers (presence.winfo): the list's subscriber
	// is one of them while she is a member
	winfo := siptest.NewPeer(t, "UDP", addr)
	winfoCall := siptest.NewCallID()
	r = winfo.Send(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{
		"From: <" + alice + ">;tag=winfo1", "To: <" + alice + ">", "Call-ID: " + winfoCall, "CSeq: 1 SUBSCRIBE",
		winfo.Contact(), "Event: presence.winfo", "Accept: application/watcherinfo+xml", "Expires: 600"}})
	siptest.WantCode(t, r, 200)
	watching := regexp.MustCompile(`<watcher [^>]*status="active"[^>]*>sip:watcher@example\.com</watcher>`)
	if n := winfo.NotifyIn(winfoCall); !watching.Match(n.Body()) {
		t.Fatalf("alice's watcher info without the list's subscriber:\n%s", n.Body())
	}
	msub, r := w.Subscribe("presence", mates, eventlist...)
	siptest.WantCode(t, r, 200)
	if l := readRLMI(t, w.NotifyIn(msub.CallID)); strings.Join(l.members(), " ") != carol {
		t.Fatalf("first NOTIFY of %s:\n%s", mates, l.n.Body())
	}

	// carol in, alice out, mates gone
	write(rlsServices([]string{friends, bob, carol}))
	sighup(regexp.MustCompile(`msg=reloaded`))
	l = readRLMI(t, w.NotifyIn(fsub.CallID))
	if l.Version != 2 || !l.Full || strings.Join(l.members(), " ") != bob+" "+carol || len(l.parts) != 2 {
		t.Fatalf("%s after the reload: version %d full %t:\n%s", friends, l.Version, l.Full, l.n.Body())
	}
	if id, _, _ := l.member(t, bob); id != bobID {
		t.Fatalf("bob's instance was %s, is %s after the reload", bobID, id)
	}
	if _, st, doc := l.member(t, carol); st != "active" || !strings.Contains(doc, carol+" here") {
		t.Fatalf("carol after the reload: %s\n%s", st, doc)
	}
	if n := w.NotifyIn(msub.CallID); siptest.Header(n, "Subscription-State") != "terminated;reason=noresource" {
		t.Fatalf("%s after it left the file:\n%s", mates, n)
	}
	// alice, out of the list, sees the subscriber go from her watchers,
	// and her next PUBLISH goes to no one
	unwatched := regexp.MustCompile(`<watcher [^>]*event="deactivated" status="terminated"[^>]*>sip:watcher@example\.com</watcher>`)
	if n := winfo.NotifyIn(winfoCall); !unwatched.Match(n.Body()) {
		t.Fatalf("alice's watcher info after she left the list:\n%s", n.Body())
	}
	siptest.WantCode(t, p.Publish("presence", alice, "application/pidf+xml", pidf(alice, "t1", "closed", "alice away")), 200)
	w.Quiet(200 * time.Millisecond)

	// A file broken in an edit: refused, named with the line where the
	// parser found the fault (8: the <rl:entry> left open on line 6 meets
	// </list>). The running lists stay.
	bad := strings.Replace(rlsServices([]string{friends, bob, carol, "sip:dave@example.com"}), `"sip:carol@example.com"/>`, `"sip:carol@example.com">`, 1)
	write(bad)
	sighup(regexp.MustCompile(`msg="reload refused.*` + regexp.QuoteMeta(services) + `:\d+`))
	if want := regexp.MustCompile(regexp.QuoteMeta(services) + `:(\d+)`).FindStringSubmatch(d.output()); want[1] != "8" {
		t.Errorf("the refusal names line %s of %s, want 8 (where the open <rl:entry> meets </list>):\n%s", want[1], services, d.output())
	}
	w.Quiet(200 * time.Millisecond)
	siptest.WantCode(t, p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "closed", "carol away")), 200)
	l = readRLMI(t, w.NotifyIn(fsub.CallID))
	if l.Version != 3 || l.Full || strings.Join(l.members(), " ") != carol {
		t.Fatalf("%s after the refused reload, carol's PUBLISH: version %d full %t:\n%s", friends, l.Version, l.Full, l.n.Body())
	}
	sub, r := siptest.NewPeer(t, "UDP", addr).Subscribe("presence", friends, eventlist...)
	siptest.WantCode(t, r, 200)
	if l := readRLMI(t, sub.Peer.NotifyIn(sub.CallID)); strings.Join(l.members(), " ") != bob+" "+carol {
		t.Fatalf("a new subscription after the refused reload:\n%s", l.n.Body())
	}
	// mates, gone from the last good file, is a plain presentity again
	_, r = w.Subscribe("presence", mates, eventlist...)
	if siptest.Header(r, "Require") == "eventlist" {
		t.Fatalf("%s, gone from the last good file, is a list again:\n%s", mates, r)
	}
	d.stop(t)
}
