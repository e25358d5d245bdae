package mesh

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"
)

// Sentinel errors returned (wrapped with detail) by this package.
var (
	// ErrMalformed reports bytes that are not a valid encoding of the
	// requested structure (too short, bad UTF-8, out-of-range enum...).
	ErrMalformed = errors.New("mesh: malformed encoding")
	// ErrFieldTooLong reports a string that does not fit its length prefix;
	// encoding it would produce a corrupt structure.
	ErrFieldTooLong = errors.New("mesh: field too long")
	// ErrInvalidSignature reports a signature that does not verify.
	ErrInvalidSignature = errors.New("mesh: invalid signature")
	// ErrUntrustedIssuer reports a signed structure whose issuer is not the
	// expected authority.
	ErrUntrustedIssuer = errors.New("mesh: untrusted issuer")
	// ErrZeroized reports use of a Genesis after Zeroize.
	ErrZeroized = errors.New("mesh: genesis has been zeroized")
)

// SeedSize is the size of a genesis seed and of an Ed25519 private-key seed.
const SeedSize = 32

// Policy is a formation's membership policy. Its values are the wire bytes
// of the genesis encoding.
type Policy uint8

// Membership policies (wire values 0, 1, 2).
const (
	PolicyOpen       Policy = 0
	PolicyControlled Policy = 1
	PolicyStrict     Policy = 2
)

var policyNames = [...]string{"Open", "Controlled", "Strict"}

// String returns the policy name as the gateway spells it in JSON.
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// Valid reports whether p is one of the three defined policies.
func (p Policy) Valid() bool { return p <= PolicyStrict }

// ParsePolicy maps the gateway's policy names ("Open", "Controlled",
// "Strict"; exact spelling) to a Policy.
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if s == n {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("mesh: unknown policy %q", s)
}

// Genesis is the root of trust of one formation: a random seed from which
// the mesh_id and formation secret are derived, and the formation
// authority's Ed25519 key that signs certificates and revocation lists.
//
// The authority key is derived from the seed at creation but stored in the
// encoding and taken from there on decode (an HSM-supplied authority is not
// derivable from the seed). A Genesis holds secrets: call Zeroize when done.
type Genesis struct {
	name        string
	seed        [SeedSize]byte
	authority   ed25519.PrivateKey
	meshID      string // derived from name and seed; public, kept to save an HKDF per certificate
	createdAtMs uint64
	policy      Policy
	zeroized    bool
}

// NewGenesis creates a formation genesis with a fresh 32-byte seed read
// from rand (crypto/rand.Reader in production). name is the mesh name; the
// gateway passes the formation's app_id.
func NewGenesis(rand io.Reader, name string, policy Policy, createdAtMs uint64) (*Genesis, error) {
	var seed [SeedSize]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("mesh: reading genesis seed: %w", err)
	}
	return GenesisFromSeed(name, seed[:], policy, createdAtMs)
}

// GenesisFromSeed builds the genesis that NewGenesis would create from the
// given seed. It is deterministic, which is what test vectors and key
// ceremonies need. The seed is copied.
func GenesisFromSeed(name string, seed []byte, policy Policy, createdAtMs uint64) (*Genesis, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("mesh: genesis seed must be %d bytes, got %d", SeedSize, len(seed))
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !policy.Valid() {
		return nil, fmt.Errorf("mesh: invalid policy %d", uint8(policy))
	}
	g := &Genesis{name: name, createdAtMs: createdAtMs, policy: policy}
	copy(g.seed[:], seed)
	g.authority = DeviceKey(g.seed[:], infoAuthority)
	g.meshID = DeriveMeshID(g.name, g.seed[:])
	return g, nil
}

func checkName(name string) error {
	if len(name) > math.MaxUint16 {
		return fmt.Errorf("%w: mesh name is %d bytes, at most %d allowed", ErrFieldTooLong, len(name), math.MaxUint16)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: mesh name is not valid UTF-8", ErrMalformed)
	}
	return nil
}

// genesisFixed is the size of a genesis encoding without its name.
const genesisFixed = 2 + SeedSize + SeedSize + 8 + 1

