package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/server"
	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// subscriptionReads counts the store calls that read subscriptions back
// and refuses them, as a database out of reach would, while fail is set.
type subscriptionReads struct {
	store.Store
	calls atomic.Int32
	fail  atomic.Bool
}

func (c *subscriptionReads) LoadSubscriptions(ctx context.Context, ids []string) ([]store.Subscription, error) {
	c.calls.Add(1)
	if c.fail.Load() {
		return nil, store.ErrUnavailable
	}
	return c.Store.LoadSubscriptions(ctx, ids)
}

// waitDialogs waits until srv holds held subscriptions in memory and has
// let go of idle.
func waitDialogs(t *testing.T, srv *server.Server, held, idle int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, i := server.Dialogs(srv)
		if h == held && i == idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions held and %d let go of, want %d and %d", h, i, held, idle)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A subscription idle for IdleSubscriptions lives in the store alone and
// is read back when something needs it: a refresh, an unsubscribe, a
// change of its presentity (one read for all its watchers), the
// operator's listing and removal, its expiry, a restart. It counts
// toward the limits meanwhile, a new watcher of its presentity reads
// none back, and a read that fails refuses the request and loses nothing.
func TestIdleSubscriptionsLiveInTheStore(t *testing.T) {
	sq, err := store.OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	st := &subscriptionReads{Store: sq}
	mod := echo(t)
	opt := server.Options{Store: st, Modules: []*extension.Module{mod}, IdleSubscriptions: 200 * time.Millisecond,
		Limits: server.Limits{MaxWatchersPerPresentity: 3, MaxSubscriptionsPerWatcher: 4}}
	f := startFixture(t, opt)
	p, w1, w2, w3 := f.peer(t, "UDP"), f.peer(t, "UDP"), f.peer(t, "UDP"), f.peer(t, "UDP")
	reads := func(want int32, when string) {
		t.Helper()
		if got := st.calls.Swap(0); got != want {
			t.Fatalf("%s: subscriptions read back %d times, want %d", when, got, want)
		}
	}
	body := func(w *siptest.Peer, want, state string) uint32 {
		t.Helper()
		n := w.Notify()
		if got := string(n.Body()); got != want || !strings.HasPrefix(siptest.Header(n, "Subscription-State"), state) {
			t.Fatalf("NOTIFY %q %q, want %q %s", got, siptest.Header(n, "Subscription-State"), want, state)
		}
		return n.CSeq().SeqNo
	}

	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v1", "Expires: 3600"), 200)
	s1, r := w1.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	cseq := body(w1, "v1", "active")
	s2, r := w2.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	body(w2, "v1", "active")
	waitDialogs(t, f.srv, 0, 2)

	// A new watcher of a presentity whose watchers are let go of reads
	// none of them back; the limits count them.
	s3, r := w3.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 200)
	body(w3, "v1", "active")
	reads(0, "a new watcher")
	waitDialogs(t, f.srv, 0, 3)
	_, r = w3.Subscribe("echo", alice, "Expires: 600")
	siptest.WantCode(t, r, 403)
	bob := "sip:bob@example.com"
	sb, r := w3.Subscribe("echo", bob, "Expires: 600")
	siptest.WantCode(t, r, 200)
	w3.Notify()
	waitDialogs(t, f.srv, 0, 4)
	_, r = w3.Subscribe("echo", "sip:carol@example.com", "Expires: 600")
	siptest.WantCode(t, r, 403)
	siptest.WantCode(t, sb.Again("Expires: 0"), 200)
	body(w3, "", "terminated")
	reads(1, "the unsubscribe of one let go of")

	// A change of the presentity: all its watchers read back in one call.
	siptest.WantCode(t, p.Publish("echo", alice, "text/plain", "v2", "Expires: 3600"), 200)
	for _, w := range []*siptest.Peer{w1, w2, w3} {
		body(w, "v2", "active")
	}
	reads(1, "a change of the presentity")
	waitDialogs(t, f.srv, 0, 3)

	// A refresh and an unsubscribe of ones let go of; the CSeq rises.
	siptest.WantCode(t, s1.Again("Expires: 600"), 200)
	if next := body(w1, "v2", "active"); next <= cseq {
		t.Fatalf("NOTIFY CSeq %d after %d", next, cseq)
	}
	siptest.WantCode(t, s2.Again("Expires: 0"), 200)
	body(w2, "v2", "terminated")
	reads(2, "a refresh and an unsubscribe")
	waitDialogs(t, f.srv, 0, 2)

	// The store cannot be read: refused, and nothing lost.
	st.fail.Store(true)
	if r := s1.Again("Expires: 600"); r.StatusCode != 503 || siptest.Header(r, "Retry-After") == "" {
		t.Fatalf("refresh with the store unreadable: %d, Retry-After %q", r.StatusCode, siptest.Header(r, "Retry-After"))
	}
	if r := p.Publish("echo", alice, "text/plain", "v3", "Expires: 3600"); r.StatusCode != 503 {
		t.Fatalf("PUBLISH with the watchers unreadable: %d", r.StatusCode)
	}
	st.fail.Store(false)
	waitDialogs(t, f.srv, 0, 2)
	siptest.WantCode(t, s1.Again("Expires: 600"), 200)
	body(w1, "v2", "active")
	waitDialogs(t, f.srv, 0, 2)

	// Listed and removed by the operator.
	subs := f.srv.Subscriptions(server.Filter{Resource: alice})
	if len(subs) != 2 || subs[0].Resource != alice || subs[1].Resource != alice || subs[0].Watcher != "sip:watcher@example.com" {
		t.Fatalf("listed %+v", subs)
	}
	for _, sub := range subs {
		if strings.Contains(sub.Contact, w3.Local()) {
			if err := f.srv.Terminate(sub.ID, "deactivated"); err != nil {
				t.Fatal(err)
			}
		}
	}
	body(w3, "v2", "terminated;reason=deactivated")
	siptest.WantCode(t, s3.Again("Expires: 600"), 481)

	// Expired while let go of: a final NOTIFY, its record gone.
	s4, r := w2.Subscribe("echo", alice, "Expires: 1")
	siptest.WantCode(t, r, 200)
	body(w2, "v2", "active")
	waitDialogs(t, f.srv, 0, 2)
	body(w2, "v2", "terminated;reason=timeout")
	siptest.WantCode(t, s4.Again("Expires: 600"), 481)
	snap, err := sq.Load(t.Context())
	if err != nil || len(snap.Subscriptions) != 1 || snap.Subscriptions[0].CallID != s1.CallID {
		t.Fatalf("stored: %+v, %v", snap.Subscriptions, err)
	}

	// A restart: told its state, let go of again, refreshed.
	f.srv.Close()
	g := startFixture(t, opt)
	body(w1, "v2", "active")
	waitDialogs(t, g.srv, 0, 1)
	w1.SetServer(g.addr["UDP"])
	siptest.WantCode(t, s1.Again("Expires: 600"), 200)
	body(w1, "v2", "active")
}
