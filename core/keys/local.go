package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
)

// Local wraps data keys with a 32-byte key-encryption key held in process
// (PEAT_KEK): wrapped = 12-byte random nonce || AES-256-GCM(KEK, nonce, DEK)
// with its 16-byte tag, 60 bytes for a 32-byte DEK.
type Local struct {
	aead cipher.AEAD
	rand io.Reader
}

// localMinWrapped is a nonce plus a tag: the smallest wrapped key the
// reference accepts.
const localMinWrapped = nonceSize + tagSize

// NewLocal builds the local provider from the KEK as 64 hex characters
// (either case). Errors never echo the key material.
func NewLocal(kekHex string) (*Local, error) {
	if len(kekHex) != 2*DEKSize {
		return nil, fmt.Errorf("%w: KEK must be %d hex characters, got %d", ErrInvalidKey, 2*DEKSize, len(kekHex))
	}
	kek := make([]byte, DEKSize)
	defer clear(kek)
	// hex.DecodeString's error quotes the offending character, which is
	// part of the secret; report only that the encoding is wrong.
	if _, err := hex.Decode(kek, []byte(kekHex)); err != nil {
		return nil, fmt.Errorf("%w: KEK is not valid hex", ErrInvalidKey)
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	// The AES key schedule inside aead cannot be wiped from Go; the raw KEK
	// bytes are cleared on return.
	return &Local{aead: aead, rand: rand.Reader}, nil
}

// Name returns "local".
func (l *Local) Name() string { return "local" }

// WrapKey encrypts dek under the KEK with a fresh random nonce.
func (l *Local) WrapKey(_ context.Context, dek []byte) ([]byte, error) {
	out := make([]byte, nonceSize, nonceSize+len(dek)+tagSize)
	if _, err := io.ReadFull(l.rand, out); err != nil {
		return nil, fmt.Errorf("generating nonce: %w", err)
	}
	return l.aead.Seal(out, out[:nonceSize], dek, nil), nil
}

// UnwrapKey decrypts a key wrapped by WrapKey with the same KEK.
func (l *Local) UnwrapKey(_ context.Context, wrapped []byte) ([]byte, error) {
	if len(wrapped) < localMinWrapped {
		return nil, fmt.Errorf("%w: local wrapped key is %d bytes, need at least %d", ErrTruncated, len(wrapped), localMinWrapped)
	}
	dek, err := l.aead.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], nil)
	if err != nil {
		return nil, ErrWrongKey
	}
	return dek, nil
}
