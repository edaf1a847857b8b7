package server

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// A token spells out exactly the identifier it was made from, whichever
// alphabet wrote it, and one this server did not write survives whole.
func TestTokenRoundTrip(t *testing.T) {
	for _, s := range []string{newToken(), newOrderedID(), "", "p1", "AAAAAAAAAAAAAAAA", "0000000000000000",
		"a-publication-id-from-elsewhere", "abcdefghijklmnop", "AAAAAAAA\nAAAAAAAA"} {
		if got := tokenOf(s).String(); got != s {
			t.Errorf("tokenOf(%q).String() = %q", s, got)
		}
	}
	if a, b := tokenOf("p1"), tokenOf("p2"); a == b {
		t.Errorf("p1 and p2 share the token %v", a)
	}
	// What this server writes is packed, not kept whole on the side.
	for _, s := range []string{newToken(), newOrderedID()} {
		if tk := tokenOf(s); tk.enc == tokenOther {
			t.Errorf("%q kept whole", s)
		}
	}
}

// What a request names (SIP-If-Match) is looked up without being kept.
func TestFindTokenKeepsNothing(t *testing.T) {
	otherTokens.Lock()
	n := len(otherTokens.all)
	otherTokens.Unlock()
	if _, ok := findToken("never-stored-etag-value"); ok {
		t.Error("an identifier never stored was found")
	}
	otherTokens.Lock()
	defer otherTokens.Unlock()
	if len(otherTokens.all) != n {
		t.Errorf("findToken kept what it looked up: %d identifiers, was %d", len(otherTokens.all), n)
	}
}

// A dialog's identity reads back as it was given, route set included.
func TestDialogIdentity(t *testing.T) {
	r := &resource{key: resourceKey{"presence", "sip:alice@example.com"}}
	routes := []string{"<sip:p1.example.com;lr>", "", "<sip:" + string(make([]byte, 300)) + ">"}
	f := identity{id: "ID.1", callID: "call@host", localTag: "LT", remoteTag: "rt", localURI: "sip:alice@example.com",
		remoteURI: "sip:bob@example.com", routeSet: routes, transport: "UDP", source: "127.0.0.1:5060",
		instance: "urn:uuid:x", eventID: "7", target: "sip:bob@192.0.2.1:5062"}
	d := &dialog{res: r}
	d.setIdentity(f)
	got := identity{d.id(), d.callID(), d.localTag(), d.remoteTag(), d.localURI(), d.remoteURI(), d.routeSet(),
		d.transport(), d.source(), d.instance(), d.eventID(), d.target()}
	if !slices.Equal(got.routeSet, f.routeSet) || !d.hasRoutes() {
		t.Errorf("route set %q, want %q", got.routeSet, f.routeSet)
	}
	got.routeSet, f.routeSet = nil, nil
	if !reflect.DeepEqual(got, f) {
		t.Errorf("identity %+v, want %+v", got, f)
	}
	if d.omits&localFromRes == 0 {
		t.Error("our URI, the resource's, was kept again")
	}
	// A refresh's Contact is kept only when it moved the target.
	d.retarget(strings.Clone(f.target))
	if d.moved != "" || d.target() != f.target {
		t.Errorf("refresh to the same Contact: kept %q, target %q", d.moved, d.target())
	}
	d.retarget("sip:bob@192.0.2.9")
	if d.target() != "sip:bob@192.0.2.9" || d.field(identTarget) != f.target {
		t.Errorf("target refresh: target %q, first %q", d.target(), d.field(identTarget))
	}
	d.retarget(f.target)
	if d.moved != "" || d.target() != f.target {
		t.Errorf("target refreshed back: kept %q, target %q", d.moved, d.target())
	}
	// A local tag the id starts with is read from the id; one it does not
	// (a legacy id, a tag that is a prefix of the id only up to another
	// dot) is kept.
	for _, c := range []struct {
		id, localTag string
		derived      bool
	}{
		{dialogID("call@host", "0DQ6K1C2A4S.x", "rt"), "0DQ6K1C2A4S.x", true},
		{dialogID("call@host", "LT", "rt"), "LT", true},
		{legacyDialogID("call@host", "LT", "rt"), "LT", false},
		{"LT.a.b", "LT", false},
		{"LTX.a", "LT", false},
		{"gateway", "", false},
	} {
		d = &dialog{res: r}
		d.setIdentity(identity{id: c.id, callID: "call@host", localTag: c.localTag, remoteTag: "rt"})
		if d.localTag() != c.localTag || d.id() != c.id || d.remoteTag() != "rt" {
			t.Errorf("id %q, local tag %q: read back %q, %q", c.id, c.localTag, d.id(), d.localTag())
		}
		if got := d.omits&localTagInID != 0; got != c.derived {
			t.Errorf("id %q, local tag %q: read from the id %v, want %v", c.id, c.localTag, got, c.derived)
		}
	}
	d = &dialog{res: r}
	d.setIdentity(identity{id: "x", localURI: "sip:other@example.com"})
	if d.localURI() != "sip:other@example.com" || d.hasRoutes() || d.routeSet() != nil {
		t.Errorf("local URI %q, route set %q", d.localURI(), d.routeSet())
	}
}

