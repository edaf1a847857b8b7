package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/store"
)

// Run runs the suite every store.Store backend must pass: what the server
// relies on from any of them. open returns a new, empty store; the suite
// closes it. Times are compared to the millisecond, and an empty slice
// equals a nil one.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tt := range []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"EveryKindRoundTrips", everyKindRoundTrips},
		{"LoadReturnsEverything", loadReturnsEverything},
		{"ReplaceByID", replaceByID},
		{"Delete", deleteRecords},
		{"RefreshKeepsThePublication", refreshKeepsThePublication},
		{"StateAndPublicationsApart", stateAndPublicationsApart},
		{"SubscriptionStateKeepsTheRest", subscriptionStateKeepsTheRest},
		{"SubscriptionStatesInOrder", subscriptionStatesInOrder},
		{"LoadSubscriptionsByID", loadSubscriptionsByID},
		{"LocalCSeqNeverLowered", localCSeqNeverLowered},
		{"BatchesAreAtomic", batchesAreAtomic},
		{"ConcurrentCommitsAllLand", concurrentCommitsAllLand},
		{"CommitCopies", commitCopies},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, opened(t, open)) })
	}
}

// RunShared runs, beside Run, what a store that several servers may
// write at once (PostgreSQL; Memory, which tests share between servers)
// must pass too: a resource write lands only on the version it was
// computed from (store.Resource).
func RunShared(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tt := range []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"ResourceWritesCheckTheVersion", resourceWritesCheckTheVersion},
		{"AConflictFailsItsBatchAlone", aConflictFailsItsBatchAlone},
		{"StalePublicationDeletionFails", stalePublicationDeletionFails},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, opened(t, open)) })
	}
}

// RunKeyed runs, beside Run, what a store that keeps the resource ids
// the server gives (SQLite, which keys its rows by them; Memory) must
// pass too: the id written is the one Load and LoadResource return, and
// a write without one fails its batch.
func RunKeyed(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("ResourceIDsRoundTrip", func(t *testing.T) { resourceIDsRoundTrip(t, opened(t, open)) })
}

