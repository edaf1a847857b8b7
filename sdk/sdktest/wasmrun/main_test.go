package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A package's test binary built for wasm runs under wasmrun, its exit
// status passed through: 0 when its test passes, 2 for a flag it refuses.
func TestRunsATestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "abi.wasm")
	build := exec.Command("go", "test", "-c", "-o", bin, "github.com/presenced/presenced/abi")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code := run(bin, []string{"-test.run", "TestResponseSharedBody"}); code != 0 {
		t.Errorf("a passing test exited %d", code)
	}
	if code := run(bin, []string{"-test.count", "many"}); code != 2 {
		t.Errorf("a refused flag exited %d, want 2", code)
	}
}