// Encode returns the peat-mesh genesis encoding (the bytes the gateway
// stores, possibly sealed): u16 LE name length | name | seed (32) |
// authority private-key seed (32) | created_at_ms u64 LE | policy (1).
// The result contains secrets; clear it when done. It returns nil after
// Zeroize.
func (g *Genesis) Encode() []byte {
	if g.zeroized {
		return nil
	}
	n := len(g.name)
	b := make([]byte, 0, genesisFixed+n)
	b = binary.LittleEndian.AppendUint16(b, uint16(n))
	b = append(b, g.name...)
	b = append(b, g.seed[:]...)
	b = append(b, g.authority.Seed()...)
	b = binary.LittleEndian.AppendUint64(b, g.createdAtMs)
	return append(b, byte(g.policy))
}

// DecodeGenesis parses a genesis encoding with peat-mesh's rules: at least
// 75+N bytes, UTF-8 name, policy 0–2, and bytes after the policy byte are
// ignored. The authority key is taken from the encoding, not re-derived.
func DecodeGenesis(b []byte) (*Genesis, error) {
	if len(b) < genesisFixed {
		return nil, fmt.Errorf("%w: genesis is %d bytes, need at least %d", ErrMalformed, len(b), genesisFixed)
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b) < genesisFixed+n {
		return nil, fmt.Errorf("%w: genesis truncated: name of %d bytes needs %d bytes, have %d", ErrMalformed, n, genesisFixed+n, len(b))
	}
	name := b[2 : 2+n]
	if !utf8.Valid(name) {
		return nil, fmt.Errorf("%w: genesis mesh name is not valid UTF-8", ErrMalformed)
	}
	p := 2 + n
	g := &Genesis{name: string(name)}
	copy(g.seed[:], b[p:p+SeedSize])
	p += SeedSize
	g.authority = ed25519.NewKeyFromSeed(b[p : p+SeedSize])
	p += SeedSize
	g.createdAtMs = binary.LittleEndian.Uint64(b[p:])
	p += 8
	g.policy = Policy(b[p])
	if !g.policy.Valid() {
		g.Zeroize()
		return nil, fmt.Errorf("%w: genesis policy byte %d out of range", ErrMalformed, b[p])
	}
	g.meshID = DeriveMeshID(g.name, g.seed[:])
	return g, nil
}

// Name returns the mesh name (the formation's app_id).
func (g *Genesis) Name() string { return g.name }

// Policy returns the membership policy.
func (g *Genesis) Policy() Policy { return g.policy }

// CreatedAtMs returns the creation time in Unix milliseconds.
func (g *Genesis) CreatedAtMs() uint64 { return g.createdAtMs }

// MeshID returns the formation's 8-character upper-case hex mesh_id,
// derived from the name and seed.
func (g *Genesis) MeshID() string { return g.meshID }

// FormationSecret returns the 32-byte formation secret, recomputed on each
// call. The caller owns the slice and should clear it when done; the
// gateway never exposes it through its API.
func (g *Genesis) FormationSecret() []byte { return DeriveFormationSecret(g.name, g.seed[:]) }

// AuthorityPublicKey returns the formation authority's Ed25519 public key.
func (g *Genesis) AuthorityPublicKey() ed25519.PublicKey {
	if g.zeroized {
		return nil
	}
	return append(ed25519.PublicKey(nil), g.authority.Public().(ed25519.PublicKey)...)
}

// Zeroize overwrites the seed and the authority private key. The Genesis is
// unusable afterwards: Encode returns nil and signing operations fail with
// ErrZeroized.
func (g *Genesis) Zeroize() {
	clear(g.seed[:])
	clear(g.authority)
	g.zeroized = true
}

// String redacts all secrets so a Genesis can be logged safely.
func (g *Genesis) String() string {
	return fmt.Sprintf("Genesis{name:%q policy:%s created_at_ms:%d seed:<redacted>}", g.name, g.policy, g.createdAtMs)
}

// GoString redacts secrets in %#v output as well.
func (g *Genesis) GoString() string { return g.String() }

// IssueCertificate signs a certificate for subject (a 32-byte Ed25519 public
// key, taken as given) in this formation, valid from issuedAtMs for
// validityMs milliseconds; validityMs 0 means it never expires. The gateway
// issues with a 24 h validity.
func (g *Genesis) IssueCertificate(subject []byte, nodeID string, tier Tier, perms Permissions, issuedAtMs, validityMs uint64) (*Certificate, error) {
	if g.zeroized {
		return nil, ErrZeroized
	}
	var expires uint64
	if validityMs != 0 {
		expires = issuedAtMs + validityMs
		if expires < issuedAtMs { // saturate rather than wrap into the past
			expires = math.MaxUint64
		}
	}
	return IssueCertificate(g.authority, subject, g.MeshID(), nodeID, tier, perms, issuedAtMs, expires)
}

