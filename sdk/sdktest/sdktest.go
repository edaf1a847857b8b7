// Package sdktest is the kit a module's tests run on: it builds the module
// with the stock Go toolchain (GOOS=wasip1) and runs its handlers as real
// wasm in the same host presenced uses. It hands out its own types, so a
// module's tests import nothing of the host. Its package siptest serves the
// module over SIP, for tests of what watchers get.
package sdktest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/presenced/presenced/abi"
	"github.com/presenced/presenced/internal/extension"
	"github.com/presenced/presenced/internal/extension/extensiontest"
)

// Module is a module loaded into the host as a test sees it: the host
// calls it exactly as it would serve SIP, and the test reads what it
// answers.
type Module struct {
	host *extension.Module
}

// Handle runs req on a pooled instance, as the host does for a SIP request,
// and returns the module's response. A refusal (a non-zero Code) is a
// response, not an error. The error is for a failed call: the module
// returned an error or a negative status, trapped, ran out of time or
// memory, or wrote output the host could not decode; the host answers such
// a request with a 500 and discards the instance.
func (m *Module) Handle(ctx context.Context, req *abi.Request) (*abi.Response, error) {
	return m.host.Handle(ctx, req)
}

// Manifest is what the module's init said it serves.
func (m *Module) Manifest() abi.Manifest { return m.host.Manifest() }

// Build compiles the module package pkg (an import path or a directory) to
// .wasm once per test process and returns the file's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	return extensiontest.Build(tb, pkg)
}

// Load builds pkg and loads it with the given config table, under the
// limits a default config gives. The module is closed when the test ends.
func Load(tb testing.TB, pkg string, config map[string]string) *Module {
	tb.Helper()
	return &Module{host: extensiontest.Load(tb, pkg, config)}
}

// LoadTrusted is Load with trusted = true (no termination checks, as
// presenced.toml runs pa and conference) and one instance: for benchmarks
// of what the daemon really runs.
func LoadTrusted(tb testing.TB, pkg string, config map[string]string) *Module {
	tb.Helper()
	return &Module{host: extensiontest.LoadTrusted(tb, pkg, config)}
}

// LoadError builds pkg and tries to load it with the given config table,
// for a test that a bad config is refused: it returns the error loading
// gave, or nil (closing the module) when it loaded.
func LoadError(tb testing.TB, pkg string, config map[string]string) error {
	tb.Helper()
	m, err := extension.Load(context.Background(), extensiontest.Spec(tb, pkg, config))
	if err == nil {
		m.Close(context.Background())
	}
	return err
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

// Handle runs req on m and returns the response, failing the test when the
// call fails or the module refuses the request (a non-zero Code): for a
// request the test expects to succeed.
func Handle(tb testing.TB, m *Module, req *abi.Request) *abi.Response {
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
