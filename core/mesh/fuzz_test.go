package mesh

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func seedHex(f *testing.F, hexes ...string) {
	for _, h := range hexes {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
}

func FuzzDecodeGenesis(f *testing.F) {
	f.Add(setA(f).Encode())
	f.Add([]byte{})
	f.Add(make([]byte, 75))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := DecodeGenesis(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a prefix of the input (trailing
		// bytes are the only thing the decoder drops).
		if !bytes.HasPrefix(b, g.Encode()) {
			t.Fatalf("re-encoding is not a prefix of the input")
		}
	})
}

func FuzzDecodeCertificate(f *testing.F) {
	seedHex(f, cert1Wire, cert2Wire, rootWire)
	f.Add(make([]byte, 148))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCertificate(b)
		if err != nil {
			return
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatalf("decoded certificate does not encode: %v", err)
		}
		if !bytes.HasPrefix(b, enc) {
			t.Fatalf("re-encoding is not a prefix of the input")
		}
		_ = c.Verify() // must not panic on arbitrary keys and signatures
	})
}

func FuzzDecodeCredentials(f *testing.F) {
	c, _ := setA(f).Credentials().Encode()
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCredentials(b)
		if err != nil {
			return
		}
		enc, err := c.Encode()
		if err != nil || !bytes.HasPrefix(b, enc) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

func FuzzDecodeRevocationList(f *testing.F) {
	g := setA(f)
	for _, e := range [][]RevokedEntry{nil, sampleEntries(f)} {
		l, _ := g.SignRevocationList(created, 3, e)
		b, _ := l.Encode()
		f.Add(b)
	}
	pub := g.AuthorityPublicKey()
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeRevocationList(b)
		if err != nil {
			return
		}
		// The format is canonical: decoding then encoding is the identity.
		enc, err := l.Encode()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("not canonical: %v", err)
		}
		_ = l.Verify(pub)
	})
}
