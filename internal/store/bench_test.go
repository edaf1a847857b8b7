package store_test

import (
	"path/filepath"
	"testing"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
)

// The commit benchmarks of Memory and SQLite; internal/store/postgres
// runs the same (storetest's) on PostgreSQL.

func BenchmarkCommit(b *testing.B)             { eachBackend(b, storetest.BenchmarkCommit) }
func BenchmarkCommitSubscription(b *testing.B) { eachBackend(b, storetest.BenchmarkCommitSubscription) }
func BenchmarkCommitLatency(b *testing.B)      { eachBackend(b, storetest.BenchmarkCommitLatency) }
func BenchmarkLoadResource(b *testing.B)       { eachBackend(b, storetest.BenchmarkLoadResource) }
func BenchmarkCommitStates(b *testing.B)       { eachBackend(b, storetest.BenchmarkCommitStates) }

// eachBackend runs bench on each of backends, opened for it.
func eachBackend(b *testing.B, bench func(*testing.B, store.Store)) {
	for name, open := range backends(b) {
		b.Run(name, func(b *testing.B) {
			s := open()
			defer s.Close()
			bench(b, s)
		})
	}
}

// backends are the stores the benchmarks compare.
func backends(b *testing.B) map[string]func() store.Store {
	dir := b.TempDir()
	return map[string]func() store.Store{
		"memory": func() store.Store { return store.NewMemory() },
		"sqlite": func() store.Store {
			s, err := store.OpenSQLite(filepath.Join(dir, "presenced.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
}