// opened is a new store from open, closed when t ends.
func opened(t *testing.T, open func(t *testing.T) store.Store) store.Store {
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

var when = time.UnixMilli(1_800_000_000_000)

// sub, pub, res and bind are records with every field set, i made part of
// each key.
func sub(i int) store.Subscription {
	return store.Subscription{ID: fmt.Sprint("d", i), CallID: fmt.Sprint("c", i), LocalTag: "l", RemoteTag: "r",
		LocalURI: "sip:a@x", RemoteURI: "sip:b@x", RemoteTarget: "sip:b@192.0.2.1", RouteSet: []string{"<sip:p1;lr>", "<sip:p2;lr>"},
		Transport: "UDP", Source: "192.0.2.1:5060", Event: "presence", EventID: "7", Resource: fmt.Sprintf("sip:a%d@x", i),
		Accept: []string{"application/pidf+xml", "multipart/related"}, Expires: when.Add(time.Duration(i) * time.Second),
		LocalCSeq: 3, RemoteCSeq: 2, State: []byte{1, 2, byte(i)}, Status: "active", Created: when}
}

func pub(i int) store.Publication {
	return store.Publication{ID: fmt.Sprintf("%016d", i), ETag: fmt.Sprint("e", i), Event: "presence",
		Resource: fmt.Sprintf("sip:a%d@x", i), ContentType: "application/pidf+xml", Size: 300 + i, Expires: when,
		ResourceID: res(i).ID}
}

func ref(p store.Publication) store.PublicationRef {
	return store.PublicationRef{ID: p.ID, ETag: p.ETag, ResourceID: p.ResourceID}
}

func res(i int) store.Resource {
	return store.Resource{ID: uint64(i) + 100, Event: "presence", Resource: fmt.Sprintf("sip:a%d@x", i),
		State: []byte(fmt.Sprint("state", i)), Version: uint64(i) + 1}
}

// next is r's next write: state, with a version of its own.
func next(r store.Resource, state string) store.Resource {
	r.Prev, r.Version, r.State = r.Version, r.Version+1000, []byte(state)
	if state == "" {
		r.Version, r.State = 0, nil
	}
	return r
}

func bind(i int) store.Binding {
	return store.Binding{ID: fmt.Sprint("b", i), AOR: "sip:a@x", Contact: fmt.Sprintf("sip:a@192.0.2.%d", i%250),
		Q: "0.5", CallID: "c", CSeq: uint32(i), Expires: when,
		Instance: fmt.Sprintf("<urn:uuid:00000000-0000-1000-8000-%012d>", i), RegID: uint32(i%3 + 1),
		Path: []string{"<sip:edge.x;lr;ob>", "<sip:core.x;lr>"}}
}

func commit(t *testing.T, s store.Store, b *store.Batch) {
	t.Helper()
	if err := s.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func load(t *testing.T, s store.Store) *store.Snapshot {
	t.Helper()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if snap == nil {
		t.Fatal("Load returned no snapshot and no error")
	}
	return normal(snap)
}

// normal is snap in the form the suite compares: records in key order,
// times in UTC to the millisecond, empty slices nil, no resource versions
// (which only a store several servers share keeps: RunShared checks
// them) and no resource ids, a publication's included (which PostgreSQL
// does not keep: RunKeyed checks them).
func normal(snap *store.Snapshot) *store.Snapshot {
	ms := func(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
	n := &store.Snapshot{}
	for _, v := range snap.Subscriptions {
		v.Expires, v.Created = ms(v.Expires), ms(v.Created)
		v.RouteSet, v.Accept, v.State = nilIfEmpty(v.RouteSet), nilIfEmpty(v.Accept), nilIfEmpty(v.State)
		n.Subscriptions = append(n.Subscriptions, v)
	}
	for _, v := range snap.Publications {
		v.Expires, v.ResourceID = ms(v.Expires), 0
		n.Publications = append(n.Publications, v)
	}
	for _, v := range snap.Resources {
		v.State, v.Version, v.Prev, v.ID = nilIfEmpty(v.State), 0, 0, 0
		n.Resources = append(n.Resources, v)
	}
	for _, v := range snap.Bindings {
		v.Expires, v.Path = ms(v.Expires), nilIfEmpty(v.Path)
		n.Bindings = append(n.Bindings, v)
	}
	slices.SortFunc(n.Subscriptions, func(a, b store.Subscription) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(n.Publications, func(a, b store.Publication) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(n.Resources, func(a, b store.Resource) int {
		return cmp.Or(cmp.Compare(a.Event, b.Event), cmp.Compare(a.Resource, b.Resource))
	})
	slices.SortFunc(n.Bindings, func(a, b store.Binding) int { return cmp.Compare(a.ID, b.ID) })
	return n
}

func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

func wantSnapshot(t *testing.T, s store.Store, want *store.Snapshot) {
	t.Helper()
	got, want := load(t, s), normal(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded:\n%+v\nwant:\n%+v", got, want)
	}
}

// Every field of every kind of record comes back as it was committed,
// CSeqs over the whole uint32 range.
func everyKindRoundTrips(t *testing.T, s store.Store) {
	wantSnapshot(t, s, &store.Snapshot{})
	big, bound := sub(1), bind(1)
	big.LocalCSeq, big.RemoteCSeq, bound.CSeq, bound.RegID = math.MaxUint32, math.MaxUint32-1, math.MaxUint32, math.MaxInt32
	empty := sub(2)
	empty.RouteSet, empty.Accept, empty.State, empty.EventID = nil, nil, nil, ""
	plain := bind(2) // a binding identified by its contact, as RFC 3261 alone has it
	plain.Instance, plain.RegID, plain.Path = "", 0, nil
	b := &store.Batch{Subscriptions: []store.Subscription{big, empty}, Publications: []store.Publication{pub(1)},
		Resources: []store.Resource{res(1)}, Bindings: []store.Binding{bound, plain}}
	commit(t, s, b)
	wantSnapshot(t, s, snapshot(b))
}

// Load returns every record committed, over many batches.
func loadReturnsEverything(t *testing.T, s store.Store) {
	want := &store.Snapshot{}
	for i := range 1000 {
		want.Subscriptions = append(want.Subscriptions, sub(i))
		want.Publications = append(want.Publications, pub(i))
		want.Resources = append(want.Resources, res(i))
		want.Bindings = append(want.Bindings, bind(i))
	}
	for i := 0; i < 1000; i += 100 {
		commit(t, s, &store.Batch{Subscriptions: want.Subscriptions[i : i+100], Publications: want.Publications[i : i+100],
			Resources: want.Resources[i : i+100], Bindings: want.Bindings[i : i+100]})
	}
	wantSnapshot(t, s, want)
}

// A record committed again under its key replaces the one before.
func replaceByID(t *testing.T, s store.Store) {
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{sub(1), sub(2)}, Publications: []store.Publication{pub(1), pub(2)},
		Resources: []store.Resource{res(1), res(2)}, Bindings: []store.Binding{bind(1), bind(2)}})
	d := sub(1)
	d.RemoteTarget, d.RouteSet, d.Accept, d.State, d.Status, d.Expires = "sip:b@192.0.2.9", nil, []string{"a/b"}, []byte("new"), "pending", when.Add(time.Hour)
	p := pub(1)
	p.ETag, p.ContentType, p.Size, p.Expires = "e9", "application/xpidf+xml", 7, when.Add(time.Hour)
	r := next(res(1), "new state")
	bd := bind(1)
	bd.Contact, bd.Q, bd.CallID, bd.CSeq, bd.Expires = "sip:a@192.0.2.99", "", "c2", 9, when.Add(time.Hour)
	bd.RegID, bd.Path = 7, []string{"<sip:other-edge.x;lr>"}
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{d}, Publications: []store.Publication{p},
		Resources: []store.Resource{r}, Bindings: []store.Binding{bd}})
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: []store.Subscription{d, sub(2)}, Publications: []store.Publication{p, pub(2)},
		Resources: []store.Resource{r, res(2)}, Bindings: []store.Binding{bd, bind(2)}})
}

