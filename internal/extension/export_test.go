package extension

// MappedBytes is the linear memory of live instances held outside the Go
// heap (linear_unix.go).
func MappedBytes() int64 { return mappedBytes.Load() }
