// Package extensiontest builds a module from source and loads it into the
// host, for tests that need the host's own *extension.Module (a server, a
// connector, the host's counters). Module tests use the kit, sdk/sdktest,
// which is built on this package and hands out its own types instead.
package extensiontest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// Spec builds pkg and returns the spec tests load it with: the limits a
// default config gives, and a compilation cache shared by every test
// process so that each does not compile the same module again.
func Spec(tb testing.TB, pkg string, config map[string]string) extension.Spec {
	tb.Helper()
	return extension.Spec{
		Name: filepath.Base(pkg), Path: Build(tb, pkg), MemoryLimitMB: 64,
		CallTimeout: 2 * time.Second, Instances: 2, Config: config,
		CacheDir: filepath.Join(os.TempDir(), "presenced-wasm-cache"),
	}
}

// Load builds pkg and loads it with Spec, failing the test if it cannot.
// The module is closed when the test ends.
func Load(tb testing.TB, pkg string, config map[string]string) *extension.Module {
	tb.Helper()
	return LoadSpec(tb, Spec(tb, pkg, config))
}

// LoadTrusted is Load with trusted = true (no termination checks, as
// presenced.toml runs pa and conference) and one instance: for benchmarks
// of what the daemon really runs. A trusted call cannot be cut short, so
// its deadline only bounds the wait for an instance; it is long so that a
// slow benchmark machine does not fail on it. It is compiled afresh, not
// through the cache Load's checked compilations fill: nothing here relies
// on the cache telling the two kinds of code apart.
func LoadTrusted(tb testing.TB, pkg string, config map[string]string) *extension.Module {
	tb.Helper()
	spec := Spec(tb, pkg, config)
	spec.Trusted, spec.Instances, spec.CallTimeout, spec.CacheDir = true, 1, 10*time.Second, ""
	return LoadSpec(tb, spec)
}

// LoadSpec loads a spec a test made from Spec's (a coalescing window, trust),
// failing the test if it cannot. The module is closed when the test ends.
func LoadSpec(tb testing.TB, spec extension.Spec) *extension.Module {
	tb.Helper()
	m, err := extension.Load(context.Background(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close(context.Background()) })
	return m
}
