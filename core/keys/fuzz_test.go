package keys

import (
	"context"
	"errors"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, and every
// failure must be one of the documented sentinel errors.
func FuzzOpen(f *testing.F) {
	f.Add(unhex(f, vecBlob))
	f.Add(unhex(f, vecPlaintext))
	f.Add([]byte("PENV\x01\x00\x00"))
	l := local(f, kekA)
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := Open(context.Background(), l, b)
		if err == nil {
			if pt == nil {
				t.Fatal("nil plaintext without error")
			}
			return
		}
		for _, want := range []error{ErrNotEnvelope, ErrTruncated, ErrUnsupportedVersion, ErrWrongKey, ErrInvalidKey} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("untyped error: %v", err)
	})
}
