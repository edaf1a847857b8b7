package storetest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
)

// HoldWriteLock takes the write lock of the SQLite file at path from a
// second connection, as an operator's sqlite3 in a write transaction
// does, and returns its release (also run at the test's cleanup). The
// server's commits wait for it, as for a stall of the disk.
func HoldWriteLock(t testing.TB, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Error(err)
			}
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}
