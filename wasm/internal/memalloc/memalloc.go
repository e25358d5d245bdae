// Package memalloc backs guest linear memory with a per-instance ceiling, so
// one runtime (and one compiled copy of each module) serves bindings with
// different memory_limit_pages.
package memalloc

import "github.com/tetratelabs/wazero/experimental"

// PageSize is the WebAssembly page size in bytes.
const PageSize = 65536

// Limited returns an allocator whose memories never grow past limitPages.
// A refused growth makes memory.grow return -1, which a Go guest turns into
// an out-of-memory trap and a hand-written guest can handle.
func Limited(limitPages uint32) experimental.MemoryAllocator {
	limit := uint64(limitPages) * PageSize
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		if max > limit || max == 0 {
			max = limit
		}
		return newMemory(max)
	})
}