// Deletes remove only what they name, a resource with an empty state is
// deleted, and deleting a subscription, resource or binding that is not
// there is no error.
func deleteRecords(t *testing.T, s store.Store) {
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{sub(1), sub(2)}, Publications: []store.Publication{pub(1), pub(2)},
		Resources: []store.Resource{res(1), res(2), res(3)}, Bindings: []store.Binding{bind(1), bind(2)}})
	gone := next(res(1), "")
	gone2 := next(res(3), "")
	gone2.State = []byte{}
	commit(t, s, &store.Batch{DeleteSubscriptions: []string{sub(1).ID, "nothing"}, DeletePublications: []store.PublicationRef{ref(pub(1))},
		Resources: []store.Resource{gone, gone2, {ID: 999, Event: "presence", Resource: "sip:nobody@x"}}, DeleteBindings: []string{bind(1).ID, "nothing"}})
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: []store.Subscription{sub(2)}, Publications: []store.Publication{pub(2)},
		Resources: []store.Resource{res(2)}, Bindings: []store.Binding{bind(2)}})
}

// A refresh gives a publication a new ETag and expiry and keeps the rest;
// a refresh of a publication that is not there creates nothing.
func refreshKeepsThePublication(t *testing.T, s store.Store) {
	commit(t, s, &store.Batch{Publications: []store.Publication{pub(1), pub(2)}})
	later := when.Add(time.Hour)
	commit(t, s, &store.Batch{PublicationRefreshes: []store.PublicationRefresh{{ID: pub(1).ID, ETag: "e9", Expires: later, ResourceID: pub(1).ResourceID},
		{ID: "nothing", ETag: "e10", Expires: later, ResourceID: pub(1).ResourceID}, {ID: "nothing", ETag: "e11", Expires: later, ResourceID: 999}}})
	want := pub(1)
	want.ETag, want.Expires = "e9", later
	wantSnapshot(t, s, &store.Snapshot{Publications: []store.Publication{want, pub(2)}})
}

