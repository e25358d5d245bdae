package batch

import (
	"slices"
	"testing"
)

func TestDrain(t *testing.T) {
	ch := make(chan int, 10)
	for i := 1; i <= 5; i++ {
		ch <- i
	}
	if got := Drain(ch, []int{0}, 3); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("bounded by max: %v", got)
	}
	if got := Drain(ch, nil, 10); !slices.Equal(got, []int{3, 4, 5}) {
		t.Fatalf("stops when empty: %v", got)
	}
	ch <- 6
	close(ch)
	if got := Drain(ch, nil, 10); !slices.Equal(got, []int{6}) {
		t.Fatalf("stops when closed: %v", got)
	}
}
