package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
)

// lockPub and lockBind are a publication and a binding to commit while
// another connection holds the file's write lock.
var (
	lockPub = store.Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x", ContentType: "application/pidf+xml",
		Size: 11, Expires: time.UnixMilli(1_800_000_000_000), ResourceID: 1}
	lockBind = store.Binding{ID: "b1", AOR: "sip:a@x", Contact: "sip:a@1.2.3.4", CallID: "c", CSeq: 4, Expires: time.UnixMilli(1_800_000_000_000)}
)

// A Commit whose deadline passes while another process holds the write
// lock returns an error, and its batch is not written once the lock is
// released: the server has answered 500 for it.
func TestSQLiteCommitPastItsDeadlineIsNeverWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := storetest.HoldWriteLock(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Commit(ctx, &store.Batch{Publications: []store.Publication{lockPub}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("commit under a held lock: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the commit returned after %v, not at its deadline", d)
	}
	release()
	// The writer takes batches in order: once a later one is written, the
	// abandoned one has been dropped or written.
	if err := s.Commit(context.Background(), &store.Batch{Bindings: []store.Binding{lockBind}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Publications) != 0 || len(snap.Bindings) != 1 {
		t.Fatalf("after the lock: publications %+v, bindings %+v", snap.Publications, snap.Bindings)
	}
}

// A commit that waits for another process's write lock, within its
// deadline, lands once the lock is released.
func TestSQLiteCommitWaitsOutAHeldLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := storetest.HoldWriteLock(t, path)
	time.AfterFunc(300*time.Millisecond, release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Commit(ctx, &store.Batch{Publications: []store.Publication{lockPub}}); err != nil {
		t.Fatalf("commit under a lock released in time: %v", err)
	}
	snap, err := s.Load(context.Background())
	if err != nil || len(snap.Publications) != 1 {
		t.Fatalf("publications %+v, %v", snap.Publications, err)
	}
}
