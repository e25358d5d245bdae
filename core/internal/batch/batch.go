// Package batch holds the one step the gateway's group committers share:
// taking, after a first item, whatever else is already queued.
package batch

// Drain appends to b whatever ch already holds, without waiting, until b
// has max items or ch is empty or closed. A committer that never waits to
// fill a batch lets batches grow by themselves under load while a lone
// request goes through at once.
func Drain[T any](ch <-chan T, b []T, max int) []T {
	for len(b) < max {
		select {
		case v, ok := <-ch:
			if !ok {
				return b
			}
			b = append(b, v)
		default:
			return b
		}
	}
	return b
}