// A resource's state and its publications are kept and deleted apart:
// publications outlive a deleted state and come back without one, a
// state outlives its last publication, and a refresh or modify leaves
// the state and the resource's other publications.
func stateAndPublicationsApart(t *testing.T, s store.Store) {
	p1, p2 := pub(1), pub(1)
	p2.ID, p2.ETag = pub(2).ID, "e2"
	commit(t, s, &store.Batch{Publications: []store.Publication{p1, p2}, Resources: []store.Resource{res(1)}})
	wantSnapshot(t, s, &store.Snapshot{Publications: []store.Publication{p1, p2}, Resources: []store.Resource{res(1)}})
	commit(t, s, &store.Batch{Resources: []store.Resource{next(res(1), "")}})
	wantSnapshot(t, s, &store.Snapshot{Publications: []store.Publication{p1, p2}})
	wantPublications(t, s, res(1), p1, p2)
	wantPublications(t, s, res(2))
	r := next(res(1), "again")
	r.Prev = 0
	modified := p2
	modified.ETag, modified.Size = "e2b", 5
	commit(t, s, &store.Batch{Publications: []store.Publication{modified}, Resources: []store.Resource{r}})
	commit(t, s, &store.Batch{PublicationRefreshes: []store.PublicationRefresh{{ID: p1.ID, ETag: "e1b", Expires: when.Add(time.Hour), ResourceID: p1.ResourceID}}})
	refreshed := p1
	refreshed.ETag, refreshed.Expires = "e1b", when.Add(time.Hour)
	wantSnapshot(t, s, &store.Snapshot{Publications: []store.Publication{refreshed, modified}, Resources: []store.Resource{r}})
	wantPublications(t, s, r, refreshed, modified)
	commit(t, s, &store.Batch{DeletePublications: []store.PublicationRef{ref(refreshed), ref(modified)}})
	wantSnapshot(t, s, &store.Snapshot{Resources: []store.Resource{r}})
	wantPublications(t, s, r)
	commit(t, s, &store.Batch{Resources: []store.Resource{next(r, "")}})
	wantSnapshot(t, s, &store.Snapshot{})
}

// wantPublications checks what LoadPublications returns for r: want, in
// any order.
func wantPublications(t *testing.T, s store.Store, r store.Resource, want ...store.Publication) {
	t.Helper()
	got, err := s.LoadPublications(context.Background(), r.ID, r.Event, r.Resource)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := normal(&store.Snapshot{Publications: got}), normal(&store.Snapshot{Publications: want}); !reflect.DeepEqual(g, w) {
		t.Fatalf("LoadPublications of %s: %+v, want %+v", r.Resource, g.Publications, w.Publications)
	}
}

// A SubscriptionState changes a subscription's state and status alone,
// after a NotifyCSeq too, and one for a subscription not stored creates
// nothing.
func subscriptionStateKeepsTheRest(t *testing.T, s store.Store) {
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{sub(1), sub(2)}})
	commit(t, s, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: sub(1).ID, CSeq: 40}}})
	commit(t, s, &store.Batch{SubscriptionStates: []store.SubscriptionState{{ID: sub(1).ID, State: []byte("sent v2"), Status: "pending"},
		{ID: "nothing", State: []byte("x"), Status: "active"}}})
	want := sub(1)
	want.LocalCSeq, want.State, want.Status = 40, []byte("sent v2"), "pending"
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: []store.Subscription{want, sub(2)}})
}

// LoadSubscriptions returns the stored subscriptions named, as Load
// would (their latest state, status and CSeq), and leaves out an id not
// stored or deleted; more ids than a store may put in one query (SQLite
// takes 500 to a statement) come back all the same.
func loadSubscriptionsByID(t *testing.T, s store.Store) {
	const n = 1100
	var subs []store.Subscription
	for i := range n {
		subs = append(subs, sub(i))
	}
	commit(t, s, &store.Batch{Subscriptions: subs})
	commit(t, s, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: sub(1).ID, CSeq: 40}},
		SubscriptionStates:  []store.SubscriptionState{{ID: sub(1).ID, State: []byte("sent v2"), Status: "pending"}},
		DeleteSubscriptions: []string{sub(2).ID}})
	wantSubscriptions := func(ids []string, want ...store.Subscription) {
		t.Helper()
		got, err := s.LoadSubscriptions(context.Background(), ids)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := normal(&store.Snapshot{Subscriptions: got}), normal(&store.Snapshot{Subscriptions: want}); !reflect.DeepEqual(g, w) {
			t.Fatalf("LoadSubscriptions(%d ids): %d subscriptions, want %d; first %+v, want %+v",
				len(ids), len(g.Subscriptions), len(w.Subscriptions), g.Subscriptions[:min(1, len(g.Subscriptions))], w.Subscriptions[:min(1, len(w.Subscriptions))])
		}
	}
	one := sub(1)
	one.LocalCSeq, one.State, one.Status = 40, []byte("sent v2"), "pending"
	wantSubscriptions([]string{sub(1).ID}, one)
	wantSubscriptions([]string{sub(3).ID, "nothing", sub(2).ID, sub(1).ID}, sub(3), one)
	wantSubscriptions(nil)
	var ids []string
	var want []store.Subscription
	for i := n - 1; i >= 3; i-- {
		ids = append(ids, sub(i).ID)
		want = append(want, sub(i))
	}
	wantSubscriptions(ids, want...)
}

