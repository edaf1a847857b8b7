package server_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// readCounter counts the states (reads) and the presentities'
// publications (pubReads) the server reads back from the store, and
// refuses both as a database out of reach would while fail is set.
type readCounter struct {
	store.Store
	reads, pubReads atomic.Int32
	fail            atomic.Bool
}

func (c *readCounter) LoadPublications(ctx context.Context, id uint64, event, resource string) ([]store.Publication, error) {
	c.pubReads.Add(1)
	if c.fail.Load() {
		return nil, store.ErrUnavailable
	}
	return c.Store.LoadPublications(ctx, id, event, resource)
}

func (c *readCounter) LoadResource(ctx context.Context, id uint64, event, resource string) (store.Resource, error) {
	c.reads.Add(1)
	if c.fail.Load() {
		return store.Resource{}, store.ErrUnavailable
	}
	return c.Store.LoadResource(ctx, id, event, resource)
}

// An unwatched presentity's state is kept in the store only: it is read
// back when a module call needs it (a watcher comes, a publication
// changes) and held while it is watched. A read that fails is a refused
// request, with nothing changed.
func TestUnwatchedStateLivesInTheStore(t *testing.T) {
	sq, err := store.OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	st := &readCounter{Store: sq}
	f := start(t, st, echo(t))
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	want := func(n int32, when string) {
		t.Helper()
		if got := st.reads.Load(); got != n {
			t.Fatalf("%s: %d states read back from the store, want %d", when, got, n)
		}
	}

	r := p.Publish("echo", alice, "text/plain", "v1")
	siptest.WantCode(t, r, 200)
	want(0, "after a first publication")
	_, r = w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	if got := string(w.Notify().Body()); got != "v1" {
		t.Fatalf("first NOTIFY %q, want the published v1", got)
	}
	want(1, "after the first watcher")
	_, r = w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w.Notify()
	want(1, "after a second watcher of a watched presentity")

	// An unwatched presentity's publication changed: its state is read
	// back for the module, and what the module made of it is stored.
	bob := "sip:bob@example.com"
	r = p.Publish("echo", bob, "text/plain", "b1")
	siptest.WantCode(t, r, 200)
	r = p.Publish("echo", bob, "text/plain", "b2", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	want(2, "after a modify of an unwatched presentity")

	// The store cannot be read: the SUBSCRIBE is refused, no dialog stays.
	st.fail.Store(true)
	_, r = w.Subscribe("echo", bob, "Expires: 600")
	if r.StatusCode != 503 || siptest.Header(r, "Retry-After") == "" {
		t.Fatalf("SUBSCRIBE with the state unreadable: %d, Retry-After %q", r.StatusCode, siptest.Header(r, "Retry-After"))
	}
	st.fail.Store(false)
	_, r = w.Subscribe("echo", bob, "Expires: 600")
	siptest.WantCode(t, r, 200)
	if got := string(w.Notify().Body()); got != "b2" {
		t.Fatalf("NOTIFY %q, want the modified b2", got)
	}
}

// A presentity nobody watches is let go of between requests: its
// publications are read back from the store by the next request that
// names it, which then behaves as if it had been held all along: a
// refresh and a modify with SIP-If-Match, an unknown ETag (412), a
// watcher, the operator's listing, its expiry, a restart over the same
// file. A read that fails refuses the request and loses nothing.
func TestUnwatchedPresentityLivesInTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	sq, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	st := &readCounter{Store: sq}
	mod := echo(t)
	f := start(t, st, mod)
	p, w := f.peer(t, "UDP"), f.peer(t, "UDP")
	reads := func(want int32, when string) {
		t.Helper()
		if got := st.pubReads.Swap(0); got != want {
			t.Fatalf("%s: publications read back %d times, want %d", when, got, want)
		}
	}

	r := p.Publish("echo", alice, "text/plain", "v1", "Expires: 3600")
	siptest.WantCode(t, r, 200)
	reads(0, "a new presentity")
	r = p.Publish("echo", alice, "", "", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	reads(1, "a refresh of a presentity nobody watches")
	siptest.WantCode(t, p.Publish("echo", alice, "", "", "SIP-If-Match: nosuchetag"), 412)
	reads(1, "a refresh of an unknown ETag")
	st.fail.Store(true)
	if r := p.Publish("echo", alice, "", "", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag")); r.StatusCode/100 != 5 {
		t.Fatalf("a refresh with the store unreadable: %d, want 5xx", r.StatusCode)
	}
	st.fail.Store(false)
	r = p.Publish("echo", alice, "text/plain", "v2", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag"))
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")

	sub, resp := w.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, resp, 200)
	if got := string(w.Notify().Body()); got != "v2" {
		t.Fatalf("first NOTIFY %q, want the modified v2", got)
	}
	siptest.WantCode(t, sub.Again("Expires: 0"), 200)
	w.Notify()

	// Listed with the ETag it has now, among one that expires meanwhile.
	rb := p.Publish("echo", bob, "text/plain", "b1", "Expires: 1")
	siptest.WantCode(t, rb, 200)
	listed := func(srv *server.Server, want ...string) {
		t.Helper()
		var got []string
		for _, pub := range srv.Publications(server.Filter{}) {
			got = append(got, pub.Resource+" "+pub.ETag)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("publications listed: %q, want %q", got, want)
		}
	}
	listed(f.srv, alice+" "+etag, bob+" "+siptest.Header(rb, "SIP-ETag"))
	time.Sleep(1500 * time.Millisecond)
	listed(f.srv, alice+" "+etag)
	snap, err := sq.Load(t.Context())
	if err != nil || len(snap.Publications) != 1 || snap.Publications[0].Resource != alice {
		t.Fatalf("stored after the expiry: %+v, %v", snap.Publications, err)
	}

	f.srv.Close()
	g := start(t, st, mod)
	listed(g.srv, alice+" "+etag)
	q := g.peer(t, "UDP")
	siptest.WantCode(t, q.Publish("echo", alice, "", "", "SIP-If-Match: "+etag), 200)
}

// A reload that would no longer serve a package is refused while a
// presentity of it is held, cold ones included, and that presentity is
// served on as before.
func TestReloadCountsColdPresentities(t *testing.T) {
	sq, err := store.OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	mod := echo(t)
	f := start(t, sq, mod)
	p := f.peer(t, "UDP")
	r := p.Publish("echo", alice, "text/plain", "v1", "Expires: 3600")
	siptest.WantCode(t, r, 200)
	// A listing lets go of what it read back before it returns: alice is
	// cold from then on.
	if got := f.srv.Publications(server.Filter{}); len(got) != 1 {
		t.Fatalf("listed %+v", got)
	}
	if _, err := f.srv.Reload(nil); err == nil || !strings.Contains(err.Error(), `"echo", which has 1 live resources`) {
		t.Fatalf("reload without the echo package: %v", err)
	}
	siptest.WantCode(t, p.Publish("echo", alice, "", "", "SIP-If-Match: "+siptest.Header(r, "SIP-ETag")), 200)
}
