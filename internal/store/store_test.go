package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Every backend must pass the same tests.
func backends(t testing.TB) map[string]func() Store {
	dir := t.TempDir()
	return map[string]func() Store{
		"memory": func() Store { return NewMemory() },
		"sqlite": func() Store {
			s, err := OpenSQLite(filepath.Join(dir, "presenced.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

var (
	when = time.UnixMilli(1_800_000_000_000)
	sub  = Subscription{ID: "d1", CallID: "c", LocalTag: "l", RemoteTag: "r", LocalURI: "sip:a@x", RemoteURI: "sip:b@x",
		RemoteTarget: "sip:b@1.2.3.4", RouteSet: []string{"<sip:p1;lr>", "<sip:p2;lr>"}, Transport: "UDP",
		Source: "1.2.3.4:5060", Event: "presence", EventID: "7", Resource: "sip:a@x", Accept: []string{"application/pidf+xml"},
		Expires: when, LocalCSeq: 3, RemoteCSeq: 2, State: []byte{1, 2}, Status: "active", Created: when}
	pub = Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x", ContentType: "application/pidf+xml",
		Size: 11, Expires: when}
	res  = Resource{Event: "presence", Resource: "sip:a@x", State: []byte("state")}
	bind = Binding{ID: "b1", AOR: "sip:a@x", Contact: "sip:a@1.2.3.4", Q: "0.5", CallID: "c", CSeq: 4, Expires: when}
)

func TestCommitAndLoad(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open()
			defer s.Close()
			b := &Batch{Subscriptions: []Subscription{sub}, Publications: []Publication{pub},
				Resources: []Resource{res}, Bindings: []Binding{bind}}
			if err := s.Commit(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx, &Batch{NotifyCSeqs: []NotifyCSeq{{ID: "d1", CSeq: 9}, {ID: "gone", CSeq: 1}}}); err != nil {
				t.Fatal(err)
			}
			snap, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := sub
			want.LocalCSeq = 9
			if len(snap.Subscriptions) != 1 || !reflect.DeepEqual(snap.Subscriptions[0], want) {
				t.Fatalf("subscriptions = %+v", snap.Subscriptions)
			}
			if !reflect.DeepEqual(snap.Publications, []Publication{pub}) || !reflect.DeepEqual(snap.Resources, []Resource{res}) ||
				!reflect.DeepEqual(snap.Bindings, []Binding{bind}) {
				t.Fatalf("snapshot = %+v", snap)
			}
			// deletes, and an empty resource state deletes the resource
			err = s.Commit(ctx, &Batch{DeleteSubscriptions: []string{"d1"}, DeletePublications: []string{"p1"},
				DeleteBindings: []string{"b1"}, Resources: []Resource{{Event: "presence", Resource: "sip:a@x"}}})
			if err != nil {
				t.Fatal(err)
			}
			snap, _ = s.Load(ctx)
			if len(snap.Subscriptions)+len(snap.Publications)+len(snap.Resources)+len(snap.Bindings) != 0 {
				t.Fatalf("left after deletes: %+v", snap)
			}
		})
	}
}

// Concurrent commits all land (they share transactions).
func TestConcurrentCommits(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			defer s.Close()
			errs := make(chan error, 200)
			for i := 0; i < 200; i++ {
				go func() {
					p := pub
					p.ID, p.ETag = fmt.Sprint("p", i), fmt.Sprint("e", i)
					errs <- s.Commit(context.Background(), &Batch{Publications: []Publication{p}})
				}()
			}
			for i := 0; i < 200; i++ {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			snap, _ := s.Load(context.Background())
			if len(snap.Publications) != 200 {
				t.Fatalf("%d publications, want 200", len(snap.Publications))
			}
		})
	}
}

func TestSQLiteSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(context.Background(), &Batch{Publications: []Publication{pub}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, _ := s.Load(context.Background())
	if len(snap.Publications) != 1 {
		t.Fatalf("after reopen: %+v", snap)
	}
	// the tables read as an operator would read them
	var names []string
	rows, _ := s.db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	sort.Strings(names)
	if strings.Join(names, ",") != "bindings,publications,resources,subscriptions" {
		t.Fatalf("tables = %v", names)
	}
}

// Rewriting a subscription (a refresh) with the CSeq it had when created
// never lowers the CSeq the NOTIFY path recorded since: after a crash the
// dialog must go on above it.
func TestRewriteKeepsTheHighestCSeq(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			defer s.Close()
			ctx := context.Background()
			s.Commit(ctx, &Batch{Subscriptions: []Subscription{sub}})
			s.Commit(ctx, &Batch{NotifyCSeqs: []NotifyCSeq{{ID: sub.ID, CSeq: 40}}})
			refreshed := sub
			refreshed.RemoteCSeq = 9
			s.Commit(ctx, &Batch{Subscriptions: []Subscription{refreshed}})
			snap, _ := s.Load(ctx)
			if len(snap.Subscriptions) != 1 || snap.Subscriptions[0].LocalCSeq != 40 || snap.Subscriptions[0].RemoteCSeq != 9 {
				t.Fatalf("after the rewrite: %+v", snap.Subscriptions)
			}
		})
	}
}

