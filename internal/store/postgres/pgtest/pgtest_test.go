package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/presenced/presenced/internal/store/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two tests get two databases of one server: what one writes the other
// does not see.
func TestEachTestItsOwnDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.DSN(t), pgtest.DSN(t)
	if a == b {
		t.Fatalf("one database twice: %s", a)
	}
	t.Logf("server started in %v", pgtest.StartupTime())
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (v int); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ca.QueryRow(ctx, "SELECT count(*) FROM x").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
	if _, err := cb.Exec(ctx, "SELECT * FROM x"); err == nil {
		t.Fatal("the second database sees the first's table")
	}
}

// A server of the test's own keeps what was committed across Stop and
// Start, on the same URL, refuses connections while stopped, and answers
// nothing while paused.
func TestOwnServerStopsStartsAndPauses(t *testing.T) {
	db := pgtest.Own(t)
	ctx := context.Background()
	within := func(d time.Duration, sql string) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		conn, err := pgx.Connect(ctx, db.DSN())
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := within(10*time.Second, "CREATE TABLE x (v int); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	db.Stop()
	if err := within(time.Second, "SELECT 1"); err == nil {
		t.Fatal("a stopped server answered")
	}
	db.Start()
	// Division by zero if the row is gone.
	if err := within(10*time.Second, "SELECT 1 / count(*) FROM x WHERE v = 1"); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	db.Pause()
	if err := within(500*time.Millisecond, "SELECT 1"); err == nil {
		t.Fatal("a paused server answered")
	}
	db.Resume()
	if err := within(10*time.Second, "SELECT 1"); err != nil {
		t.Fatalf("after the pause: %v", err)
	}
}
