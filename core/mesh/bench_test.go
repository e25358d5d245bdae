package mesh

import (
	"crypto/rand"
	"testing"
)

func BenchmarkNewGenesis(b *testing.B) {
	for b.Loop() {
		g, err := NewGenesis(rand.Reader, "logistics", PolicyControlled, created)
		if err != nil {
			b.Fatal(err)
		}
		g.Zeroize()
	}
}

func BenchmarkIssueCertificate(b *testing.B) {
	g := setA(b)
	subject := make([]byte, 32)
	for b.Loop() {
		c, err := g.IssueCertificate(subject, "tactical-west-1", TierTactical, 0, created, 86_400_000)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCertificate(b *testing.B) {
	c, _ := DecodeCertificate(unhex(b, cert1Wire))
	for b.Loop() {
		if err := c.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGenesis(b *testing.B) {
	enc := setA(b).Encode()
	for b.Loop() {
		if _, err := DecodeGenesis(enc); err != nil {
			b.Fatal(err)
		}
	}
}
