package mesh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"
)

// TestSignMatchesStdlib checks sign against crypto/ed25519 over random keys
// and message lengths (including empty and multi-block messages): the
// same bytes, and a signature the standard library verifies.
func TestSignMatchesStdlib(t *testing.T) {
	for i := 0; i < 500; i++ {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, mrand.IntN(600))
		rand.Read(msg)
		got, want := sign(key, msg), ed25519.Sign(key, msg)
		if !bytes.Equal(got, want) {
			t.Fatalf("key %x msg %x: sign %x, crypto/ed25519 %x", key.Seed(), msg, got, want)
		}
		if !ed25519.Verify(key.Public().(ed25519.PublicKey), msg, got) {
			t.Fatalf("signature does not verify")
		}
	}
}

// BenchmarkSign compares sign with crypto/ed25519.Sign on a certificate-
// sized message.
func BenchmarkSign(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 150)
	b.Run("voi", func(b *testing.B) {
		for b.Loop() {
			sign(key, msg)
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		for b.Loop() {
			ed25519.Sign(key, msg)
		}
	})
}
