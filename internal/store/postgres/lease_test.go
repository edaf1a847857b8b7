package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
)

// A dialog belongs to the epoch that wrote it: another epoch's writes to
// it fail with ErrFenced, written nowhere, and its Load does not return
// it. Once the owner's lease has run out another epoch takes it over,
// and then the former owner can neither renew nor write it; a store
// joining anew (a restarted node) loads none of it.
func TestLeasesFenceDialogs(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	const lease = time.Second // a's; b's runs a minute
	if _, err := a.Join(ctx, "a", lease); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	sub := store.Subscription{ID: "d1", CallID: "c1", LocalTag: "l", RemoteTag: "r", LocalURI: "sip:a@x", RemoteURI: "sip:b@x",
		RemoteTarget: "sip:b@192.0.2.1", Transport: "UDP", Event: "presence", Resource: "sip:a@x", Status: "active",
		Expires: time.Now().Add(time.Hour), Created: time.Now(), LocalCSeq: 32}
	if err := a.Commit(ctx, &store.Batch{Subscriptions: []store.Subscription{sub}}); err != nil {
		t.Fatal(err)
	}
	fenced := func(what string, s *Store, b *store.Batch) {
		t.Helper()
		if err := s.Commit(ctx, b); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("%s: %v, want ErrFenced", what, err)
		}
	}
	pub := store.Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x", ContentType: "application/pidf+xml", Expires: time.Now().Add(time.Hour)}
	fenced("b rewrites a's dialog", b, &store.Batch{Subscriptions: []store.Subscription{sub}, Publications: []store.Publication{pub}})
	fenced("b reserves CSeqs in a's dialog", b, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: "d1", CSeq: 64}}})
	fenced("b deletes a's dialog", b, &store.Batch{DeleteSubscriptions: []string{"d1"}})
	if snap, err := b.Load(ctx); err != nil || len(snap.Subscriptions)+len(snap.Publications) != 0 {
		t.Fatalf("b loads %+v, %v", snap, err)
	}
	if taken, err := b.TakeOver(ctx); err != nil || len(taken) != 0 {
		t.Fatalf("b took %d dialogs of a live lease: %v", len(taken), err)
	}

	// a stops renewing; once its lease has run out, b takes d1.
	time.Sleep(lease + 100*time.Millisecond)
	if err := b.Renew(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	taken, err := b.TakeOver(ctx)
	if err != nil || len(taken) != 1 || taken[0].ID != "d1" || taken[0].LocalCSeq != 32 {
		t.Fatalf("b took %+v, %v", taken, err)
	}
	if err := a.Renew(ctx, lease); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("a renews a lease that ran out: %v", err)
	}
	fenced("a reserves CSeqs after the takeover", a, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: "d1", CSeq: 64}}})
	if err := b.Commit(ctx, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: "d1", CSeq: 64}}}); err != nil {
		t.Fatal(err)
	}
	c := open(t, dsn)
	defer c.Close()
	if _, err := c.Join(ctx, "c", lease); err != nil {
		t.Fatal(err)
	}
	if snap, err := c.Load(ctx); err != nil || len(snap.Subscriptions) != 0 {
		t.Fatalf("a node joining anew loads %+v, %v", snap, err)
	}
	// b restarted (a new store joining by b's name) has b's dialogs at
	// once: its old epoch's process is gone.
	b2 := open(t, dsn)
	defer b2.Close()
	if kept, err := b2.Join(ctx, "b", time.Minute); err != nil || len(kept) != 1 {
		t.Fatalf("b restarted kept %+v, %v", kept, err)
	}
	if snap, err := b2.Load(ctx); err != nil || len(snap.Subscriptions) != 1 {
		t.Fatalf("b restarted loads %+v, %v", snap, err)
	}
	if taken, err := a.TakeOver(ctx); err != nil || len(taken) != 0 {
		t.Fatalf("b's old epoch taken over by a: %+v, %v", taken, err)
	}
	b = b2
	// Deleting a dialog already gone is no fence.
	if err := b.Commit(ctx, &store.Batch{DeleteSubscriptions: []string{"d1", "gone"}}); err != nil {
		t.Fatal(err)
	}
}