// A refresh changes a publication's ETag and expiry and keeps its body.
func TestPublicationRefresh(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open()
			defer s.Close()
			ctx := context.Background()
			s.Commit(ctx, &Batch{Publications: []Publication{pub}})
			later := when.Add(time.Hour)
			s.Commit(ctx, &Batch{PublicationRefreshes: []PublicationRefresh{{ID: pub.ID, ETag: "e2", Expires: later}, {ID: "gone", ETag: "x"}}})
			snap, _ := s.Load(ctx)
			want := pub
			want.ETag, want.Expires = "e2", later
			if len(snap.Publications) != 1 || !reflect.DeepEqual(snap.Publications[0], want) {
				t.Fatalf("after the refresh: %+v", snap.Publications)
			}
		})
	}
}

// A file written by an older schema is migrated at start with every row
// kept; from version 2 the publications' bodies become their sizes, in
// bytes even for a body stored as text.
func TestSQLiteMigrates(t *testing.T) {
	for _, from := range []int{1, 2} {
		t.Run(fmt.Sprint("version", from), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "presenced.db")
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range append(migrations[:from:from], fmt.Sprintf("PRAGMA user_version = %d", from)) {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			var st stmts
			if err := st.prepare(db); err != nil {
				t.Fatal(err)
			}
			tx, _ := db.Begin()
			if err := st.apply(tx, &Batch{Subscriptions: []Subscription{sub}, Resources: []Resource{res}, Bindings: []Binding{bind}}); err != nil {
				t.Fatal(err)
			}
			tx.Commit()
			// publications as the old schemas wrote them, body and all
			for _, q := range []string{
				`INSERT INTO publications VALUES ('p1', 'e1', 'presence', 'sip:a@x', 'application/pidf+xml', CAST('<presence/>' AS BLOB), 1800000000000)`,
				`INSERT INTO publications VALUES ('p2', 'e2', 'presence', 'sip:b@x', 'application/pidf+xml', x'', 1800000001000)`,
				`INSERT INTO publications VALUES ('p3', 'e3', 'dialog', 'sip:c@x', 'text/plain', 'hé', 1800000002000)`,
			} {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()

			s, err := OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var v int
			s.db.QueryRow("PRAGMA user_version").Scan(&v)
			snap, err := s.Load(context.Background())
			if err != nil || v != schemaVersion {
				t.Fatalf("version %d, %v", v, err)
			}
			sort.Slice(snap.Publications, func(i, j int) bool { return snap.Publications[i].ID < snap.Publications[j].ID })
			want := &Snapshot{Subscriptions: []Subscription{sub}, Publications: []Publication{pub,
				{ID: "p2", ETag: "e2", Event: "presence", Resource: "sip:b@x", ContentType: "application/pidf+xml", Size: 0, Expires: when.Add(time.Second)},
				{ID: "p3", ETag: "e3", Event: "dialog", Resource: "sip:c@x", ContentType: "text/plain", Size: 3, Expires: when.Add(2 * time.Second)},
			}, Resources: []Resource{res}, Bindings: []Binding{bind}}
			if !reflect.DeepEqual(snap, want) {
				t.Fatalf("after migration:\n%+v\nwant\n%+v", snap, want)
			}
		})
	}
}

func TestSQLiteRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec("PRAGMA user_version = 99")
	db.Close()
	_, err = OpenSQLite(path)
	if err == nil || !strings.Contains(err.Error(), "newer presenced") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkCommit is one small commit (a publication and a resource state,
// what a PUBLISH writes) from many goroutines at once, as a loaded server
// issues them; group commit shares each fsync among them.
func BenchmarkCommit(b *testing.B) {
	for name, open := range backends(b) {
		b.Run(name, func(b *testing.B) {
			s := open()
			defer s.Close()
			b.SetParallelism(64)
			var n atomicCounter
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// As the server's: publication ids rise with time,
					// ETags and resources are random.
					i := n.next()
					p := pub
					p.ID, p.ETag = fmt.Sprintf("%016d", i), randomToken()
					p.Resource = fmt.Sprintf("sip:%s%d@example.com", randomToken()[:4], i)
					r := res
					r.Resource = p.Resource
					if err := s.Commit(context.Background(), &Batch{Publications: []Publication{p}, Resources: []Resource{r}}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func randomToken() string {
	var b [10]byte
	rand.Read(b[:])
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.n.Add(1) }

// BenchmarkCommitLatency is one commit at a time: the latency a lone
// request pays for durability (an fsync of the WAL), with nothing to share
// it with.
func BenchmarkCommitLatency(b *testing.B) {
	for name, open := range backends(b) {
		b.Run(name, func(b *testing.B) {
			s := open()
			defer s.Close()
			for i := 0; i < b.N; i++ {
				p := pub
				p.ID, p.ETag = fmt.Sprint("p", i), fmt.Sprint("e", i)
				if err := s.Commit(context.Background(), &Batch{Publications: []Publication{p}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
