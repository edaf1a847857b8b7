package store_test

import (
	"path/filepath"
	"testing"

	"github.com/presenced/presenced/internal/store"
	"github.com/presenced/presenced/internal/store/storetest"
)

func TestMemory(t *testing.T) {
	open := func(*testing.T) store.Store { return store.NewMemory() }
	storetest.Run(t, open)
	storetest.RunShared(t, open)
	storetest.RunKeyed(t, open)
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, openSQLite)
	storetest.RunKeyed(t, openSQLite)
}

func openSQLite(t *testing.T) store.Store {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "presenced.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
