package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension/extensiontest"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// A server started on the store another one left keeps its publications
// (same ETags) and its dialogs (same Call-ID and tags, CSeq rising above
// the block the first server reserved), and first tells every restored
// watcher the current state.
func TestRestartOnTheSameStore(t *testing.T) {
	st := store.NewMemory()
	mod := echo(t)
	first := start(t, st, mod)
	p, w := first.peer(t, "UDP"), first.peer(t, "UDP")

	r := p.Publish("echo", alice, "text/plain", "before")
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")
	sub, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	if n := w.Notify(); string(n.Body()) != "before" || n.CSeq().SeqNo != 1 {
		t.Fatalf("first NOTIFY:\n%s", n)
	}
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "still before", "SIP-If-Match: "+etag), 200)
	n := w.Notify()
	if n.CSeq().SeqNo != 2 {
		t.Fatalf("second NOTIFY CSeq = %d", n.CSeq().SeqNo)
	}
	snap, _ := st.Load(t.Context())
	if len(snap.Publications) != 1 || len(snap.Subscriptions) != 1 || snap.Subscriptions[0].LocalCSeq < 2 {
		t.Fatalf("store after the first server: %+v", snap)
	}
	etag = snap.Publications[0].ETag // the modify rotated it
	reserved := snap.Subscriptions[0].LocalCSeq
	first.srv.Close()

	second := start(t, st, mod)
	n = w.Notify()
	if string(n.Body()) != "still before" || n.CSeq().SeqNo != reserved+1 || siptest.Header(n, "Call-ID") != sub.CallID ||
		siptest.Tag(siptest.Header(n, "From")) != sub.ToTag || !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active") {
		t.Fatalf("the restarted server's resync NOTIFY is not in the old dialog:\n%s", n)
	}
	p2 := siptest.NewPeer(t, "UDP", second.addr["UDP"])
	// the old ETag is honoured: a modify, not a 412
	r = p2.Publish("echo", alice, "text/plain", "after", "SIP-If-Match: "+etag)
	siptest.WantCode(t, r, 200)
	n = w.Notify()
	if string(n.Body()) != "after" || n.CSeq().SeqNo != reserved+2 || siptest.Header(n, "Call-ID") != sub.CallID ||
		siptest.Tag(siptest.Header(n, "From")) != sub.ToTag || !strings.HasPrefix(siptest.Header(n, "Subscription-State"), "active") {
		t.Fatalf("NOTIFY from the restarted server is not in the old dialog:\n%s", n)
	}
	// the dialog accepts a refresh, sent to the new server
	w.SetServer(second.addr["UDP"])
	if r := sub.Again("Expires: 600"); r.StatusCode != 200 {
		t.Fatalf("refresh after restart: %d %s", r.StatusCode, siptest.Header(r, "Warning"))
	}
	if n := w.Notify(); n.CSeq().SeqNo != reserved+3 {
		t.Fatalf("NOTIFY after refresh CSeq = %d", n.CSeq().SeqNo)
	}
}

// A dialog stored under the id the first schema gave (a hash of Call-ID
// and both tags) is still found by its refresh after an upgrade.
func TestLegacyDialogIDIsFound(t *testing.T) {
	st := store.NewMemory()
	h := sha256.Sum256([]byte("legacy-call\x00srvtag\x00w1"))
	w := siptest.NewPeer(t, "UDP", "127.0.0.1:1") // its address is fixed below
	rec := store.Subscription{ID: hex.EncodeToString(h[:12]), CallID: "legacy-call", LocalTag: "srvtag", RemoteTag: "w1",
		LocalURI: alice, RemoteURI: "sip:watcher@example.com", RemoteTarget: "sip:watcher@" + w.Local() + ";transport=udp",
		Transport: "UDP", Event: "echo", Resource: alice, Expires: time.Now().Add(time.Hour), LocalCSeq: 7, RemoteCSeq: 1,
		Status: "active", Created: time.Now()}
	if err := st.Commit(t.Context(), &store.Batch{Subscriptions: []store.Subscription{rec}}); err != nil {
		t.Fatal(err)
	}
	f := start(t, st, echo(t))
	w.SetServer(f.addr["UDP"])
	if n := w.Notify(); n.CSeq().SeqNo != 8 { // the restart's resync
		t.Fatalf("resync NOTIFY:\n%s", n)
	}
	sub := &siptest.Subscription{Peer: w, CallID: "legacy-call", FromTag: "w1", ToTag: "srvtag", CSeq: 1, Event: "echo", Resource: alice}
	if r := sub.Again("Expires: 600"); r.StatusCode != 200 {
		t.Fatalf("refresh of a legacy dialog: %d %s", r.StatusCode, siptest.Header(r, "Warning"))
	}
}

