package extension

// heapMemory is linear memory on the Go heap, as wazero keeps it without
// an allocator: where linearMemory cannot map memory of its own.
type heapMemory struct{ buf []byte }

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		b := make([]byte, size, size+size/4) // room to grow, as append leaves
		copy(b, m.buf)
		m.buf = b
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
