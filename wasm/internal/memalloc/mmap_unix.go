//go:build unix

package memalloc

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapMemory reserves the whole ceiling as address space up front, so growth
// never copies and guest memory stays outside the Go heap (the GC neither
// scans nor paces on it). MAP_NORESERVE means untouched pages cost nothing.
type mmapMemory struct {
	buf []byte
	max uint64
}

func newMemory(max uint64) experimental.LinearMemory {
	if max == 0 {
		return &mmapMemory{}
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{max: max}
	}
	return &mmapMemory{buf: b, max: max}
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	return m.buf[:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}
