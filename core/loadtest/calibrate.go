package loadtest

import (
	"crypto/ed25519"
	"time"
)

// signRate measures how many crypto/ed25519 signatures one goroutine makes
// per second over about d. Shared and virtual machines change speed over
// minutes, so a run's figures say little on their own; the report carries
// this rate, taken just before and just after the measured run, to show
// what the machine was doing at the time (a slow stretch shows up as a
// lower rate, and figures from different runs compare by their ratio to it).
func signRate(d time.Duration) float64 {
	_, key, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 150) // about a certificate's signed bytes
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for i := 0; i < 16; i++ {
			ed25519.Sign(key, msg)
		}
		n += 16
	}
	return float64(n) / time.Since(start).Seconds()
}
