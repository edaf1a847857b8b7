package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/presenced/presenced/internal/config"
)

// setRuntime applies [server] memory_limit_mb and gc_percent to the Go
// runtime. GOMEMLIMIT and GOGC in the environment win, as they do for any
// Go program: the runtime has read them already, and an operator who set
// them meant them.
func setRuntime(s config.Server, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(s.GCPercent)
	} else {
		log.Info("GOGC from the environment; server.gc_percent not applied", "GOGC", os.Getenv("GOGC"))
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if s.MemoryLimitMB > 0 {
			debug.SetMemoryLimit(int64(s.MemoryLimitMB) << 20)
		}
	} else {
		log.Info("GOMEMLIMIT from the environment; server.memory_limit_mb not applied", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
	}
}

// idleReleases is how many quiet ticks after a busy one give memory back:
// a UDP server transaction is kept up to 36 s after its answer (Timer J,
// in buckets) and sipgo's transactions 32 s (Timer J, Timer K), so what a
// burst of requests leaves behind is garbage only up to that long after
// the burst.
const idleReleases = 4

// releaseWhenIdle gives the heap's free memory back to the system once
// the load stops (internal/server/RATIONALE.md, "Where the memory goes").
// The collector runs when the heap doubles, so after a burst nothing
// collects what the burst left, and the runtime keeps the pages it
// freed: RSS would stay at the burst's peak. A tick in which no
// collection ran while one had in the tick before is the end of a burst;
// each of the next idleReleases quiet ticks collects and releases
// (debug.FreeOSMemory). A server that stays quiet, or whose light load
// never triggers a collection, pays nothing.
func releaseWhenIdle(ctx context.Context, every time.Duration) {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	last, pending := s[0].Value.Uint64(), 0
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(s)
		switch n := s[0].Value.Uint64(); {
		case n != last:
			pending, last = idleReleases, n
		case pending > 0:
			debug.FreeOSMemory()
			pending--
			metrics.Read(s)
			last = s[0].Value.Uint64() // its own collection is not load
		}
	}
}
