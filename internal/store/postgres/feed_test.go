package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
)

// twoNodes opens two stores on one database, as two nodes would, and
// returns them and what a hears of the feed.
func twoNodes(t testing.TB) (a, b *Store, heard <-chan store.Change) {
	dsn := pgtest.DSN(t)
	a, b = open(t, dsn), open(t, dsn)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, follow(t, a)
}

// follow starts s following the feed and returns what it hears.
func follow(t testing.TB, s *Store) <-chan store.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	got := make(chan store.Change, 1024)
	if err := s.Follow(ctx, func(c store.Change) { got <- c }); err != nil {
		t.Fatal(err)
	}
	return got
}

func next(t *testing.T, got <-chan store.Change) store.Change {
	t.Helper()
	select {
	case c := <-got:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change heard within 10 s")
		return store.Change{}
	}
}

// A node hears every resource state another commits, in commit order,
// deletions as version 0; not its own writes, nor a batch that failed.
func TestFeedTellsOfOtherNodesWrites(t *testing.T) {
	a, b, heard := twoNodes(t)
	ctx := context.Background()

	own := store.Resource{Event: "presence", Resource: "sip:own@x", State: []byte("a's"), Version: 3}
	if err := a.Commit(ctx, &store.Batch{Resources: []store.Resource{own}}); err != nil {
		t.Fatal(err)
	}
	var want []store.Change
	for i := range 20 {
		r := store.Resource{Event: "presence", Resource: fmt.Sprintf("sip:u%d@x", i%5), State: []byte("s"), Version: uint64(i + 1)}
		if i >= 5 {
			r.Prev = uint64(i - 4)
		}
		if err := b.Commit(ctx, &store.Batch{Resources: []store.Resource{r}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, store.Change{Event: r.Event, Resource: r.Resource, Version: r.Version})
	}
	// A conflict is not written, so not told; a deletion is, as version 0.
	stale := store.Resource{Event: "presence", Resource: "sip:u0@x", State: []byte("late"), Version: 99, Prev: 1}
	if err := b.Commit(ctx, &store.Batch{Resources: []store.Resource{stale}}); err == nil {
		t.Fatal("stale write committed")
	}
	gone := store.Resource{Event: "presence", Resource: "sip:u1@x", Prev: 17}
	if err := b.Commit(ctx, &store.Batch{Resources: []store.Resource{gone}}); err != nil {
		t.Fatal(err)
	}
	want = append(want, store.Change{Event: "presence", Resource: "sip:u1@x"})
	for i, w := range want {
		if c := next(t, heard); c != w {
			t.Fatalf("change %d heard: %+v, want %+v", i, c, w)
		}
	}
	select {
	case c := <-heard:
		t.Fatalf("heard more: %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
}

// One group commit's lines are split over NOTIFYs of at most 7999 bytes,
// and a resource whose line alone is longer is told as a Resync: none is
// missed.
func TestFeedSplitsLongGroups(t *testing.T) {
	_, b, heard := twoNodes(t)
	var rs []store.Resource
	for i := range 300 {
		rs = append(rs, store.Resource{Event: "presence", Resource: fmt.Sprintf("sip:%s%d@x", strings.Repeat("n", 40), i),
			State: []byte("s"), Version: uint64(i + 1)})
	}
	long := store.Resource{Event: "presence", Resource: "sip:" + strings.Repeat("l", 8000) + "@x", State: []byte("s"), Version: 7}
	if err := b.Commit(context.Background(), &store.Batch{Resources: append(rs, long)}); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if c := next(t, heard); c.Resource != r.Resource || c.Version != r.Version {
			t.Fatalf("change %d heard: %+v, want %s", i, c, r.Resource)
		}
	}
	if c := next(t, heard); !c.Resync {
		t.Fatalf("the long resource heard as %+v, want a resync", c)
	}
}

// A listening session cut (here terminated by the server) is dialled
// again and the cut told as a Resync; writes after it are heard.
func TestFeedResyncsAfterACut(t *testing.T) {
	_, b, heard := twoNodes(t)
	ctx := context.Background()
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d listening sessions: %v", n, err)
	}
	if c := next(t, heard); !c.Resync {
		t.Fatalf("after the cut heard %+v, want a resync", c)
	}
	r := store.Resource{Event: "presence", Resource: "sip:after@x", State: []byte("s"), Version: 5}
	if err := b.Commit(ctx, &store.Batch{Resources: []store.Resource{r}}); err != nil {
		t.Fatal(err)
	}
	if c := next(t, heard); c.Resource != r.Resource {
		t.Fatalf("after the cut heard %+v, want %s", c, r.Resource)
	}
}

// BenchmarkFeedDelivery is one node's commit of a resource state and
// another node hearing of it (ns/op), and of that the delay from Commit
// returning to the other node hearing: what a watcher held by another
// node waits beyond the commit.
func BenchmarkFeedDelivery(b *testing.B) {
	_, y, heard := twoNodes(b)
	ctx := context.Background()
	var wait time.Duration
	b.ResetTimer()
	for i := range b.N {
		r := store.Resource{Event: "presence", Resource: fmt.Sprintf("sip:b%d@x", i), State: []byte("s"), Version: 1}
		if err := y.Commit(ctx, &store.Batch{Resources: []store.Resource{r}}); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		if c := <-heard; c.Resource != r.Resource {
			b.Fatalf("heard %+v", c)
		}
		wait += time.Since(committed)
	}
	b.ReportMetric(float64(wait.Microseconds())/float64(b.N), "µs-after-commit/op")
}
