// Package sdktest runs a module's handlers as real wasm under go test: it
// builds the module with the stock Go toolchain (GOOS=wasip1) and loads it
// in the same host presenced uses.
package sdktest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Build compiles the module package pkg (an import path or a directory) to
// .wasm once per test process and returns the file's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "presenced-wasm-")
		if err != nil {
			tb.Fatal(err)
		}
		dir = d
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Load builds pkg and loads it with the given config table, under the
// limits a default config gives. The module is closed when the test ends.
func Load(tb testing.TB, pkg string, config map[string]string) *extension.Module {
	tb.Helper()
	path := Build(tb, pkg)
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: filepath.Base(pkg), Path: path, MemoryLimitMB: 64,
		CallTimeout: 2 * time.Second, Instances: 2, Config: config,
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// Testdata returns the file testdata/name of the package under test (go
// test runs in the package's directory), failing the test if it cannot.
func Testdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// LoadTrusted is Load with trusted = true (no termination checks, as
// presenced.toml runs pa and conference) and one instance: for benchmarks
// of what the daemon really runs.
func LoadTrusted(tb testing.TB, pkg string, config map[string]string) *extension.Module {
	tb.Helper()
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: filepath.Base(pkg), Path: Build(tb, pkg), MemoryLimitMB: 64,
		CallTimeout: 10 * time.Second, Instances: 1, Trusted: true, Config: config,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// LoadError builds pkg and tries to load it with the given config table,
// for a test that a bad config is refused: it returns the error loading
// gave, or nil (closing the module) when it loaded.
func LoadError(tb testing.TB, pkg string, config map[string]string) error {
	tb.Helper()
	path := Build(tb, pkg)
	m, err := extension.Load(context.Background(), extension.Spec{
		Name: filepath.Base(pkg), Path: path, MemoryLimitMB: 64,
		CallTimeout: 2 * time.Second, Instances: 1, Config: config,
	})
	if err == nil {
		m.Close(context.Background())
	}
	return err
}

// Handle runs req on m and returns the response, failing the test when the
// call fails or the module refuses the request (a non-zero Code): for a
// request the test expects to succeed.
func Handle(tb testing.TB, m *extension.Module, req *abi.Request) *abi.Response {
	tb.Helper()
	res, err := m.Handle(context.Background(), req)
	if err != nil {
		tb.Fatal(err)
	}
	if res.Code != 0 {
		tb.Fatalf("%s refused: %d %s", req.Op, res.Code, res.Reason)
	}
	return res
}
