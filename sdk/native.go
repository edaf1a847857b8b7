//go:build !wasip1

package sdk

import (
	"context"
	"log/slog"
)

// Log writes one line to the process's default logger when a module runs
// natively (unit tests); under wasm it goes to the host's log.
func Log(level LogLevel, msg string) {
	slog.Log(context.Background(), slog.Level((int(level)-1)*4), msg)
}
