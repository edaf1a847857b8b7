//go:build unix

package extension

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// linearMemory backs each instance's linear memory with a mapping of its
// own, outside the Go heap (RATIONALE.md, "Linear memory outside the Go
// heap"): the whole maximum (memory_limit_mb) is reserved inaccessible,
// which costs address space only, and pages are made accessible as the
// guest grows, so growing neither copies nor leaves the old buffer to the
// collector, and the guest's memory does not count towards the heap the
// collector paces itself by. A reservation that fails (address space
// exhausted) falls back to the Go heap.
var linearMemory experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(
	func(_, max uint64) experimental.LinearMemory {
		b, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON)
		if err != nil || max == 0 {
			return &heapMemory{}
		}
		return &mappedMemory{reserved: b}
	})

// mappedBytes is the accessible linear memory of every live instance:
// what the collector no longer sees, counted for the tests that check
// failed instances are let go.
var mappedBytes atomic.Int64

type mappedMemory struct {
	reserved   []byte // the whole mapping, max bytes
	accessible uint64 // bytes from its start made readable and writable
}

// Reallocate implements experimental.LinearMemory. wazero never asks for
// more than max, nor for less than it had.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.reserved)) {
		return nil // the guest's memory.grow fails
	}
	if size > m.accessible {
		if unix.Mprotect(m.reserved[m.accessible:size], unix.PROT_READ|unix.PROT_WRITE) != nil {
			return nil
		}
		mappedBytes.Add(int64(size - m.accessible))
		m.accessible = size
	}
	return m.reserved[:size:size]
}

// Free implements experimental.LinearMemory: wazero calls it when the
// instance closes.
func (m *mappedMemory) Free() {
	if m.reserved != nil {
		unix.Munmap(m.reserved)
		mappedBytes.Add(-int64(m.accessible))
		m.reserved, m.accessible = nil, 0
	}
}
