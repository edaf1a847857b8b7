package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Commits with deadlines from none to a few transactions, so that many
// end while the writer is taking batches: every one that returned nil is
// in the store and none that returned an error is.
func TestSQLiteCommitErrorMeansNotWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(20_000))*time.Microsecond)
			defer cancel()
			p := pub
			p.ID, p.ETag = fmt.Sprint("p", i), fmt.Sprint("e", i)
			errs[i] = s.Commit(ctx, &Batch{Publications: []Publication{p}})
		}()
	}
	wg.Wait()
	s.Close()
	s, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, p := range snap.Publications {
		stored[p.ID] = true
	}
	var failed int
	for i, err := range errs {
		id := fmt.Sprint("p", i)
		if err != nil {
			failed++
		}
		if (err == nil) != stored[id] {
			t.Errorf("%s: commit returned %v, stored %v", id, err, stored[id])
		}
	}
	t.Logf("%d of %d commits failed", failed, n)
	if failed == 0 || failed == n {
		t.Fatalf("%d of %d commits failed: the deadlines tested nothing", failed, n)
	}
}

// A group is written a table at a time, new rows many a statement: what
// it leaves is what its batches, written one after the other, would. A
// run of 45 new rows takes statements of 32, 8, 4 and 1 rows; a key put,
// deleted and put again within the group ends as its last batch says,
// a dialog's CSeq never falls, and a failing batch takes none of its
// group's queued rows into the next transaction.
func TestSQLiteGroupEndsAsItsBatchesInOrder(t *testing.T) {
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(group ...*Batch) error { return s.write(func() []*Batch { return group }) }
	res := func(id uint64, state string) Resource {
		return Resource{ID: id, Event: "presence", Resource: fmt.Sprint("sip:r", id, "@x"), State: []byte(state)}
	}
	var group []*Batch
	want := map[uint64]string{}
	for i := range 45 {
		id := uint64(100 + i)
		group = append(group, &Batch{Resources: []Resource{res(id, "new")}})
		want[id] = "new"
	}
	group = append(group,
		&Batch{Resources: []Resource{res(1, "a"), res(2, "a")}},
		&Batch{Resources: []Resource{res(1, "")}},
		&Batch{Resources: []Resource{res(1, "c"), res(2, "b")}},
		&Batch{Resources: []Resource{res(2, "c"), res(3, "a")}},
		&Batch{Resources: []Resource{res(3, "")}},
	)
	want[1], want[2] = "c", "c"
	// A dialog's CSeq only rises, whether the row that wrote it higher
	// came in the same statement (d1) or before a reservation (d2).
	withCSeq := func(id string, cseq uint32) Subscription {
		v := sub
		v.ID, v.LocalCSeq = id, cseq
		return v
	}
	group = append(group,
		&Batch{Subscriptions: []Subscription{withCSeq("d1", 50), withCSeq("d2", 5)}},
		&Batch{Subscriptions: []Subscription{withCSeq("d1", 20), withCSeq("d3", 1)}}, // four rows, one statement
		&Batch{NotifyCSeqs: []NotifyCSeq{{ID: "d2", CSeq: 40}}},
		&Batch{Subscriptions: []Subscription{withCSeq("d2", 10)}},
	)
	if err := write(group...); err != nil {
		t.Fatal(err)
	}
	// 999's row is queued when the batch after it fails (no id).
	if err := write(&Batch{Resources: []Resource{res(999, "lost")}}, &Batch{Resources: []Resource{res(0, "x")}}); !errors.Is(err, ErrNoID) {
		t.Fatalf("a resource without id: %v", err)
	}
	if err := write(&Batch{Resources: []Resource{res(4, "d")}}); err != nil {
		t.Fatal(err)
	}
	want[4] = "d"
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for _, r := range snap.Resources {
		got[r.ID] = string(r.State)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resources\n%v\nwant\n%v", got, want)
	}
	cseqs := map[string]uint32{}
	for _, v := range snap.Subscriptions {
		cseqs[v.ID] = v.LocalCSeq
	}
	if fmt.Sprint(cseqs) != "map[d1:50 d2:40 d3:1]" {
		t.Fatalf("local CSeqs %v, want d1 50 and d2 40", cseqs)
	}
}
