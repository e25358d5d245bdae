//go:build !unix

package memalloc

import "github.com/tetratelabs/wazero/experimental"

func newMemory(max uint64) experimental.LinearMemory { return &sliceMemory{max: max} }