// A dialog's id is stored with its subscription: it must read the same
// after any rewrite of dialogID, so the stored dialogs are found again
// (the value is the first 4 bytes of SHA-256 of the Call-ID, a NUL and
// the remote tag, in hexadecimal, after the local tag and a dot).
func TestDialogIDStable(t *testing.T) {
	if got, want := dialogID("a84b4c76e66710@pc33.example.com", "srv1", "1928301774"), "srv1.f02d052f"; got != want {
		t.Errorf("dialogID = %q, want %q", got, want)
	}
	long := string(make([]byte, 300)) // past the stack buffer
	if a, b := dialogID(long, "t", "r1"), dialogID(long, "t", "r2"); a == b || len(a) != len("t.")+8 {
		t.Errorf("dialogID of a long Call-ID: %q, %q", a, b)
	}
}

// A dialog's Accept reads back as it was given, the package's own list
// shared when it is the same, no Accept told from an empty one.
func TestDialogAccept(t *testing.T) {
	pidf := []string{"application/pidf+xml"}
	r := &resource{pkg: &eventPackage{acceptList: &pidf}}
	for _, a := range [][]string{nil, {}, {"application/pidf+xml"}, {"text/plain"}, {"application/pidf+xml", "text/plain"}} {
		d := &dialog{res: r}
		d.setAccept(slices.Clone(a))
		if got := d.acceptList(); !slices.Equal(got, a) || (got == nil) != (a == nil) {
			t.Errorf("Accept %q read back %q", a, got)
		}
		if shared := d.accept == r.pkg.acceptList; shared != slices.Equal(a, pidf) {
			t.Errorf("Accept %q: the package's list shared %v", a, shared)
		}
	}
}

// A dialog's NOTIFY queue gives its jobs back in order, one put back first
// again ahead of them, and is empty once they are all taken.
func TestDialogQueue(t *testing.T) {
	d := &dialog{}
	jobs := make([]*notifyJob, 4)
	for i := range jobs {
		jobs[i] = &notifyJob{}
	}
	if d.pop() != nil {
		t.Fatal("an empty queue gave a job")
	}
	d.pushFront(jobs[1])
	d.push(jobs[2])
	d.push(jobs[3])
	d.pushFront(jobs[0])
	for i, want := range jobs {
		got := d.pop()
		if got != want {
			t.Fatalf("job %d out of order", i)
		}
		if got.next != nil {
			t.Fatalf("job %d still linked", i)
		}
		if i == 1 {
			d.pushFront(got) // sent later after all
			if d.pop() != got {
				t.Fatal("a job put back first was not taken first")
			}
		}
	}
	if d.pop() != nil || d.tail != nil {
		t.Fatal("the queue is not empty once every job is taken")
	}
}