// A batch of many SubscriptionStates, most of them alike (a crowd's
// rendering, which a store may write a run at a time), lands in order:
// a subscription named twice ends as the last says, one not stored is
// not created, and a state differing in its status alone is kept apart.
func subscriptionStatesInOrder(t *testing.T, s store.Store) {
	const n = 150
	var subs []store.Subscription
	for i := range n {
		subs = append(subs, sub(i))
	}
	commit(t, s, &store.Batch{Subscriptions: subs})
	var states []store.SubscriptionState
	for i := range n {
		states = append(states, store.SubscriptionState{ID: sub(i).ID, State: []byte("sent v2"), Status: "active"})
		if i == 70 {
			states = append(states, store.SubscriptionState{ID: "nothing", State: []byte("sent v2"), Status: "active"})
		}
	}
	states[100].Status = "pending"
	states = append(states, store.SubscriptionState{ID: sub(3).ID, State: []byte("sent v3"), Status: "active"})
	commit(t, s, &store.Batch{SubscriptionStates: states})
	for i := range subs {
		subs[i].State = []byte("sent v2")
	}
	subs[3].State = []byte("sent v3")
	subs[99].Status = "pending" // states[100]: the one after "nothing"
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: subs})
}

// A dialog's local CSeq only rises: a rewrite of its subscription (a
// refresh, a new state) carrying an older CSeq keeps the stored one, and
// so does a lower NotifyCSeq; a NotifyCSeq of a subscription that is not
// there creates nothing. After a restart the dialog must go on above the
// last CSeq it used.
func localCSeqNeverLowered(t *testing.T, s store.Store) {
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{sub(1)}})
	commit(t, s, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: sub(1).ID, CSeq: 40}, {ID: "nothing", CSeq: 50}}})
	rewrite := sub(1)
	rewrite.RemoteCSeq, rewrite.State = 9, []byte("new")
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{rewrite}})
	commit(t, s, &store.Batch{NotifyCSeqs: []store.NotifyCSeq{{ID: sub(1).ID, CSeq: 39}}})
	want := rewrite
	want.LocalCSeq = 40
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: []store.Subscription{want}})

	// and a rewrite with a higher CSeq raises it
	rewrite.LocalCSeq = 41
	commit(t, s, &store.Batch{Subscriptions: []store.Subscription{rewrite}})
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: []store.Subscription{rewrite}})
}

