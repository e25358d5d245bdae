package mesh

import (
	"crypto/ed25519"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// sign returns the Ed25519 (RFC 8032, pure) signature of msg by key.
//
// Ed25519 signing is deterministic, so this is byte for byte what
// crypto/ed25519.Sign returns (TestSignMatchesStdlib checks it); it is
// computed with curve25519-voi because its fixed-base scalar multiplication
// is about twice as fast on amd64 (BenchmarkSign), and every enrollment
// signs a certificate: with the standard library, signing was the largest
// cost of an enrollment after the SQLite writer.
func sign(key ed25519.PrivateKey, msg []byte) []byte {
	return voi.Sign(voi.PrivateKey(key), msg)
}
