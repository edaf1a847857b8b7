package extension_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/sdk/sdktest"
)

// loadCached loads the echo module from path with its compilation cache
// in dir and returns what it logged.
func loadCached(t *testing.T, path, dir string) (*extension.Module, string, error) {
	t.Helper()
	var log bytes.Buffer
	m, err := extension.Load(context.Background(), extension.Spec{Name: "echo", Path: path, MemoryLimitMB: 64,
		CallTimeout: 2 * time.Second, Instances: 1, CacheDir: dir, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if m != nil {
		t.Cleanup(func() { m.Close(context.Background()) })
	}
	return m, log.String(), err
}

func cached(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A cache entry that fails wazero's checksum (a disk error, a torn write)
// does not refuse the module: the cache is emptied with a warning, the
// module compiled without it, and the next load caches it afresh.
func TestCorruptCacheIsRebuilt(t *testing.T) {
	path := sdktest.Build(t, echoPkg)
	dir := t.TempDir()
	if _, _, err := loadCached(t, path, dir); err != nil {
		t.Fatal(err)
	}
	files := cached(t, dir)
	if len(files) == 0 {
		t.Fatalf("nothing cached in %s", dir)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{len(b) / 4, len(b) / 3, len(b) / 2} { // in the compiled code
			b[i] ^= 0xff
		}
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	m, log, err := loadCached(t, path, dir)
	if err != nil {
		t.Fatalf("load with a corrupt cache: %v", err)
	}
	if _, err := m.Handle(context.Background(), publish("hello")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "compilation cache unreadable") {
		t.Errorf("no warning about the cache:\n%s", log)
	}
	if left := cached(t, dir); len(left) != 0 {
		t.Errorf("corrupt cache not emptied: %v", left)
	}

	if _, log, err = loadCached(t, path, dir); err != nil || log != "" {
		t.Fatalf("load after the rebuild: %v\n%s", err, log)
	}
	if len(cached(t, dir)) == 0 {
		t.Errorf("the module was not cached again")
	}
}

// A module that does not compile is reported as such, and the cache,
// which is not at fault, is left alone.
func TestModuleThatDoesNotCompileLeavesTheCache(t *testing.T) {
	dir := t.TempDir()
	entry := filepath.Join(dir, "wazero-other", "entry")
	if err := os.MkdirAll(filepath.Dir(entry), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entry, []byte("compiled"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, log, err := loadCached(t, bad, dir)
	if err == nil || !strings.Contains(err.Error(), "compile:") {
		t.Fatalf("load of a module that does not compile: %v", err)
	}
	if log != "" {
		t.Errorf("logged:\n%s", log)
	}
	if _, err := os.Stat(entry); err != nil {
		t.Errorf("cache entry gone: %v", err)
	}
}
