package mesh

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
	"unicode/utf8"
)

// RevocationMagic starts every encoded revocation list.
const RevocationMagic = "PRVL"

// RevocationVersion is the only revocation list version this package
// writes and reads.
const RevocationVersion = 1

// revocationSigContext is prepended to the encoded list before signing. The
// authority key also signs certificates, whose signed bytes begin with a
// client-chosen 32-byte subject key; this context is longer than 32 bytes
// and its byte 32 ('i', 0x69) would have to equal a certificate's mesh_id
// length byte, which is 8 for every gateway-issued certificate. So no
// certificate signature can ever be replayed as a revocation list signature
// or the reverse.
const revocationSigContext = "peat-gateway:signed-revocation-list:v1"

// Sizes of the revocation list encoding.
const (
	revEntrySize = 16 + 32 + 8
	revHeadFixed = 4 + 1 + 1 // magic, version, mesh_id length
	revMidFixed  = 8 + 8 + 4 // issued_at, sequence, count
	revTail      = 32 + ed25519.SignatureSize
	revMinSize   = revHeadFixed + revMidFixed + revTail
)

// RevokedEntry is one revoked certificate.
type RevokedEntry struct {
	// Serial identifies the revoked certificate (see SerialNumber).
	Serial SerialNumber
	// SubjectPublicKey is the revoked certificate's subject, for nodes that
	// track revocation per key (as peat-mesh's CertificateStore does).
	SubjectPublicKey [32]byte
	// RevokedAtMs is when the revocation was recorded, Unix ms.
	RevokedAtMs uint64
}

// RevocationList is a formation authority's signed list of revoked
// certificates, which a mesh node can fetch from the gateway and verify
// offline with the authority public key it already trusts.
//
// Wire format, version 1 (integers little-endian, no padding):
//
//	offset  size      field
//	0       4         magic "PRVL"
//	4       1         version, 0x01
//	5       1         M = len(mesh_id)
//	6       M         mesh_id, UTF-8 (the formation's 8 upper-hex chars)
//	6+M     8         issued_at_ms u64
//	14+M    8         sequence u64, increases with every list the
//	                  authority publishes; a node keeps the highest it has
//	                  seen and ignores older lists (rollback protection)
//	22+M    4         N = number of entries, u32
//	26+M    56*N      entries, sorted by serial, strictly ascending:
//	                    serial (16) | subject public key (32) |
//	                    revoked_at_ms u64
//	26+M+56N 32       issuer (authority) Ed25519 public key
//	58+M+56N 64       Ed25519 signature
//
// The signature is pure Ed25519 by the issuer over the ASCII context
// "peat-gateway:signed-revocation-list:v1" followed by every byte before the
// signature. The decoder is strict: exact length (no trailing bytes), known
// magic and version, UTF-8 mesh_id, ascending unique serials; so every list
// has exactly one encoding. See REVOCATION.md for the rationale.
type RevocationList struct {
	MeshID          string
	IssuedAtMs      uint64
	Sequence        uint64
	Entries         []RevokedEntry
	IssuerPublicKey [32]byte
	Signature       [64]byte
}

// SignRevocationList builds and signs a revocation list for meshID with the
// formation authority key. Entries are copied and sorted by serial;
// duplicate serials are an error.
func SignRevocationList(authority ed25519.PrivateKey, meshID string, issuedAtMs, sequence uint64, entries []RevokedEntry) (*RevocationList, error) {
	if len(authority) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("mesh: authority key must be %d bytes, got %d", ed25519.PrivateKeySize, len(authority))
	}
	l := &RevocationList{
		MeshID:     meshID,
		IssuedAtMs: issuedAtMs,
		Sequence:   sequence,
		Entries:    slices.Clone(entries),
	}
	slices.SortFunc(l.Entries, func(a, b RevokedEntry) int { return bytes.Compare(a.Serial[:], b.Serial[:]) })
	copy(l.IssuerPublicKey[:], authority.Public().(ed25519.PublicKey))
	body, err := l.body()
	if err != nil {
		return nil, err
	}
	copy(l.Signature[:], sign(authority, signedRevocationMessage(body)))
	return l, nil
}

func signedRevocationMessage(body []byte) []byte {
	return append([]byte(revocationSigContext), body...)
}

