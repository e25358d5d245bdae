package memalloc

import "testing"

func TestLimitedRefusesGrowthPastTheCap(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limit      uint32
		max        uint64
		grow, want uint64 // bytes requested, expected length (0 = refused)
	}{
		{"within", 4, 16 * PageSize, 3 * PageSize, 3 * PageSize},
		{"at cap", 4, 16 * PageSize, 4 * PageSize, 4 * PageSize},
		{"past cap", 4, 16 * PageSize, 5 * PageSize, 0},
		{"module max below cap", 8, 2 * PageSize, 3 * PageSize, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Limited(tc.limit).Allocate(PageSize, tc.max)
			defer m.Free()
			first := m.Reallocate(PageSize)
			first[0] = 42
			b := m.Reallocate(tc.grow)
			if uint64(len(b)) != tc.want {
				t.Fatalf("Reallocate(%d) gave %d bytes, want %d", tc.grow, len(b), tc.want)
			}
			if b != nil && b[0] != 42 {
				t.Error("growth lost the memory contents")
			}
		})
	}
}

func TestSliceFallbackKeepsContents(t *testing.T) {
	m := &sliceMemory{max: 4 * PageSize}
	b := m.Reallocate(PageSize)
	b[PageSize-1] = 7
	if b = m.Reallocate(3 * PageSize); b[PageSize-1] != 7 || len(b) != 3*PageSize {
		t.Fatal("slice growth lost contents")
	}
	if m.Reallocate(5*PageSize) != nil {
		t.Fatal("slice memory grew past its max")
	}
}
