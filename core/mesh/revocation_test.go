package mesh

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

func sampleEntries(t testing.TB) []RevokedEntry {
	t.Helper()
	c1, c2 := unhex(t, cert1Wire), unhex(t, cert2Wire)
	e1 := RevokedEntry{Serial: SerialOf(c1), RevokedAtMs: created + 5}
	e2 := RevokedEntry{Serial: SerialOf(c2), RevokedAtMs: created + 9}
	copy(e1.SubjectPublicKey[:], c1[:32])
	copy(e2.SubjectPublicKey[:], c2[:32])
	return []RevokedEntry{e1, e2}
}

// revocationGolden pins the version 1 layout (everything before the
// signature). It was produced by this implementation; the serials were
// re-computed independently (Python hashlib over the §7.2 wire bytes) and the
// other fields are checked by hand below. A format change must bump
// RevocationVersion instead of altering these bytes.
const revocationGolden = "5052564c01083731464632354535e86be5cf8b010000070000000000000002000000019376124cfc460ef1ad96bc215d1f78d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370568e5cf8b01000084357aa5462032d922c25ec491ea5266d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787370968e5cf8b0100001bc4e00b6ac43c0e115eff3b2a974b819d8488412bc72da16388cafa97aabf6c"

func TestRevocationListGolden(t *testing.T) {
	g := setA(t)
	l, err := g.SignRevocationList(created+1000, 7, sampleEntries(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sigStart := len(b) - 64
	if got := hex.EncodeToString(b[:sigStart]); got != revocationGolden {
		t.Fatalf("body =\n%s\nwant\n%s", got, revocationGolden)
	}
	// Field by field, independent of the encoder.
	if string(b[:4]) != "PRVL" || b[4] != 1 || b[5] != 8 || string(b[6:14]) != "71FF25E5" {
		t.Error("header")
	}
	if binary.LittleEndian.Uint64(b[14:]) != created+1000 || binary.LittleEndian.Uint64(b[22:]) != 7 || binary.LittleEndian.Uint32(b[30:]) != 2 {
		t.Error("issued/sequence/count")
	}
	if len(b) != 6+8+8+8+4+2*56+32+64 {
		t.Errorf("length %d", len(b))
	}
	msg := append([]byte("peat-gateway:signed-revocation-list:v1"), b[:sigStart]...)
	if !ed25519.Verify(g.AuthorityPublicKey(), msg, b[sigStart:]) {
		t.Error("signature does not verify with the documented construction")
	}
	// Entries come out sorted even though the input order is arbitrary.
	e := sampleEntries(t)
	l2, _ := g.SignRevocationList(created+1000, 7, []RevokedEntry{e[1], e[0]})
	b2, _ := l2.Encode()
	if !bytes.Equal(b, b2) {
		t.Error("encoding depends on entry order")
	}
}

func TestRevocationListRoundTripAndVerify(t *testing.T) {
	g := setA(t)
	for _, entries := range [][]RevokedEntry{nil, sampleEntries(t)} {
		l, err := g.SignRevocationList(created, 1, entries)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := l.Encode()
		d, err := DecodeRevocationList(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Verify(g.AuthorityPublicKey()); err != nil {
			t.Fatalf("verify: %v", err)
		}
		if d.MeshID != g.MeshID() || d.Sequence != 1 || len(d.Entries) != len(entries) {
			t.Errorf("decoded %+v", d)
		}
		b2, _ := d.Encode()
		if !bytes.Equal(b, b2) {
			t.Error("re-encoding differs")
		}
	}

	l, _ := g.SignRevocationList(created, 1, sampleEntries(t))
	c1, _ := DecodeCertificate(unhex(t, cert1Wire))
	root, _ := g.RootCertificate("authority-0", created)
	if !l.IsRevoked(c1) || l.IsRevoked(root) {
		t.Error("IsRevoked")
	}
	if e, ok := l.Lookup(SerialOf(unhex(t, cert2Wire))); !ok || e.RevokedAtMs != created+9 {
		t.Errorf("Lookup = %+v %v", e, ok)
	}

	other := ed25519.NewKeyFromSeed(rep(0x55, 32))
	if err := l.Verify(other.Public().(ed25519.PublicKey)); !errors.Is(err, ErrUntrustedIssuer) {
		t.Errorf("other authority: %v", err)
	}
	// A list signed by another key that claims our authority as issuer.
	forged, _ := SignRevocationList(other, g.MeshID(), created, 99, nil)
	forged.IssuerPublicKey = l.IssuerPublicKey
	if err := forged.Verify(g.AuthorityPublicKey()); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("forged list: %v", err)
	}
	// Every tampered field is caught.
	b, _ := l.Encode()
	for i := range b {
		tb := bytes.Clone(b)
		tb[i] ^= 0x01
		d, err := DecodeRevocationList(tb)
		if err != nil {
			continue
		}
		if d.Verify(g.AuthorityPublicKey()) == nil {
			t.Errorf("flipping byte %d still verifies", i)
		}
	}
}

// A certificate signature must never pass as a revocation list signature:
// the context prefix separates the two uses of the authority key.
func TestRevocationSignatureDomainSeparation(t *testing.T) {
	g := setA(t)
	c, _ := DecodeCertificate(unhex(t, cert1Wire))
	signable, _ := c.SignableBytes()
	if ed25519.Verify(g.AuthorityPublicKey(), signedRevocationMessage(signable[:len(signable)-32]), c.Signature[:]) {
		t.Fatal("certificate signature verifies as a revocation signature")
	}
	if len(revocationSigContext) <= 32 || revocationSigContext[32] == 8 {
		t.Fatal("context must be longer than a subject key and differ from a gateway certificate's mesh_id length")
	}
}

func TestDecodeRevocationListRules(t *testing.T) {
	g := setA(t)
	l, _ := g.SignRevocationList(created, 1, sampleEntries(t))
	good, _ := l.Encode()
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"too short", good[:50]},
		{"bad magic", mod(func(b []byte) { b[0] = 'X' })},
		{"version 2", mod(func(b []byte) { b[4] = 2 })},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
		{"count too high", mod(func(b []byte) { b[30] = 3 })},
		{"count huge", mod(func(b []byte) { binary.LittleEndian.PutUint32(b[30:], 0xffffffff) })},
		{"mesh_id too long", mod(func(b []byte) { b[5] = 255 })},
		{"invalid utf8 mesh_id", mod(func(b []byte) { b[6] = 0xff })},
		{"duplicate serial", mod(func(b []byte) { copy(b[34+56:34+56+16], b[34:34+16]) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeRevocationList(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	e := sampleEntries(t)
	if _, err := g.SignRevocationList(0, 0, []RevokedEntry{e[0], e[0]}); !errors.Is(err, ErrMalformed) {
		t.Errorf("duplicate entries: %v", err)
	}
	if _, err := SignRevocationList(g.authority, string(make([]byte, 256)), 0, 0, nil); !errors.Is(err, ErrFieldTooLong) {
		t.Errorf("long mesh id: %v", err)
	}
}
