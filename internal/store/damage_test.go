package store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wantRefused checks that err refuses path and tells the operator what to
// do about it.
func wantRefused(t *testing.T, err error, path, why string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s opened", path)
	}
	for _, s := range []string{path, why, "backup", "remove"} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("the refusal does not say %q: %v", s, err)
		}
	}
}

// An empty file where the store should be is refused: SQLite would take
// it for a new database and start with no state.
func TestSQLiteRefusesAnEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(path)
	if err == nil {
		s.Close()
	}
	wantRefused(t, err, path, "0 bytes")
}

// crashImage commits rows and copies the store's files while it is open,
// as a crash would leave them: the last commits only in the -wal.
func crashImage(t *testing.T) (path string) {
	t.Helper()
	dir := t.TempDir()
	s, err := OpenSQLite(filepath.Join(dir, "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Commit(context.Background(), &Batch{Subscriptions: []Subscription{sub}, Publications: []Publication{pub}}); err != nil {
		t.Fatal(err)
	}
	image := t.TempDir()
	for _, name := range []string{"presenced.db", "presenced.db-wal"} {
		copyFile(t, filepath.Join(dir, name), filepath.Join(image, name))
	}
	return filepath.Join(image, "presenced.db")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// The commits a crash leaves in the -wal are found at the next start.
func TestSQLiteOpensACrashImage(t *testing.T) {
	s, err := OpenSQLite(crashImage(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(context.Background())
	if err != nil || len(snap.Subscriptions) != 1 || len(snap.Publications) != 1 {
		t.Fatalf("after the crash: %+v, %v", snap, err)
	}
}

// A -wal whose header is damaged is refused: SQLite would ignore the log
// and the commits in it would be lost without a word.
func TestSQLiteRefusesADamagedWAL(t *testing.T) {
	for _, tt := range []struct {
		name   string
		at     int64
		damage []byte
		why    string
	}{
		{"magic", 0, []byte("junk"), "not a SQLite write-ahead log"},
		{"salt", 16, []byte{0xde, 0xad}, "checksum"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := crashImage(t)
			f, err := os.OpenFile(path+"-wal", os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(tt.damage, tt.at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			s, err := OpenSQLite(path)
			if err == nil {
				snap, _ := s.Load(context.Background())
				s.Close()
				t.Logf("opened with %d subscriptions", len(snap.Subscriptions))
			}
			wantRefused(t, err, path+"-wal", tt.why)
		})
	}
}

// A -wal without its database is refused: a new database under an old
// log is not the state that was acknowledged.
func TestSQLiteRefusesAWALWithoutItsDatabase(t *testing.T) {
	path := crashImage(t)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(path)
	if err == nil {
		s.Close()
	}
	wantRefused(t, err, path+"-wal", "missing")
}

// A database damaged inside (a page overwritten, as by a failing disk)
// fails integrity_check at open.
func TestSQLiteRefusesADamagedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "presenced.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{}
	for i := range 500 {
		v := sub
		v.ID = fmt.Sprintf("d%04d", i)
		b.Subscriptions = append(b.Subscriptions, v)
	}
	if err := s.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	s.Close() // checkpoints: every page is in the main file
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(r.UintN(256))
	}
	if _, err := f.WriteAt(garbage, 10*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err = OpenSQLite(path)
	if err == nil {
		_, err := s.Load(context.Background())
		s.Close()
		t.Logf("opened; load: %v", err)
	}
	wantRefused(t, err, path, "integrity_check")
}
