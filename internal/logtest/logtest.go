// Package logtest holds what the host's tests need to read a log, or a
// client process's output, while it is still being written.
package logtest

import (
	"strings"
	"sync"
)

// Buffer collects writes from any goroutine (a server's handlers, a
// process's stdout and stderr) and lets a test read what came so far.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
