package main

import (
	"log/slog"
	"os"
	"runtime/debug"

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
