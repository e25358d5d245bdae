package mesh_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"

	"github.com/defenseunicorns/peat-gateway/core/mesh"
)

// The gateway's enrollment flow: create a formation genesis, issue a 24 h
// certificate for a node, and let a mesh node verify it and a revocation
// list offline with only the authority public key.
func Example() {
	seed := bytes.Repeat([]byte{0x42}, 32) // crypto/rand.Reader in production
	g, _ := mesh.NewGenesis(bytes.NewReader(seed), "logistics", mesh.PolicyControlled, 1700000000000)
	defer g.Zeroize()

	node := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x11}, 32)).Public().(ed25519.PublicKey)
	tier, _ := mesh.TierFromGateway("Endpoint")
	cert, _ := g.IssueCertificate(node, "tactical-west-1", tier, mesh.PermissionsFromGateway(0), 1700000000000, 86_400_000)
	wire, _ := cert.Encode()

	authority := g.AuthorityPublicKey()
	received, _ := mesh.DecodeCertificate(wire)
	fmt.Println(g.MeshID(), received.VerifyIssuedBy(authority) == nil, received.IsValidAt(1700000000001))
	fmt.Println(hex.EncodeToString(wire)[:16], mesh.Serial(wire))

	list, _ := g.SignRevocationList(1700000001000, 1, []mesh.RevokedEntry{{Serial: mesh.SerialOf(wire), SubjectPublicKey: received.SubjectPublicKey, RevokedAtMs: 1700000001000}})
	blob, _ := list.Encode()
	fetched, _ := mesh.DecodeRevocationList(blob)
	fmt.Println(fetched.Verify(authority) == nil, fetched.IsRevoked(received))
	// Output:
	// 71FF25E5 true true
	// d04ab232742bb4ab 019376124cfc460ef1ad96bc215d1f78
	// true true
}
