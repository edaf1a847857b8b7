package server_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// readCounter counts the states the server reads back from the store,
// and refuses them as a database out of reach would while fail is set.
type readCounter struct {
	store.Store
	reads atomic.Int32
	fail  atomic.Bool
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
