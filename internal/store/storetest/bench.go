package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	mathrand "math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store"
)

// The commit benchmarks every backend runs, so that their figures
// compare (internal/store/RATIONALE.md): the same batches, as the server
// writes them.

// BenchmarkCommit is one small commit (a publication and a resource
// state, what a PUBLISH writes) from 64 goroutines per CPU at once, as a
// loaded server issues them; group commit shares each transaction among
// them.
func BenchmarkCommit(b *testing.B, s store.Store) {
	b.ResetTimer() // not the opening of s, which may start a server
	b.SetParallelism(64)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// As the server's: publication ids rise with time, ETags
			// and resources are random.
			i := n.Add(1)
			p := benchPub
			p.ID, p.ETag = fmt.Sprintf("%016d", i), randomToken()
			// A presentity no run wrote before: a new state (no Prev)
			// over a stored one is a conflict in a shared store, and the
			// benchmark runs several times over one store.
			p.Resource, p.ResourceID = "sip:"+randomToken()+"@example.com", nextID()
			r := store.Resource{ID: p.ResourceID, Event: "presence", Resource: p.Resource, State: []byte("state"), Version: uint64(i)}
			if err := s.Commit(context.Background(), &store.Batch{Publications: []store.Publication{p}, Resources: []store.Resource{r}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// nextID is a resource id as the server gives them: time-ordered,
// unique however many times a benchmark runs over one store.
func nextID() uint64 {
	for {
		last := lastID.Load()
		id := max(last+1, uint64(time.Now().UnixNano()))
		if lastID.CompareAndSwap(last, id) {
			return id
		}
	}
}

var lastID atomic.Uint64

// BenchmarkCommitSubscription is a new subscription's commit (what a
// SUBSCRIBE writes) from 64 goroutines per CPU at once, as
// BenchmarkCommit: its row whole, with its per-watcher state and status.
func BenchmarkCommitSubscription(b *testing.B, s store.Store) {
	b.ResetTimer()
	b.SetParallelism(64)
	var n atomic.Int64
	tag := randomToken() // the benchmark runs several times over one store
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			v := sub(i)
			v.ID = fmt.Sprintf("%s%016d.%08x", tag, i, uint32(i*2654435761)) // as dialogID: ordered, then a hash
			if err := s.Commit(context.Background(), &store.Batch{Subscriptions: []store.Subscription{v}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCommitLatency is one commit at a time: the latency a lone
// request pays for durability (a flush of the log), with nothing to share
// it with.
func BenchmarkCommitLatency(b *testing.B, s store.Store) {
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := benchPub
		p.ID, p.ETag, p.ResourceID = fmt.Sprint("p", i), fmt.Sprint("e", i), nextID()
		if err := s.Commit(context.Background(), &store.Batch{Publications: []store.Publication{p}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitStates is a crowd's rendering: one commit of 1,000
// subscriptions' per-watcher states, all the same (one document for all,
// new at each commit), the CPU a fan-out's NOTIFYs cost the store;
// reported per row. The rows are as wide as a SIP client's dialog makes
// them and the states come in no order of theirs, as the server lists
// a resource's watchers (a map): a run of them touches as many pages of
// the table as it has rows.
func BenchmarkCommitStates(b *testing.B, s store.Store) {
	const n = 1000
	subs := make([]store.Subscription, n)
	for i := range subs {
		subs[i] = sub(i)
		subs[i].ID = fmt.Sprintf("%016d.%08x", i, uint32(i*2654435761)) // as dialogID: ordered, then a hash
		subs[i].CallID = fmt.Sprintf("%d-4242@127.0.0.1", i)
		subs[i].RemoteTag = fmt.Sprintf("4242SIPpTag%d", i)
		subs[i].LocalURI = "sip:fanout_1_pres@example.com"
		subs[i].RemoteURI = fmt.Sprintf("sip:fanout_1_watch%d@example.com", i)
		subs[i].RemoteTarget = fmt.Sprintf("sip:fanout_1_watch%d@127.0.0.1:5070;transport=UDP", i)
		subs[i].RouteSet = nil
		subs[i].Source = "127.0.0.1:5070"
		subs[i].Resource = "sip:fanout_1_pres@example.com"
		subs[i].Accept = []string{"application/pidf+xml"}
	}
	if err := s.Commit(context.Background(), &store.Batch{Subscriptions: subs}); err != nil {
		b.Fatal(err)
	}
	order := mathrand.New(mathrand.NewPCG(1, 2)).Perm(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// pa's per-watcher state: a digest of the document, 10 bytes
		state := binary.BigEndian.AppendUint64([]byte{10, 8}, uint64(i)*0x9e3779b97f4a7c15)
		states := make([]store.SubscriptionState, n)
		for j, k := range order {
			states[j] = store.SubscriptionState{ID: subs[k].ID, State: state, Status: "active"}
		}
		if err := s.Commit(context.Background(), &store.Batch{SubscriptionStates: states}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}

var benchPub = store.Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x",
	ContentType: "application/pidf+xml", Size: 11, Expires: time.UnixMilli(1_800_000_000_000)}

func randomToken() string {
	var b [10]byte
	rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// BenchmarkLoadResource is reading one resource's state back among
// 10,000 stored (a 300-byte state each): what the server pays when a
// watcher comes to a presentity nobody watched, whose state it does not
// hold.
func BenchmarkLoadResource(b *testing.B, s store.Store) {
	const n = 10000
	state := make([]byte, 300)
	batch := &store.Batch{}
	for i := range n {
		batch.Resources = append(batch.Resources, store.Resource{ID: nextID(), Event: "presence",
			Resource: fmt.Sprintf("sip:load%d-%s@example.com", i, randomToken()), State: state, Version: uint64(i + 1)})
	}
	if err := s.Commit(context.Background(), batch); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r := batch.Resources[i%n]
		i++
		got, err := s.LoadResource(context.Background(), r.ID, r.Event, r.Resource)
		if err != nil || len(got.State) != len(state) {
			b.Fatal(err, len(got.State))
		}
	}
}
