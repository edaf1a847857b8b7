package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var (
	when = time.UnixMilli(1_800_000_000_000)
	sub  = Subscription{ID: "d1", CallID: "c", LocalTag: "l", RemoteTag: "r", LocalURI: "sip:a@x", RemoteURI: "sip:b@x",
		RemoteTarget: "sip:b@1.2.3.4", RouteSet: []string{"<sip:p1;lr>", "<sip:p2;lr>"}, Transport: "UDP",
		Source: "1.2.3.4:5060", Event: "presence", EventID: "7", Resource: "sip:a@x", Accept: []string{"application/pidf+xml"},
		Expires: when, LocalCSeq: 3, RemoteCSeq: 2, State: []byte{1, 2}, Status: "active", Created: when}
	pub = Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x", ContentType: "application/pidf+xml",
		Size: 11, Expires: when, ResourceID: 1}
	res  = Resource{ID: 1, Event: "presence", Resource: "sip:a@x", State: []byte("state")} // the first row of a migrated file
	bind = Binding{ID: "b1", AOR: "sip:a@x", Contact: "sip:a@1.2.3.4", Q: "0.5", CallID: "c", CSeq: 4, Expires: when}
)

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
	rows, _ := s.read.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	sort.Strings(names)
	if strings.Join(names, ",") != "bindings,resources,subscription_states,subscriptions" {
		t.Fatalf("tables = %v", names)
	}
}

// A file written by an older schema is migrated at start with every row
// kept; from version 2 the publications' bodies become their sizes, in
// bytes even for a body stored as text.
func TestSQLiteMigrates(t *testing.T) {
	for _, from := range []int{1, 2} {
		t.Run(fmt.Sprint("version", from), func(t *testing.T) {
			path, db := oldStore(t, from)
			writeOldRows(t, db)
			// publications as the old schemas wrote them, body and all
			execAll(t, db,
				`INSERT INTO publications VALUES ('p1', 'e1', 'presence', 'sip:a@x', 'application/pidf+xml', CAST('<presence/>' AS BLOB), 1800000000000)`,
				`INSERT INTO publications VALUES ('p2', 'e2', 'presence', 'sip:b@x', 'application/pidf+xml', x'', 1800000001000)`,
				`INSERT INTO publications VALUES ('p3', 'e3', 'dialog', 'sip:c@x', 'text/plain', 'hé', 1800000002000)`)
			db.Close()

			s, err := OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var v int
			s.read.QueryRow("PRAGMA user_version").Scan(&v)
			snap, err := s.Load(context.Background())
			if err != nil || v != schemaVersion {
				t.Fatalf("version %d, %v", v, err)
			}
			sort.Slice(snap.Publications, func(i, j int) bool { return snap.Publications[i].ID < snap.Publications[j].ID })
			// p2 and p3 had no state: rows of their own, after res's.
			for _, p := range snap.Publications[1:] {
				if p.ResourceID <= res.ID {
					t.Fatalf("publication %s of resource id %d, want one above %d", p.ID, p.ResourceID, res.ID)
				}
			}
			want := &Snapshot{Subscriptions: []Subscription{sub}, Publications: []Publication{pub,
				{ID: "p2", ETag: "e2", Event: "presence", Resource: "sip:b@x", ContentType: "application/pidf+xml", Size: 0, Expires: when.Add(time.Second),
					ResourceID: snap.Publications[1].ResourceID},
				{ID: "p3", ETag: "e3", Event: "dialog", Resource: "sip:c@x", ContentType: "text/plain", Size: 3, Expires: when.Add(2 * time.Second),
					ResourceID: snap.Publications[2].ResourceID},
			}, Resources: []Resource{res}, Bindings: []Binding{bind}}
			if !reflect.DeepEqual(snap, want) {
				t.Fatalf("after migration:\n%+v\nwant\n%+v", snap, want)
			}
		})
	}
}

// From version 3, bindings gain an instance, a reg-id and a Path, none of
// which the bindings already stored had.
func TestSQLiteMigratesBindings(t *testing.T) {
	path, db := oldStore(t, 3)
	writeOldRows(t, db)
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Binding{bind}; !reflect.DeepEqual(snap.Bindings, want) {
		t.Fatalf("after migration:\n%+v\nwant\n%+v", snap.Bindings, want)
	}
	plain := bind
	plain.Instance, plain.RegID, plain.Path = "<urn:uuid:x>", 1, []string{"<sip:edge;lr>"}
	if err := s.Commit(context.Background(), &Batch{Bindings: []Binding{plain}}); err != nil {
		t.Fatal(err)
	}
	if snap, _ := s.Load(context.Background()); !reflect.DeepEqual(snap.Bindings, []Binding{plain}) {
		t.Fatalf("written after migration: %+v", snap.Bindings)
	}
}

