package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
)

var (
	pub  = store.Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x", ContentType: "application/pidf+xml", Size: 11, ResourceID: 1}
	pub2 = store.Publication{ID: "p2", ETag: "e2", Event: "presence", Resource: "sip:b@x", ContentType: "application/pidf+xml", Size: 12, ResourceID: 2}
)

func publications(t *testing.T, s store.Store) []string {
	t.Helper()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range snap.Publications {
		ids = append(ids, p.ID)
	}
	return ids
}

// Between Fail and Heal a commit returns the error and writes nothing, on
// either backend.
func TestFaultyFailsThenHeals(t *testing.T) {
	for name, open := range map[string]func(*testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return store.NewMemory() },
		"sqlite": openSQLite,
	} {
		t.Run(name, func(t *testing.T) {
			f := storetest.NewFaulty(open(t))
			defer f.Close()
			ctx := context.Background()
			full := errors.New("disk full")
			f.Fail(full)
			if err := f.Commit(ctx, &store.Batch{Publications: []store.Publication{pub}}); !errors.Is(err, full) {
				t.Fatalf("commit on a failing store: %v", err)
			}
			if ids := publications(t, f); len(ids) != 0 {
				t.Fatalf("a refused commit wrote %v", ids)
			}
			f.Heal()
			if err := f.Commit(ctx, &store.Batch{Publications: []store.Publication{pub2}}); err != nil {
				t.Fatalf("commit on a healed store: %v", err)
			}
			if ids := publications(t, f); len(ids) != 1 || ids[0] != pub2.ID {
				t.Fatalf("after healing: %v", ids)
			}
			if f.Commits() != 1 || f.Refused() != 1 {
				t.Fatalf("%d commits, %d refused; want 1 and 1", f.Commits(), f.Refused())
			}
		})
	}
}

// A delayed commit whose deadline passes first returns the deadline's
// error and writes nothing.
func TestFaultyDelayKeepsTheDeadline(t *testing.T) {
	f := storetest.NewFaulty(store.NewMemory())
	f.Delay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.Commit(ctx, &store.Batch{Publications: []store.Publication{pub}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed commit past its deadline: %v", err)
	}
	f.Delay(time.Millisecond)
	if err := f.Commit(context.Background(), &store.Batch{Publications: []store.Publication{pub2}}); err != nil {
		t.Fatal(err)
	}
	if ids := publications(t, f); len(ids) != 1 || ids[0] != pub2.ID {
		t.Fatalf("after the delays: %v", ids)
	}
}