// RootCertificate returns the formation's self-signed root certificate:
// subject = issuer = authority key, tier Enterprise, permissions Authority,
// never expiring. The gateway builds it on the fly with node_id
// "authority-0".
func (g *Genesis) RootCertificate(nodeID string, issuedAtMs uint64) (*Certificate, error) {
	if g.zeroized {
		return nil, ErrZeroized
	}
	return IssueCertificate(g.authority, g.authority.Public().(ed25519.PublicKey), g.MeshID(), nodeID, TierEnterprise, PermAuthority, issuedAtMs, 0)
}

// SignRevocationList signs a revocation list for this formation with the
// authority key.
func (g *Genesis) SignRevocationList(issuedAtMs, sequence uint64, entries []RevokedEntry) (*RevocationList, error) {
	if g.zeroized {
		return nil, ErrZeroized
	}
	return SignRevocationList(g.authority, g.MeshID(), issuedAtMs, sequence, entries)
}

// Credentials returns what peat-mesh calls MeshCredentials: everything a
// node needs to join the formation, without the seed or authority secret.
func (g *Genesis) Credentials() *Credentials {
	c := &Credentials{Name: g.name, MeshID: g.MeshID(), Policy: g.policy}
	fs := g.FormationSecret()
	copy(c.FormationSecret[:], fs)
	clear(fs)
	copy(c.AuthorityPublicKey[:], g.authority.Public().(ed25519.PublicKey))
	return c
}

// Credentials is peat-mesh's MeshCredentials: what a node needs to join a
// formation (it carries the formation secret, so treat it as sensitive).
type Credentials struct {
	Name               string
	MeshID             string // 8 upper-case hex characters
	FormationSecret    [32]byte
	AuthorityPublicKey [32]byte
	Policy             Policy
}

// credentialsFixed is the size of a credentials encoding without its name.
const credentialsFixed = 2 + 8 + 32 + 32 + 1

// Encode returns the MeshCredentials encoding: u16 LE name length | name |
// mesh_id (8 ASCII bytes) | formation secret (32) | authority public key
// (32) | policy (1).
func (c *Credentials) Encode() ([]byte, error) {
	if err := checkName(c.Name); err != nil {
		return nil, err
	}
	if len(c.MeshID) != 8 {
		return nil, fmt.Errorf("%w: mesh_id must be 8 bytes, got %d", ErrMalformed, len(c.MeshID))
	}
	b := make([]byte, 0, credentialsFixed+len(c.Name))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(c.Name)))
	b = append(b, c.Name...)
	b = append(b, c.MeshID...)
	b = append(b, c.FormationSecret[:]...)
	b = append(b, c.AuthorityPublicKey[:]...)
	return append(b, byte(c.Policy)), nil
}

// DecodeCredentials parses a MeshCredentials encoding with peat-mesh's
// rules (minimum 75+N bytes, UTF-8 name and mesh_id, policy 0–2, trailing
// bytes ignored).
func DecodeCredentials(b []byte) (*Credentials, error) {
	if len(b) < credentialsFixed {
		return nil, fmt.Errorf("%w: credentials are %d bytes, need at least %d", ErrMalformed, len(b), credentialsFixed)
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b) < credentialsFixed+n {
		return nil, fmt.Errorf("%w: credentials truncated", ErrMalformed)
	}
	p := 2
	name := b[p : p+n]
	p += n
	id := b[p : p+8]
	p += 8
	if !utf8.Valid(name) || !utf8.Valid(id) {
		return nil, fmt.Errorf("%w: credentials contain invalid UTF-8", ErrMalformed)
	}
	c := &Credentials{Name: string(name), MeshID: string(id)}
	copy(c.FormationSecret[:], b[p:])
	p += 32
	copy(c.AuthorityPublicKey[:], b[p:])
	p += 32
	c.Policy = Policy(b[p])
	if !c.Policy.Valid() {
		return nil, fmt.Errorf("%w: credentials policy byte %d out of range", ErrMalformed, b[p])
	}
	return c, nil
}