// A Load beside the commits sees each batch whole or not at all: every
// batch replaces one set of records (one of each kind) with the next, so
// every snapshot holds exactly one whole set.
func batchesAreAtomic(t *testing.T, s store.Store) {
	set := func(i int) *store.Batch {
		b := &store.Batch{Subscriptions: []store.Subscription{sub(i)}, Publications: []store.Publication{pub(i)},
			Resources: []store.Resource{res(i)}, Bindings: []store.Binding{bind(i)}}
		if i > 0 {
			gone := next(res(i-1), "")
			b.DeleteSubscriptions, b.DeletePublications = []string{sub(i - 1).ID}, []store.PublicationRef{ref(pub(i - 1))}
			b.Resources, b.DeleteBindings = append(b.Resources, gone), []string{bind(i - 1).ID}
		}
		return b
	}
	commit(t, s, set(0))
	const n = 300
	var wg sync.WaitGroup
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 1; i < n; i++ {
			if err := s.Commit(context.Background(), set(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	loads := 0
	for finished := false; !finished; loads++ {
		select {
		case <-done:
			finished = true
		default:
		}
		snap := load(t, s)
		if len(snap.Subscriptions) != 1 || len(snap.Publications) != 1 || len(snap.Resources) != 1 || len(snap.Bindings) != 1 {
			t.Fatalf("after %d loads, a snapshot of %d subscriptions, %d publications, %d resources, %d bindings",
				loads, len(snap.Subscriptions), len(snap.Publications), len(snap.Resources), len(snap.Bindings))
		}
		i, _ := strconv.Atoi(snap.Subscriptions[0].ID[1:])
		if want := normal(snapshot(set(i))); !reflect.DeepEqual(snap, want) {
			t.Fatalf("after %d loads, a snapshot mixing batches: %s", loads, keys(snap))
		}
	}
	wg.Wait()
	wantSnapshot(t, s, snapshot(set(n-1)))
}

// keys are the keys of snap's records.
func keys(snap *store.Snapshot) string {
	var subs, pubs, res, binds []string
	for _, v := range snap.Subscriptions {
		subs = append(subs, v.ID)
	}
	for _, v := range snap.Publications {
		pubs = append(pubs, v.ID)
	}
	for _, v := range snap.Resources {
		res = append(res, v.Event+" "+v.Resource)
	}
	for _, v := range snap.Bindings {
		binds = append(binds, v.ID)
	}
	return fmt.Sprintf("subscriptions %q, publications %q, resources %q, bindings %q", subs, pubs, res, binds)
}

// snapshot is the records b inserts or replaces.
func snapshot(b *store.Batch) *store.Snapshot {
	snap := &store.Snapshot{Subscriptions: b.Subscriptions, Publications: b.Publications, Bindings: b.Bindings}
	for _, r := range b.Resources {
		if len(r.State) > 0 {
			snap.Resources = append(snap.Resources, r)
		}
	}
	return snap
}

// Commits from many goroutines at once all land.
func concurrentCommitsAllLand(t *testing.T, s store.Store) {
	const n = 200
	want := &store.Snapshot{}
	errs := make(chan error, n)
	for i := range n {
		want.Publications = append(want.Publications, pub(i))
		want.Subscriptions = append(want.Subscriptions, sub(i))
		go func() {
			errs <- s.Commit(context.Background(), &store.Batch{Publications: []store.Publication{pub(i)}, Subscriptions: []store.Subscription{sub(i)}})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wantSnapshot(t, s, want)
}

// A resource write lands only on the version it was computed from (its
// Prev), and a batch with one that does not is not written at all, with
// ErrConflict: two nodes writing one resource from one version cannot
// both land. A version is never mistaken for one from before a deletion.
func resourceWritesCheckTheVersion(t *testing.T, s store.Store) {
	ctx := context.Background()
	conflict := func(what string, b *store.Batch) {
		t.Helper()
		if err := s.Commit(ctx, b); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: Commit returned %v, want ErrConflict", what, err)
		}
	}
	loadRes := func(want store.Resource) {
		t.Helper()
		got, err := s.LoadResource(ctx, want.ID, want.Event, want.Resource)
		if err != nil {
			t.Fatal(err)
		}
		got.State, want.State, want.Prev = nilIfEmpty(got.State), nilIfEmpty(want.State), 0
		got.ID, want.ID = 0, 0 // RunKeyed checks them
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("LoadResource: %+v, want %+v", got, want)
		}
	}
	none := store.Resource{ID: res(1).ID, Event: "presence", Resource: "sip:a1@x"}
	loadRes(none) // never written: version 0, no state

	v1 := res(1)
	commit(t, s, &store.Batch{Resources: []store.Resource{v1}})
	loadRes(v1)
	// Another writer that saw none, or saw a version that is not stored,
	// conflicts, and nothing of its batch is written.
	other := res(1)
	other.Version, other.State = 77, []byte("other")
	conflict("a new state over a stored one", &store.Batch{Resources: []store.Resource{other}, Publications: []store.Publication{pub(1)}})
	stale := next(v1, "stale")
	stale.Prev = 12345
	conflict("a write from a version never stored", &store.Batch{Resources: []store.Resource{stale}, Subscriptions: []store.Subscription{sub(1)}})
	empty := none
	conflict("an empty state that saw none, over a stored one", &store.Batch{Resources: []store.Resource{empty}})
	wantSnapshot(t, s, &store.Snapshot{Resources: []store.Resource{v1}})

	// The writer that read v1 lands, once; a second write from v1 is late.
	v2 := next(v1, "two")
	commit(t, s, &store.Batch{Resources: []store.Resource{v2}})
	loadRes(v2)
	conflict("a second write from one version", &store.Batch{Resources: []store.Resource{next(v1, "late")}})
	conflict("a deletion from an old version", &store.Batch{Resources: []store.Resource{next(v1, "")}})

	// Deleted: a writer still holding v2 conflicts rather than bringing
	// it back, and one that saw none writes.
	commit(t, s, &store.Batch{Resources: []store.Resource{next(v2, "")}})
	loadRes(none)
	conflict("a write over a deleted resource", &store.Batch{Resources: []store.Resource{next(v2, "back")}})
	again := res(1)
	again.Version, again.State = 9, []byte("again")
	commit(t, s, &store.Batch{Resources: []store.Resource{again}})
	conflict("a write from the version before the deletion", &store.Batch{Resources: []store.Resource{next(v2, "aba")}})
	wantSnapshot(t, s, &store.Snapshot{Resources: []store.Resource{again}})

	// The largest version a writer may choose (bigint in PostgreSQL)
	// comes back from Load and LoadResource, and is written over.
	top := next(again, "top")
	top.Version = math.MaxInt64
	commit(t, s, &store.Batch{Resources: []store.Resource{top}})
	loadRes(top)
	snap, err := s.Load(ctx)
	if err != nil || len(snap.Resources) != 1 || snap.Resources[0].Version != top.Version {
		t.Fatalf("Load: %+v, %v; want version %d", snap, err, top.Version)
	}
	commit(t, s, &store.Batch{Resources: []store.Resource{next(top, "")}})
	loadRes(none)
}

// Batches committed at once, some conflicting, share a group commit in
// the stores that have one: those conflicting fail, and only they.
func aConflictFailsItsBatchAlone(t *testing.T, s store.Store) {
	const n = 100
	ctx := context.Background()
	var stored []store.Resource
	for i := range n {
		stored = append(stored, res(i))
	}
	commit(t, s, &store.Batch{Resources: stored})
	want := &store.Snapshot{}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		r := next(res(i), fmt.Sprint("new", i))
		if i%3 == 0 {
			r.Prev = 5000 // not the stored version
			want.Resources = append(want.Resources, res(i))
		} else {
			want.Resources = append(want.Resources, r)
			want.Publications = append(want.Publications, pub(i))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Commit(ctx, &store.Batch{Resources: []store.Resource{r}, Publications: []store.Publication{pub(i)}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%3 == 0 && !errors.Is(err, store.ErrConflict) {
			t.Errorf("batch %d, conflicting: %v, want ErrConflict", i, err)
		}
		if i%3 != 0 && err != nil {
			t.Errorf("batch %d: %v", i, err)
		}
	}
	wantSnapshot(t, s, want)
}

// A committed batch is the store's: the caller may reuse its records and
// their slices.
func commitCopies(t *testing.T, s store.Store) {
	d, r, bd := sub(1), res(1), bind(1)
	b := &store.Batch{Subscriptions: []store.Subscription{d}, Resources: []store.Resource{r}, Bindings: []store.Binding{bd}}
	commit(t, s, b)
	d.State[0], d.RouteSet[0], d.Accept[0], r.State[0], bd.Path[0] = 99, "<sip:changed>", "changed", 'X', "<sip:changed>"
	b.Subscriptions[0].ID = "changed"
	wantSnapshot(t, s, &store.Snapshot{Subscriptions: []store.Subscription{sub(1)}, Resources: []store.Resource{res(1)},
		Bindings: []store.Binding{bind(1)}})
}

// A publication is deleted only under the ETag stored: the deletion of
// one refreshed (new ETag) or removed since fails its whole batch with
// ErrStalePublication, so a node removing another node's publication at
// its expiry cannot remove one refreshed meanwhile. Expired lists only
// what expired before the time given, Publication finds one by its
// current ETag alone.
func stalePublicationDeletionFails(t *testing.T, s store.Store) {
	ctx := context.Background()
	early := pub(2)
	early.Expires = when.Add(-time.Minute)
	commit(t, s, &store.Batch{Publications: []store.Publication{pub(1), early}, Resources: []store.Resource{res(1)}})
	stale := ref(pub(1))
	commit(t, s, &store.Batch{PublicationRefreshes: []store.PublicationRefresh{{ID: stale.ID, ETag: "refreshed", Expires: when, ResourceID: stale.ResourceID}}})
	for what, r := range map[string]store.PublicationRef{"refreshed": stale, "absent": {ID: "nothing", ETag: "e"}} {
		err := s.Commit(ctx, &store.Batch{DeletePublications: []store.PublicationRef{r}, Resources: []store.Resource{next(res(1), "")}})
		if !errors.Is(err, store.ErrStalePublication) {
			t.Fatalf("deletion of a publication %s: Commit returned %v, want ErrStalePublication", what, err)
		}
	}
	refreshed := pub(1)
	refreshed.ETag = "refreshed"
	wantSnapshot(t, s, &store.Snapshot{Publications: []store.Publication{refreshed, early}, Resources: []store.Resource{res(1)}})
	if l, ok := store.As[store.Leases](s); ok {
		got, err := l.Expired(ctx, when.Add(-time.Second))
		if err != nil || len(got) != 1 || got[0].ID != early.ID {
			t.Fatalf("Expired before %v: %v, %v; want %s alone", when.Add(-time.Second), got, err, early.ID)
		}
	}
	if l, ok := store.As[store.Leases](s); ok {
		for _, etag := range []string{"refreshed", stale.ETag} {
			got, found, err := l.Publication(ctx, refreshed.Event, refreshed.Resource, etag)
			if want := etag == "refreshed"; err != nil || found != want || (want && got.ID != refreshed.ID) {
				t.Fatalf("Publication of ETag %s: %v, %v, %v", etag, got, found, err)
			}
		}
	}
	commit(t, s, &store.Batch{DeletePublications: []store.PublicationRef{{ID: stale.ID, ETag: "refreshed", ResourceID: stale.ResourceID}}})
	wantSnapshot(t, s, &store.Snapshot{Publications: []store.Publication{early}, Resources: []store.Resource{res(1)}})
}

func resourceIDsRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	loadRes := func(want store.Resource) {
		t.Helper()
		got, err := s.LoadResource(ctx, want.ID, want.Event, want.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || !slices.Equal(got.State, want.State) {
			t.Fatalf("LoadResource: %+v, want id %d state %q", got, want.ID, want.State)
		}
	}
	wantResources := func(want ...store.Resource) {
		t.Helper()
		snap, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := snap.Resources
		slices.SortFunc(got, func(a, b store.Resource) int { return cmp.Compare(a.ID, b.ID) })
		if len(got) != len(want) {
			t.Fatalf("loaded %+v, want %+v", got, want)
		}
		for i := range want {
			if g, w := got[i], want[i]; g.ID != w.ID || g.Event != w.Event || g.Resource != w.Resource || !slices.Equal(g.State, w.State) {
				t.Fatalf("loaded %+v, want %+v", g, w)
			}
		}
	}
	// Ids as the server's: nanoseconds since 1970, and one more.
	a, b := res(1), res(2)
	a.ID, b.ID = 1_800_000_000_000_000_000, 1_800_000_000_000_000_001
	commit(t, s, &store.Batch{Resources: []store.Resource{a, b}})
	loadRes(a)
	loadRes(b)
	wantResources(a, b)

	// Written again under its id: one row, the new state.
	a2 := next(a, "two")
	commit(t, s, &store.Batch{Resources: []store.Resource{a2}})
	loadRes(a2)
	wantResources(a2, b)

	// A write without an id fails its batch, which writes nothing.
	noID := res(3)
	noID.ID = 0
	if err := s.Commit(ctx, &store.Batch{Resources: []store.Resource{noID}, Publications: []store.Publication{pub(3)}}); !errors.Is(err, store.ErrNoID) {
		t.Fatalf("a resource without an id: Commit returned %v, want ErrNoID", err)
	}
	wantSnapshot(t, s, &store.Snapshot{Resources: []store.Resource{a2, b}})

	// A publication comes back with its resource's id.
	p := pub(1)
	p.Resource, p.ResourceID = a.Resource, a.ID
	commit(t, s, &store.Batch{Publications: []store.Publication{p}})
	if snap, err := s.Load(ctx); err != nil || len(snap.Publications) != 1 || snap.Publications[0].ResourceID != a.ID {
		t.Fatalf("loaded publications %+v, %v; want one of resource id %d", snap.Publications, err, a.ID)
	}
	commit(t, s, &store.Batch{DeletePublications: []store.PublicationRef{ref(p)}})

	// Deleted by its id: gone from LoadResource and from Load.
	commit(t, s, &store.Batch{Resources: []store.Resource{next(a2, "")}})
	if got, err := s.LoadResource(ctx, a.ID, a.Event, a.Resource); err != nil || got.ID != 0 || len(got.State) != 0 {
		t.Fatalf("LoadResource of a deleted resource: %+v, %v", got, err)
	}
	wantResources(b)
}
