//go:build !unix

package extension

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory keeps linear memory on the Go heap where there is no mmap.
var linearMemory experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(
	func(_, _ uint64) experimental.LinearMemory { return &heapMemory{} })

// mappedBytes stays 0: no linear memory is mapped outside the Go heap.
var mappedBytes atomic.Int64
