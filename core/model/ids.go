package model

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// MaxIdentifierLen bounds org and app identifiers (they become NATS subject
// tokens, Kafka keys and URL path segments).
const MaxIdentifierLen = 128

// ValidateIdentifier applies the reference's identifier rules in its order
// (anchor-api.md §3.1); field is "org_id" or "app_id".
func ValidateIdentifier(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s must not be empty", field)
	case len(v) > MaxIdentifierLen:
		return fmt.Errorf("%s exceeds maximum length (%d > %d)", field, len(v), MaxIdentifierLen)
	case v == "_org":
		return fmt.Errorf("%s '%s' is reserved by the gateway and cannot be used", field, v)
	case !isAlnum(v[0]):
		return fmt.Errorf("%s must start with an alphanumeric character", field)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isAlnum(c) && c != '_' && c != '-' {
			return fmt.Errorf("%s contains invalid characters (allowed: a-zA-Z0-9_-)", field)
		}
	}
	return nil
}

// ValidateToken checks a single path-style token (document ids, filter
// names): the identifier rules, so it is safe as a NATS subject token, a Kafka
// key and a URL segment.
func ValidateToken(field, v string) error { return ValidateIdentifier(field, v) }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// RandomHex returns n random bytes as lowercase hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// NewID returns a 16-hex id (sinks, idps, rules, audit entries).
func NewID() string { return RandomHex(8) }

// NewTokenID returns "peat_" + 32 hex: the token id is its own bearer secret.
func NewTokenID() string { return "peat_" + RandomHex(16) }

// TokenFingerprint is the non-secret name under which a token appears in the
// audit log: the first 8 bytes of SHA-256 of the token, hex.
func TokenFingerprint(tokenID string) string {
	s := sha256.Sum256([]byte(tokenID))
	return hex.EncodeToString(s[:8])
}

// ChangeHash names one document change: 16 lowercase hex characters (the
// reference's width) of SHA-256 over the change's coordinates. The version
// makes a return to an earlier state a distinct change; replays of one change
// carry the same hash.
func ChangeHash(orgID, appID, docID string, version uint64, body []byte) string {
	h := sha256.New()
	var v [8]byte
	binary.LittleEndian.PutUint64(v[:], version)
	for _, p := range [][]byte{[]byte(orgID), []byte(appID), []byte(docID), v[:]} {
		h.Write(p)
		h.Write([]byte{0xFF})
	}
	h.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}
