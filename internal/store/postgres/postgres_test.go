package postgres

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
	"github.com/presenced/presenced/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSuite(t *testing.T) {
	fresh := func(t *testing.T) store.Store { return open(t, pgtest.DSN(t)) }
	storetest.Run(t, fresh)
	storetest.RunShared(t, fresh)
}

var (
	when = time.UnixMilli(1_800_000_000_000)
	pub1 = store.Publication{ID: "p1", ETag: "e1", Event: "presence", Resource: "sip:a@x", ContentType: "application/pidf+xml", Size: 11, Expires: when}
	pub2 = store.Publication{ID: "p2", ETag: "e2", Event: "presence", Resource: "sip:b@x", ContentType: "application/pidf+xml", Size: 12, Expires: when}
	pub3 = store.Publication{ID: "p3", ETag: "e3", Event: "presence", Resource: "sip:c@x", ContentType: "application/pidf+xml", Size: 13, Expires: when}
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
	sort.Strings(ids)
	return ids
}

// While another session holds a lock the writer's transaction waits on
// (another node, an operator's psql), a commit the writer took waits for
// its outcome past its deadline and is written; one still queued when its
// deadline passes returns the deadline's error and is never written: the
// server has answered 500 for it.
func TestCommitPastItsDeadlineIsNeverWritten(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s := open(t, dsn)
	defer s.Close()
	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	if _, err := locker.Exec(ctx, "BEGIN; LOCK TABLE publications IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	takenErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		takenErr <- s.Commit(ctx, &store.Batch{Publications: []store.Publication{pub1}})
	}()
	// Once the writer's transaction waits on the lock, p1 is taken.
	for waiting := 0; waiting == 0; time.Sleep(10 * time.Millisecond) {
		if err := locker.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Commit(qctx, &store.Batch{Publications: []store.Publication{pub2}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued commit past its deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the queued commit returned after %v, not at its deadline", d)
	}
	select {
	case err := <-takenErr:
		t.Fatalf("the taken commit returned (%v) before its transaction could end", err)
	default:
	}
	if _, err := locker.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-takenErr; err != nil {
		t.Fatalf("the taken commit: %v", err)
	}
	// The writer takes batches in order: once a later one is written,
	// the abandoned one has been dropped or written.
	if err := s.Commit(ctx, &store.Batch{Publications: []store.Publication{pub3}}); err != nil {
		t.Fatal(err)
	}
	if ids := publications(t, s); !slices.Equal(ids, []string{"p1", "p3"}) {
		t.Fatalf("publications %v, want p1 and p3", ids)
	}
}

// A string PostgreSQL's text cannot hold fails its own commit, and
// nothing of it is written.
func TestUnstorableTextFailsItsCommitOnly(t *testing.T) {
	s := open(t, pgtest.DSN(t))
	defer s.Close()
	bad := pub2
	bad.Resource = "sip:b\x00@x"
	bad2 := pub3
	bad2.ETag = "e\xff"
	for _, b := range []store.Publication{bad, bad2} {
		if err := s.Commit(context.Background(), &store.Batch{Publications: []store.Publication{pub1, b}}); err == nil {
			t.Fatalf("%q committed", b.Resource+" "+b.ETag)
		}
	}
	if err := s.Commit(context.Background(), &store.Batch{Publications: []store.Publication{pub1}}); err != nil {
		t.Fatal(err)
	}
	if ids := publications(t, s); !slices.Equal(ids, []string{"p1"}) {
		t.Fatalf("publications %v, want p1", ids)
	}
}

// A COMMIT that got no answer is resolved by asking the server about its
// transaction: committed or rolled back.
func TestOutcomeAsksTheServer(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s := open(t, dsn)
	defer s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, end := range []string{"COMMIT", "ROLLBACK"} {
		var xid string
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO resources VALUES ('presence', $1, 'x', 1)", end); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, end); err != nil {
			t.Fatal(err)
		}
		cause := errors.New("connection reset")
		err := s.outcome(xid, cause)
		if committed := end == "COMMIT"; (err == nil) != committed || (!committed && !errors.Is(err, cause)) {
			t.Fatalf("after %s: outcome %v", end, err)
		}
	}
}

// Nodes starting together migrate once; a database whose schema is newer
// than this build's is refused, untouched.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := Open(ctx, dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v, rows int
	if err := conn.QueryRow(ctx, "SELECT max(version), count(*) FROM schema_version").Scan(&v, &rows); err != nil || v != schemaVersion || rows != 1 {
		t.Fatalf("schema_version: %d in %d rows (%v)", v, rows, err)
	}
	if _, err := conn.Exec(ctx, "UPDATE schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn); err == nil || !strings.Contains(err.Error(), "newer presenced") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// A database of schema 1 (before versions) opens with each resource state
// at version 1, which the next write names; a write from no version
// conflicts with it.
func TestMigrationGivesStoredStatesAVersion(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{`CREATE TABLE schema_version (version integer NOT NULL)`, `INSERT INTO schema_version VALUES (1)`,
		migrations[0], `INSERT INTO resources VALUES ('presence', 'sip:a@x', 'old')`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dsn)
	defer s.Close()
	r, err := s.LoadResource(ctx, 0, "presence", "sip:a@x")
	if err != nil || r.Version != 1 || string(r.State) != "old" {
		t.Fatalf("migrated resource: %+v, %v", r, err)
	}
	fresh := store.Resource{Event: "presence", Resource: "sip:a@x", State: []byte("new"), Version: 5}
	if err := s.Commit(ctx, &store.Batch{Resources: []store.Resource{fresh}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("write from no version over a migrated state: %v", err)
	}
	fresh.Prev = 1
	if err := s.Commit(ctx, &store.Batch{Resources: []store.Resource{fresh}}); err != nil {
		t.Fatal(err)
	}
}

// An error of Open names where it tried, never the password.
func TestOpenErrorHidesThePassword(t *testing.T) {
	_, err := Open(context.Background(), "postgres://presenced:s3cret-pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "presenced@127.0.0.1:1/db") {
		t.Fatalf("error does not say where: %v", err)
	}
	_, err = Open(context.Background(), "postgres://presenced:s3cret-pw@127.0.0.1:1/db?sslmode=bogus")
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error of a bad DSN: %v", err)
	}
}

// The commit benchmarks of internal/store (storetest's), on PostgreSQL.

func BenchmarkCommit(b *testing.B) {
	s := open(b, pgtest.DSN(b))
	defer s.Close()
	storetest.BenchmarkCommit(b, s)
}

func BenchmarkCommitLatency(b *testing.B) {
	s := open(b, pgtest.DSN(b))
	defer s.Close()
	storetest.BenchmarkCommitLatency(b, s)
}

// A commit that meets a pooled connection whose backend is gone (a
// database restart shorter than the pool's one-second idle check, or an
// operator's pg_terminate_backend) is written on a new connection, not
// refused as the database out of reach.
func TestCommitRedialsADeadConnection(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s := open(t, dsn)
	defer s.Close()
	if err := s.Commit(ctx, &store.Batch{Publications: []store.Publication{pub1}}); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	const others = `FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) `+others); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) `+others).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends still there", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Commit(ctx, &store.Batch{Publications: []store.Publication{pub2}}); err != nil {
		t.Fatalf("commit after the backends went: %v", err)
	}
	if ids := publications(t, s); !slices.Equal(ids, []string{"p1", "p2"}) {
		t.Fatalf("publications %v, want p1 p2", ids)
	}
}

func BenchmarkLoadResource(b *testing.B) {
	s := open(b, pgtest.DSN(b))
	defer s.Close()
	storetest.BenchmarkLoadResource(b, s)
}