// From version 4, a subscription's per-watcher state and status live in
// a table of their own: a stored subscription keeps both, and states
// written after the migration, or a subscription written whole, land.
func TestSQLiteMigratesSubscriptionStates(t *testing.T) {
	path, db := oldStore(t, 4)
	pending := sub
	pending.ID, pending.State, pending.Status = "d2", nil, "pending"
	writeOldSubscription(t, db, sub)
	writeOldSubscription(t, db, pending)
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	subs := func() []Subscription {
		t.Helper()
		snap, err := s.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(snap.Subscriptions, func(i, j int) bool { return snap.Subscriptions[i].ID < snap.Subscriptions[j].ID })
		return snap.Subscriptions
	}
	if got, want := subs(), []Subscription{sub, pending}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after migration:\n%+v\nwant\n%+v", got, want)
	}
	third := sub
	third.ID, third.State = "d3", []byte{3}
	pending.State, pending.Status = []byte{9}, "active"
	if err := s.Commit(context.Background(), &Batch{Subscriptions: []Subscription{third},
		SubscriptionStates:  []SubscriptionState{{ID: pending.ID, State: pending.State, Status: pending.Status}},
		DeleteSubscriptions: []string{sub.ID}}); err != nil {
		t.Fatal(err)
	}
	if got, want := subs(), []Subscription{pending, third}; !reflect.DeepEqual(got, want) {
		t.Fatalf("written after migration:\n%+v\nwant\n%+v", got, want)
	}
	var n int
	s.read.QueryRow(`SELECT count(*) FROM subscription_states`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d rows of states for 2 subscriptions", n)
	}
}

