package mesh

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Tier is a node's trust tier in the mesh (lower is more trusted). Its
// values are the certificate wire bytes.
type Tier uint8

// Mesh tiers (wire values 0–3).
const (
	TierEnterprise Tier = 0
	TierRegional   Tier = 1
	TierTactical   Tier = 2
	TierEdge       Tier = 3
)

var tierNames = [...]string{"Enterprise", "Regional", "Tactical", "Edge"}

// String returns the peat-mesh tier name, e.g. "Tactical".
func (t Tier) String() string {
	if int(t) < len(tierNames) {
		return tierNames[t]
	}
	return fmt.Sprintf("Tier(%d)", uint8(t))
}

// Valid reports whether t is one of the four defined tiers.
func (t Tier) Valid() bool { return t <= TierEdge }

// ParseTier parses a peat-mesh tier name, ignoring case and surrounding
// white space as peat-mesh does.
func ParseTier(s string) (Tier, error) {
	s = strings.TrimSpace(s)
	for i, n := range tierNames {
		if strings.EqualFold(s, n) {
			return Tier(i), nil
		}
	}
	return 0, fmt.Errorf("mesh: unknown tier %q", s)
}

// TierFromGateway maps the gateway's tier names to mesh tiers: Authority →
// Enterprise, Infrastructure → Regional, Endpoint → Tactical. The gateway
// never issues Edge.
func TierFromGateway(name string) (Tier, error) {
	switch name {
	case "Authority":
		return TierEnterprise, nil
	case "Infrastructure":
		return TierRegional, nil
	case "Endpoint":
		return TierTactical, nil
	}
	return 0, fmt.Errorf("mesh: unknown gateway tier %q", name)
}

// Permissions is the mesh permission bit field of a certificate.
type Permissions uint8

// Mesh permission bits and presets.
const (
	PermRelay     Permissions = 0x01
	PermEmergency Permissions = 0x02
	PermEnroll    Permissions = 0x04
	PermAdmin     Permissions = 0x80
	// PermStandard is Relay|Emergency.
	PermStandard Permissions = PermRelay | PermEmergency
	// PermAuthority is every defined permission.
	PermAuthority Permissions = PermRelay | PermEmergency | PermEnroll | PermAdmin
)

// Has reports whether every bit of want is set in p.
func (p Permissions) Has(want Permissions) bool { return p&want == want }

// Gateway-level permission bits (u32 in the gateway's JSON).
const (
	gwRelay     = 0x01
	gwEmergency = 0x02
	gwEnroll    = 0x04
	gwAdmin     = 0x08
)

// PermissionsFromGateway converts gateway permission bits to mesh bits:
// relay, emergency and enroll are copied, gateway ADMIN (0x08) becomes mesh
// ADMIN (0x80) and every other bit is dropped, so 0x0F maps to 0x87.
func PermissionsFromGateway(gw uint32) Permissions {
	p := Permissions(gw & (gwRelay | gwEmergency | gwEnroll))
	if gw&gwAdmin != 0 {
		p |= PermAdmin
	}
	return p
}

// Certificate is a peat-mesh membership certificate: an Ed25519 signature by
// the issuer over the subject key, formation, node, tier, permissions and
// validity window.
type Certificate struct {
	SubjectPublicKey [32]byte
	MeshID           string // at most 255 bytes of UTF-8
	NodeID           string // at most 255 bytes of UTF-8
	Tier             Tier
	Permissions      Permissions
	IssuedAtMs       uint64
	ExpiresAtMs      uint64 // 0 means the certificate never expires
	IssuerPublicKey  [32]byte
	Signature        [64]byte
}

// Sizes of the certificate encoding.
const (
	certSignableFixed = 32 + 1 + 1 + 1 + 1 + 8 + 8 + 32 // 84
	certMinWire       = certSignableFixed + ed25519.SignatureSize
	// tail after node_id: tier, permissions, issued, expires, issuer, signature
	certTail = 1 + 1 + 8 + 8 + 32 + ed25519.SignatureSize
)