// body returns the encoding without the signature, validating the fields.
func (l *RevocationList) body() ([]byte, error) {
	if err := checkShortString("mesh_id", l.MeshID); err != nil {
		return nil, err
	}
	if uint64(len(l.Entries)) > (1<<32)-1 {
		return nil, fmt.Errorf("%w: too many revocation entries", ErrFieldTooLong)
	}
	for i := 1; i < len(l.Entries); i++ {
		if bytes.Compare(l.Entries[i-1].Serial[:], l.Entries[i].Serial[:]) >= 0 {
			return nil, fmt.Errorf("%w: revocation entries not strictly ascending by serial (duplicate %s?)", ErrMalformed, l.Entries[i].Serial)
		}
	}
	b := make([]byte, 0, revMinSize+len(l.MeshID)+revEntrySize*len(l.Entries))
	b = append(b, RevocationMagic...)
	b = append(b, RevocationVersion, byte(len(l.MeshID)))
	b = append(b, l.MeshID...)
	b = binary.LittleEndian.AppendUint64(b, l.IssuedAtMs)
	b = binary.LittleEndian.AppendUint64(b, l.Sequence)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Entries)))
	for _, e := range l.Entries {
		b = append(b, e.Serial[:]...)
		b = append(b, e.SubjectPublicKey[:]...)
		b = binary.LittleEndian.AppendUint64(b, e.RevokedAtMs)
	}
	return append(b, l.IssuerPublicKey[:]...), nil
}

// Encode returns the wire encoding of the list (see RevocationList).
func (l *RevocationList) Encode() ([]byte, error) {
	b, err := l.body()
	if err != nil {
		return nil, err
	}
	return append(b, l.Signature[:]...), nil
}

// DecodeRevocationList parses a version 1 revocation list. It does not
// verify the signature; call Verify with the trusted authority key.
func DecodeRevocationList(b []byte) (*RevocationList, error) {
	if len(b) < revMinSize {
		return nil, fmt.Errorf("%w: revocation list is %d bytes, need at least %d", ErrMalformed, len(b), revMinSize)
	}
	if string(b[:4]) != RevocationMagic {
		return nil, fmt.Errorf("%w: not a revocation list (bad magic)", ErrMalformed)
	}
	if b[4] != RevocationVersion {
		return nil, fmt.Errorf("%w: unsupported revocation list version %d", ErrMalformed, b[4])
	}
	m := int(b[5])
	p := revHeadFixed
	if len(b) < revMinSize+m {
		return nil, fmt.Errorf("%w: revocation list truncated in header", ErrMalformed)
	}
	meshID := b[p : p+m]
	if !utf8.Valid(meshID) {
		return nil, fmt.Errorf("%w: revocation list mesh_id is not valid UTF-8", ErrMalformed)
	}
	p += m
	l := &RevocationList{MeshID: string(meshID)}
	l.IssuedAtMs = binary.LittleEndian.Uint64(b[p:])
	l.Sequence = binary.LittleEndian.Uint64(b[p+8:])
	n := uint64(binary.LittleEndian.Uint32(b[p+16:]))
	p += revMidFixed
	// Check the declared count against the actual size before allocating,
	// so a hostile count cannot make us reserve memory.
	if uint64(len(b)-p) != n*revEntrySize+revTail {
		return nil, fmt.Errorf("%w: revocation list length does not match its %d entries", ErrMalformed, n)
	}
	l.Entries = make([]RevokedEntry, n)
	for i := range l.Entries {
		e := &l.Entries[i]
		copy(e.Serial[:], b[p:])
		copy(e.SubjectPublicKey[:], b[p+16:])
		e.RevokedAtMs = binary.LittleEndian.Uint64(b[p+48:])
		p += revEntrySize
		if i > 0 && bytes.Compare(l.Entries[i-1].Serial[:], e.Serial[:]) >= 0 {
			return nil, fmt.Errorf("%w: revocation entries not strictly ascending by serial", ErrMalformed)
		}
	}
	copy(l.IssuerPublicKey[:], b[p:])
	copy(l.Signature[:], b[p+32:])
	return l, nil
}

// Verify checks that the list was issued and signed by authority, the
// formation authority public key the caller trusts.
func (l *RevocationList) Verify(authority ed25519.PublicKey) error {
	if len(authority) != ed25519.PublicKeySize || string(authority) != string(l.IssuerPublicKey[:]) {
		return ErrUntrustedIssuer
	}
	body, err := l.body()
	if err != nil {
		return err
	}
	if !ed25519.Verify(authority, signedRevocationMessage(body), l.Signature[:]) {
		return ErrInvalidSignature
	}
	return nil
}

// Lookup returns the entry revoking serial, if any.
func (l *RevocationList) Lookup(serial SerialNumber) (RevokedEntry, bool) {
	i, ok := slices.BinarySearchFunc(l.Entries, serial, func(e RevokedEntry, s SerialNumber) int {
		return bytes.Compare(e.Serial[:], s[:])
	})
	if !ok {
		return RevokedEntry{}, false
	}
	return l.Entries[i], true
}

// IsRevoked reports whether the certificate's serial is on the list.
func (l *RevocationList) IsRevoked(c *Certificate) bool {
	s, err := c.Serial()
	if err != nil {
		return false
	}
	_, ok := l.Lookup(s)
	return ok
}