// From version 5, resource states are keyed by id: every state stored
// is kept, each given an id in key order, and the file written after
// the migration finds, deletes and reloads rows by their ids.
func TestSQLiteMigratesResources(t *testing.T) {
	path, db := oldStore(t, 5)
	old := []Resource{
		{Event: "presence", Resource: "sip:b@x", State: []byte("b")},
		{Event: "dialog", Resource: "sip:a@x", State: []byte("dialog a")},
		{Event: "presence", Resource: "sip:a@x", State: []byte{0, 1, 2}},
	}
	for _, r := range old {
		if _, err := db.Exec(`INSERT INTO resources VALUES (?,?,?)`, r.Event, r.Resource, r.State); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	reopen := func() *SQLite {
		t.Helper()
		s, err := OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	loaded := func(s *SQLite, want ...Resource) {
		t.Helper()
		snap, err := s.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(snap.Resources, func(i, j int) bool { return snap.Resources[i].ID < snap.Resources[j].ID })
		if !reflect.DeepEqual(snap.Resources, want) {
			t.Fatalf("loaded:\n%+v\nwant\n%+v", snap.Resources, want)
		}
	}
	s := reopen()
	// in (event, resource) order, as the old table's key kept them
	da, pa, pb := old[1], old[2], old[0]
	da.ID, pa.ID, pb.ID = 1, 2, 3
	loaded(s, da, pa, pb)
	for _, r := range []Resource{da, pa, pb} {
		if got, err := s.LoadResource(context.Background(), r.ID, r.Event, r.Resource); err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("LoadResource(%d): %+v, %v; want %+v", r.ID, got, err, r)
		}
	}
	// An id names its own resource only.
	if got, err := s.LoadResource(context.Background(), da.ID, pa.Event, pa.Resource); err != nil || got.State != nil {
		t.Fatalf("LoadResource of another resource's id: %+v, %v", got, err)
	}
	// A new resource under a server's id, one rewritten, one deleted.
	c := Resource{ID: 1_800_000_000_000_000_000, Event: "presence", Resource: "sip:c@x", State: []byte("c")}
	pa.State = []byte("new a")
	gone := pb
	gone.State = nil
	if err := s.Commit(context.Background(), &Batch{Resources: []Resource{c, pa, gone}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = reopen()
	defer s.Close()
	loaded(s, da, pa, c)
}

// From version 6, a resource's publications live in its row: every
// publication stored is kept, in its resource's row (the newer of two
// rows of one resource), or in a new row if its resource had none; the
// file written after the migration writes a new presentity as one row,
// and refreshes, removes and reloads what was migrated.
func TestSQLiteMigratesPublicationsIntoResources(t *testing.T) {
	path, db := oldStore(t, 6)
	execAll(t, db,
		`INSERT INTO resources VALUES (5, 'presence', 'sip:a@x', 'state a')`,
		// sip:b@x in two rows, the older left while its package was not served
		`INSERT INTO resources VALUES (7, 'presence', 'sip:b@x', 'old b')`,
		`INSERT INTO resources VALUES (9, 'presence', 'sip:b@x', 'new b')`,
		`INSERT INTO resources VALUES (11, 'dialog', 'sip:a@x', 'dialog a')`,
		`INSERT INTO publications VALUES ('p1', 'e1', 'presence', 'sip:a@x', 'application/pidf+xml', 300, 1800000000000)`,
		`INSERT INTO publications VALUES ('p2', 'e2', 'presence', 'sip:a@x', 'application/pidf+xml; q=1', 0, 1800000001000)`,
		`INSERT INTO publications VALUES ('p3', 'e3', 'presence', 'sip:b@x', 'application/pidf+xml', 12, 1800000002000)`,
		`INSERT INTO publications VALUES ('p4', 'e4', 'presence', 'sip:c@x', 'application/pidf+xml', 13, 1800000003000)`)
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	p := func(id, etag, uri, ctype string, size int, exp time.Duration, resID uint64) Publication {
		return Publication{ID: id, ETag: etag, Event: "presence", Resource: uri, ContentType: ctype, Size: size,
			Expires: when.Add(exp), ResourceID: resID}
	}
	const pidf = "application/pidf+xml"
	want := []Publication{p("p1", "e1", "sip:a@x", pidf, 300, 0, 5), p("p2", "e2", "sip:a@x", pidf+"; q=1", 0, time.Second, 5),
		p("p3", "e3", "sip:b@x", pidf, 12, 2*time.Second, 9), p("p4", "e4", "sip:c@x", pidf, 13, 3*time.Second, 12)}
	loaded := func(want []Publication, resources int) {
		t.Helper()
		snap, err := s.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(snap.Publications, func(i, j int) bool { return snap.Publications[i].ID < snap.Publications[j].ID })
		if !reflect.DeepEqual(snap.Publications, want) || len(snap.Resources) != resources {
			t.Fatalf("loaded:\n%+v\n%d resources\nwant\n%+v\n%d resources", snap.Publications, len(snap.Resources), want, resources)
		}
	}
	loaded(want, 4)
	// A new presentity is one row; p1 refreshed, p3 removed, p4 with its
	// state-less row removed.
	fresh := p("p5", "e5", "sip:d@x", pidf, 14, 4*time.Second, 1_800_000_000_000_000_000)
	if err := s.Commit(context.Background(), &Batch{
		Publications:         []Publication{fresh},
		Resources:            []Resource{{ID: fresh.ResourceID, Event: "presence", Resource: "sip:d@x", State: []byte("d")}},
		PublicationRefreshes: []PublicationRefresh{{ID: "p1", ETag: "e1b", Expires: when.Add(time.Hour), ResourceID: 5}},
		DeletePublications:   []PublicationRef{{ID: "p3", ETag: "e3", ResourceID: 9}, {ID: "p4", ETag: "e4", ResourceID: 12}},
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = OpenSQLite(path); err != nil {
		t.Fatal(err)
	}
	want[0].ETag, want[0].Expires = "e1b", when.Add(time.Hour)
	loaded([]Publication{want[0], want[1], fresh}, 5)
	var rows int
	s.read.QueryRow(`SELECT count(*) FROM resources`).Scan(&rows)
	if rows != 5 { // a, the two of b, dialog a, d: c's went with its last publication
		t.Fatalf("%d resource rows, want 5", rows)
	}
}

// execAll runs queries on db, in order.
func execAll(t *testing.T, db *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// oldStore is a new store file of schema version v, open without
// OpenSQLite, which would migrate it.
func oldStore(t *testing.T, v int) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "presenced.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range append(migrations[:v:v], fmt.Sprintf("PRAGMA user_version = %d", v)) {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return path, db
}

// writeOldRows writes sub, res and bind as schemas 1 to 3 kept them: the
// columns of resources have not changed since, and a binding had neither
// instance, reg-id nor Path.
func writeOldRows(t *testing.T, db *sql.DB) {
	t.Helper()
	writeOldSubscription(t, db, sub)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO resources VALUES (?,?,?)`, []any{res.Event, res.Resource, res.State}},
		{`INSERT INTO bindings VALUES (?,?,?,?,?,?,?)`, []any{bind.ID, bind.AOR, bind.Contact, bind.Q, bind.CallID, bind.CSeq, ms(bind.Expires)}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
}

// writeOldSubscription writes v as schemas 1 to 4 kept it: its
// per-watcher state and status in its row.
func writeOldSubscription(t *testing.T, db *sql.DB, v Subscription) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO subscriptions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, v.ID, v.CallID,
		v.LocalTag, v.RemoteTag, v.LocalURI, v.RemoteURI, v.RemoteTarget, lines(v.RouteSet), v.Transport, v.Source,
		v.Event, v.EventID, v.Resource, lines(v.Accept), ms(v.Expires), v.LocalCSeq, v.RemoteCSeq, v.State, v.Status,
		ms(v.Created)); err != nil {
		t.Fatal(err)
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