// A stop between a PUBLISH's answer and the rendering for its watchers
// (here the rendering's commit fails, which leaves the store as a crash
// there does: the publication and the composed state kept, the watchers'
// states not) loses nothing acknowledged: the restarted server sends
// every watcher the state, in its dialog.
func TestRestartRendersWhatWasLeftToRender(t *testing.T) {
	st := &failingStore{Store: store.NewMemory(), only: rendersApart}
	mod := extensiontest.Load(t, paPkg, nil)
	first := start(t, st, mod)
	p := first.peer(t, "UDP")
	r := p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "before"))
	siptest.WantCode(t, r, 200)
	peers, subs := crowd(t, first, carol, server.RenderApart)
	st.failing.Store(true)
	r = p.Publish("presence", carol, "application/pidf+xml", pidf(carol, "t1", "open", "acknowledged"), "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	for deadline := time.Now().Add(siptest.Timeout); st.refused.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the rendering for the watchers was never committed")
		}
	}
	for _, w := range peers {
		w.Quiet(20 * time.Millisecond)
	}
	first.srv.Close()

	start(t, st.Store, mod)
	for _, sub := range subs {
		n := sub.Peer.NotifyIn(sub.CallID)
		if n.CSeq().SeqNo != cseqBlock+1 || !strings.Contains(string(n.Body()), "acknowledged") {
			t.Fatalf("NOTIFY of the restarted server:\n%s", n)
		}
	}
}

// On SQLite, which keys resource states by the id the server gave each
// resource, a restarted server writes, reads back and deletes a state
// under the id it was stored with, gives new resources ids above every
// id stored, and of two rows of one resource (one left while its
// package was not served, then written anew) serves the newer and
// deletes the older, its publications moved into the newer.
func TestRestartKeepsResourceIDs(t *testing.T) {
	sq, err := store.OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	mod := echo(t)
	resources := func() map[string]store.Resource {
		t.Helper()
		snap, err := sq.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.Resource{}
		for _, r := range snap.Resources {
			if _, dup := m[r.Resource]; dup {
				t.Fatalf("two rows of %s: %+v", r.Resource, snap.Resources)
			}
			m[r.Resource] = r
		}
		return m
	}
	first := start(t, sq, mod)
	siptest.WantCode(t, first.peer(t, "UDP").Publish("echo", alice, "text/plain", "v1", "Expires: 3600"), 200)
	first.srv.Close()
	stored := resources()[alice]
	if stored.ID == 0 || string(stored.State) != "v1" {
		t.Fatalf("stored: %+v", stored)
	}
	// An older row of alice, and a resource whose id is ahead of the
	// clock (one written by a server whose clock ran fast).
	ahead := uint64(time.Now().Add(time.Hour).UnixNano())
	// The older row holds a publication too: it moves into the newer.
	err = sq.Commit(t.Context(), &store.Batch{Resources: []store.Resource{
		{ID: stored.ID - 1, Event: "echo", Resource: alice, State: []byte("older")},
		{ID: ahead, Event: "echo", Resource: carol, State: []byte("ahead")},
	}, Publications: []store.Publication{{ID: "older", ETag: "older", Event: "echo", Resource: alice, ContentType: "text/plain",
		Expires: time.Now().Add(time.Hour), ResourceID: stored.ID - 1}}})
	if err != nil {
		t.Fatal(err)
	}

	second := start(t, sq, mod)
	w := second.peer(t, "UDP")
	_, r := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	if got := string(w.Notify().Body()); got != "v1" {
		t.Fatalf("NOTIFY after restart %q, want v1 (read back under id %d)", got, stored.ID)
	}
	if got := resources(); len(got) != 2 || got[alice].ID != stored.ID || got[carol].ID != ahead {
		t.Fatalf("rows after restart: %+v, want alice's under %d and carol's", got, stored.ID)
	}
	snap, err := sq.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Publications) != 2 || snap.Publications[0].ResourceID != stored.ID || snap.Publications[1].ResourceID != stored.ID {
		t.Fatalf("publications after restart: %+v, want both of alice's under %d", snap.Publications, stored.ID)
	}
	p := second.peer(t, "UDP")
	r = p.Publish("echo", bob, "text/plain", "b1", "Expires: 3600")
	siptest.WantCode(t, r, 200)
	if got := resources()[bob]; got.ID <= ahead {
		t.Fatalf("a new resource's id %d, not above the largest stored (%d)", got.ID, ahead)
	}
	// Removed: the row of its id is deleted.
	siptest.WantCode(t, p.Publish("echo", bob, "", "", "Expires: 0", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag")), 200)
	if got, ok := resources()[bob]; ok {
		t.Fatalf("a removed publication's state still stored: %+v", got)
	}
}