// IssueCertificate signs a certificate with authority (an Ed25519 private
// key; its public key becomes the issuer). subject must be 32 bytes and is
// not checked further, as in the reference. mesh_id and node_id longer than
// 255 bytes are refused with ErrFieldTooLong instead of producing the corrupt
// certificate the reference would emit.
func IssueCertificate(authority ed25519.PrivateKey, subject []byte, meshID, nodeID string, tier Tier, perms Permissions, issuedAtMs, expiresAtMs uint64) (*Certificate, error) {
	if len(authority) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("mesh: authority key must be %d bytes, got %d", ed25519.PrivateKeySize, len(authority))
	}
	if len(subject) != 32 {
		return nil, fmt.Errorf("mesh: subject public key must be 32 bytes, got %d", len(subject))
	}
	c := &Certificate{
		MeshID:      meshID,
		NodeID:      nodeID,
		Tier:        tier,
		Permissions: perms,
		IssuedAtMs:  issuedAtMs,
		ExpiresAtMs: expiresAtMs,
	}
	copy(c.SubjectPublicKey[:], subject)
	copy(c.IssuerPublicKey[:], authority.Public().(ed25519.PublicKey))
	msg, err := c.SignableBytes()
	if err != nil {
		return nil, err
	}
	copy(c.Signature[:], sign(authority, msg))
	return c, nil
}

func checkShortString(field, s string) error {
	if len(s) > math.MaxUint8 {
		return fmt.Errorf("%w: %s is %d bytes, at most 255 allowed", ErrFieldTooLong, field, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, field)
	}
	return nil
}

// SignableBytes returns the bytes the issuer signs: subject key (32) | u8
// len + mesh_id | u8 len + node_id | tier | permissions | issued_at_ms u64
// LE | expires_at_ms u64 LE | issuer key (32).
func (c *Certificate) SignableBytes() ([]byte, error) {
	if err := checkShortString("mesh_id", c.MeshID); err != nil {
		return nil, err
	}
	if err := checkShortString("node_id", c.NodeID); err != nil {
		return nil, err
	}
	if !c.Tier.Valid() {
		return nil, fmt.Errorf("%w: tier %d out of range", ErrMalformed, uint8(c.Tier))
	}
	return c.appendSignable(make([]byte, 0, certMinWire+len(c.MeshID)+len(c.NodeID))), nil
}

func (c *Certificate) appendSignable(b []byte) []byte {
	b = append(b, c.SubjectPublicKey[:]...)
	b = append(b, byte(len(c.MeshID)))
	b = append(b, c.MeshID...)
	b = append(b, byte(len(c.NodeID)))
	b = append(b, c.NodeID...)
	b = append(b, byte(c.Tier), byte(c.Permissions))
	b = binary.LittleEndian.AppendUint64(b, c.IssuedAtMs)
	b = binary.LittleEndian.AppendUint64(b, c.ExpiresAtMs)
	return append(b, c.IssuerPublicKey[:]...)
}

// Encode returns the wire encoding: the signable bytes followed by the
// 64-byte signature (148 + len(mesh_id) + len(node_id) bytes, no framing).
// The gateway's enrollment response carries it as lowercase hex.
func (c *Certificate) Encode() ([]byte, error) {
	b, err := c.SignableBytes()
	if err != nil {
		return nil, err
	}
	return append(b, c.Signature[:]...), nil
}

// DecodeCertificate parses a certificate wire encoding with peat-mesh's
// rules: at least 148 bytes, both strings in bounds and valid UTF-8, tier
// 0–3 (permissions may be any byte), bytes after the signature ignored. It
// does not verify the signature; call Verify.
func DecodeCertificate(b []byte) (*Certificate, error) {
	if len(b) < certMinWire {
		return nil, fmt.Errorf("%w: certificate is %d bytes, need at least %d", ErrMalformed, len(b), certMinWire)
	}
	c := &Certificate{}
	copy(c.SubjectPublicKey[:], b)
	p := 32
	m := int(b[p])
	p++
	// peat-mesh requires the node_id length byte to exist as well, hence >=.
	if p+m >= len(b) {
		return nil, fmt.Errorf("%w: certificate mesh_id overruns the encoding", ErrMalformed)
	}
	meshID := b[p : p+m]
	p += m
	k := int(b[p])
	p++
	if p+k+certTail > len(b) {
		return nil, fmt.Errorf("%w: certificate truncated after mesh_id", ErrMalformed)
	}
	nodeID := b[p : p+k]
	p += k
	if !utf8.Valid(meshID) || !utf8.Valid(nodeID) {
		return nil, fmt.Errorf("%w: certificate mesh_id or node_id is not valid UTF-8", ErrMalformed)
	}
	c.MeshID, c.NodeID = string(meshID), string(nodeID)
	c.Tier = Tier(b[p])
	if !c.Tier.Valid() {
		return nil, fmt.Errorf("%w: certificate tier byte %d out of range", ErrMalformed, b[p])
	}
	c.Permissions = Permissions(b[p+1])
	p += 2
	c.IssuedAtMs = binary.LittleEndian.Uint64(b[p:])
	c.ExpiresAtMs = binary.LittleEndian.Uint64(b[p+8:])
	p += 16
	copy(c.IssuerPublicKey[:], b[p:])
	p += 32
	copy(c.Signature[:], b[p:])
	return c, nil
}

