package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

	"github.com/presenced/presenced/internal/config"
)

// TestSetRuntime: [server] memory_limit_mb and gc_percent reach the
// runtime, and GOGC and GOMEMLIMIT in the environment win over them.
func TestSetRuntime(t *testing.T) {
	gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	setRuntime(config.Server{MemoryLimitMB: 300, GCPercent: 37}, log)
	if got := debug.SetGCPercent(100); got != 37 {
		t.Errorf("gc_percent 37: GOGC is %d", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != 300<<20 {
		t.Errorf("memory_limit_mb 300: limit is %d", got)
	}

	setRuntime(config.Server{MemoryLimitMB: 0, GCPercent: 100}, log)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory_limit_mb 0: limit is %d, want none", got)
	}

	t.Setenv("GOGC", "250")
	t.Setenv("GOMEMLIMIT", "1GiB")
	setRuntime(config.Server{MemoryLimitMB: 300, GCPercent: 37}, log)
	if got := debug.SetGCPercent(100); got == 37 {
		t.Error("gc_percent applied over GOGC from the environment")
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got == 300<<20 {
		t.Error("memory_limit_mb applied over GOMEMLIMIT from the environment")
	}
}
