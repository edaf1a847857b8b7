package extension

import "time"

// MappedBytes is the linear memory of live instances held outside the Go
// heap (linear_unix.go).
func MappedBytes() int64 { return mappedBytes.Load() }

// SetSurplusLinger shortens how long m's surplus instances are kept;
// before any call.
func (m *Module) SetSurplusLinger(d time.Duration) { m.pool.linger = d }
