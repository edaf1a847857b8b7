package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

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

// TestReleaseWhenIdle: after a tick with a collection, the quiet ticks
// that follow collect and give memory back, idleReleases of them, and
// then nothing more happens while the process stays quiet.
func TestReleaseWhenIdle(t *testing.T) {
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const tick = 50 * time.Millisecond
	go releaseWhenIdle(ctx, tick)
	time.Sleep(tick / 2)

	garbage = make([]byte, 64<<20) // a burst, collected once
	garbage = nil
	runtime.GC()
	start := forced()
	deadline := time.Now().Add(5 * time.Second)
	for forced()-start < idleReleases && time.Now().Before(deadline) {
		time.Sleep(tick / 5)
	}
	if n := forced() - start; n < idleReleases {
		t.Fatalf("%d collections after the burst, want %d", n, idleReleases)
	}
	after := forced()
	time.Sleep(10 * tick)
	if n := forced() - after; n != 0 {
		t.Errorf("%d more collections while quiet", n)
	}
}

var garbage []byte