// Verify checks the signature against the issuer key carried in the
// certificate. It says nothing about whether that issuer is trusted; use
// VerifyIssuedBy for that.
func (c *Certificate) Verify() error {
	msg, err := c.SignableBytes()
	if err != nil {
		return err
	}
	if !ed25519.Verify(c.IssuerPublicKey[:], msg, c.Signature[:]) {
		return ErrInvalidSignature
	}
	return nil
}

// VerifyIssuedBy checks that the certificate was issued by authority and
// that its signature verifies.
func (c *Certificate) VerifyIssuedBy(authority ed25519.PublicKey) error {
	if len(authority) != ed25519.PublicKeySize || string(authority) != string(c.IssuerPublicKey[:]) {
		return ErrUntrustedIssuer
	}
	return c.Verify()
}

// IsSelfSigned reports whether subject and issuer are the same key, which
// is how peat-mesh recognises a root certificate.
func (c *Certificate) IsSelfSigned() bool { return c.SubjectPublicKey == c.IssuerPublicKey }

// IsValidAt reports whether the certificate is within its validity window
// at nowMs: issued_at is inclusive, expires_at exclusive, 0 never expires.
func (c *Certificate) IsValidAt(nowMs uint64) bool {
	return nowMs >= c.IssuedAtMs && (c.ExpiresAtMs == 0 || nowMs < c.ExpiresAtMs)
}

// RemainingMs returns the time left before expiry at nowMs: MaxUint64 for
// a certificate that never expires, 0 once expired.
func (c *Certificate) RemainingMs(nowMs uint64) uint64 {
	if c.ExpiresAtMs == 0 {
		return math.MaxUint64
	}
	if nowMs >= c.ExpiresAtMs {
		return 0
	}
	return c.ExpiresAtMs - nowMs
}

// Serial returns the certificate's serial number (see SerialOf) computed
// over its canonical wire encoding.
func (c *Certificate) Serial() (SerialNumber, error) {
	b, err := c.Encode()
	if err != nil {
		return SerialNumber{}, err
	}
	return SerialOf(b), nil
}

// SerialNumber identifies one issued certificate.
//
// Certificates carry no serial field, so the serial is derived from the
// bytes: the first 16 bytes of SHA-256 over the wire encoding. 128 bits of a
// collision-resistant hash are unique for any realistic number of
// certificates, stable across processes and implementations, computable by
// a mesh node from the certificate alone, and reveal nothing not already in
// the (public) certificate. Two issuances with identical fields (same
// subject, node and millisecond) produce the same bytes and thus the same
// serial, which is correct: they are the same certificate.
type SerialNumber [16]byte

// String returns the serial as 32 lowercase hex characters, the form used
// in URLs and JSON.
func (s SerialNumber) String() string { return hex.EncodeToString(s[:]) }

// SerialOf returns the serial of a certificate given its wire encoding.
// Pass the canonical encoding (as produced by Encode): since decoders ignore
// trailing bytes, a padded copy of the same certificate hashes differently.
func SerialOf(wire []byte) SerialNumber {
	sum := sha256.Sum256(wire)
	var s SerialNumber
	copy(s[:], sum[:16])
	return s
}

// Serial returns SerialOf(wire) as lowercase hex.
func Serial(wire []byte) string { return SerialOf(wire).String() }

// ParseSerial parses the 32-character hex form of a serial (either case).
func ParseSerial(s string) (SerialNumber, error) {
	var out SerialNumber
	if len(s) != 2*len(out) {
		return out, fmt.Errorf("mesh: serial must be %d hex characters, got %d", 2*len(out), len(s))
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		return SerialNumber{}, fmt.Errorf("mesh: serial is not hex")
	}
	return out, nil
}
