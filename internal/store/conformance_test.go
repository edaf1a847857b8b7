package store_test

import (
	"path/filepath"
	"testing"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() })
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, openSQLite)
}

func openSQLite(t *testing.T) store.Store {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
