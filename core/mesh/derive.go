package mesh

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// HKDF info strings fixed by peat-mesh; changing any of them changes every
// derived identifier and key, so they are part of the wire contract.
const (
	infoMeshID          = "peat-mesh:mesh-id"
	infoFormationSecret = "peat-mesh:formation-secret"
	infoAuthority       = "peat-mesh:authority-keypair"
	infoFormationKey    = "peat-protocol-v1-formation"
	infoIrohPrefix      = "iroh:"
)

// hkdf32 is HKDF-SHA256 extract-then-expand with a 32-byte output. A nil
// salt is the RFC 5869 default (HashLen zero bytes), which is what
// peat-mesh uses for its key-pair derivations.
func hkdf32(ikm, salt []byte, info string) []byte {
	out, err := hkdf.Key(sha256.New, ikm, salt, info, 32)
	if err != nil {
		// Only possible for output lengths above 255*32 bytes.
		panic("mesh: hkdf: " + err.Error())
	}
	return out
}

// DeriveMeshID returns the 8-character upper-case hex mesh_id of a
// formation: the first 4 bytes of HKDF-SHA256(salt=name, ikm=seed,
// info="peat-mesh:mesh-id").
func DeriveMeshID(name string, seed []byte) string {
	okm := hkdf32(seed, []byte(name), infoMeshID)
	defer clear(okm)
	return strings.ToUpper(hex.EncodeToString(okm[:4]))
}

// DeriveFormationSecret returns the 32-byte formation secret of a formation:
// HKDF-SHA256(salt=name, ikm=seed, info="peat-mesh:formation-secret"). The
// caller owns the returned slice and should clear it when done.
func DeriveFormationSecret(name string, seed []byte) []byte {
	return hkdf32(seed, []byte(name), infoFormationSecret)
}

// DeviceKey derives an Ed25519 key pair the way peat-mesh's
// DeviceKeypair::from_seed does: the 32-byte HKDF-SHA256 output (no salt,
// ikm, info) is the RFC 8032 private-key seed. The genesis authority is
// DeviceKey(seed, "peat-mesh:authority-keypair"); nodes use it with their
// hostname or "peat-ota-signing-v1" as info.
func DeviceKey(ikm []byte, info string) ed25519.PrivateKey {
	s := hkdf32(ikm, nil, info)
	defer clear(s)
	return ed25519.NewKeyFromSeed(s)
}

// IrohKey derives the Ed25519 key of a node's Iroh endpoint from the
// formation secret and its hostname (info "iroh:"+hostname). Its public key
// is the endpoint id, which is what a certificate's subject must be for
// peat-mesh sync gating to accept the node.
func IrohKey(formationSecret []byte, hostname string) ed25519.PrivateKey {
	return DeviceKey(formationSecret, infoIrohPrefix+hostname)
}

// DeviceID is the display identifier peat-mesh uses for a public key in
// logs: lowercase hex of the first 16 bytes of SHA-256(public key).
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// FormationKey derives the HMAC key of the peat-mesh formation handshake:
// HKDF-SHA256(salt=formationID, ikm=secret', info="peat-protocol-v1-formation")
// where secret' is the secret itself when it is 32 bytes long and its
// SHA-256 otherwise (the node accepts shared secrets of any length).
func FormationKey(formationID string, secret []byte) []byte {
	ikm := secret
	if len(secret) != 32 {
		sum := sha256.Sum256(secret)
		ikm = sum[:]
		defer clear(ikm)
	}
	return hkdf32(ikm, []byte(formationID), infoFormationKey)
}

// FormationResponse computes the answer to a formation handshake challenge:
// HMAC-SHA256(key, nonce || formationID).
func FormationResponse(key, nonce []byte, formationID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(nonce)
	m.Write([]byte(formationID))
	return m.Sum(nil)
}

// VerifyFormationResponse reports in constant time whether response answers
// the challenge nonce for the given formation key.
func VerifyFormationResponse(key, nonce []byte, formationID string, response []byte) bool {
	return hmac.Equal(FormationResponse(key, nonce, formationID), response)
}
