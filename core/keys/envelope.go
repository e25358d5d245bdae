// Package keys implements envelope encryption of key material at rest: the
// PENV v1 blob shared with the Rust gateway, and the key providers (local
// KEK, AWS KMS, Vault Transit) that wrap its per-blob data key.
//
// A fresh 32-byte data-encryption key (DEK) encrypts the payload with
// AES-256-GCM; only the DEK goes to the provider, so rotating the
// key-encryption key means re-wrapping 32 bytes (Rewrap), never the payload.
// DEKs are wiped from memory on every path once used.
package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Provider wraps and unwraps data keys with a key-encryption key it holds
// (or that a remote service holds for it).
type Provider interface {
	// Name identifies the provider kind in logs and errors ("local", "kms",
	// "vault").
	Name() string
	// WrapKey encrypts a data key; the result is opaque and stored in the
	// envelope.
	WrapKey(ctx context.Context, dek []byte) ([]byte, error)
	// UnwrapKey reverses WrapKey. A wrapped key that this provider did not
	// produce yields an error wrapping ErrWrongKey.
	UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error)
}

// Errors reported by Open, Rewrap and the providers; test with errors.Is.
var (
	// ErrNotEnvelope: the data does not start with the PENV magic. Callers
	// that store legacy plaintext treat such data as plaintext.
	ErrNotEnvelope = errors.New("keys: not a PENV envelope")
	// ErrUnsupportedVersion: the envelope has a version byte other than 1.
	ErrUnsupportedVersion = errors.New("keys: unsupported envelope version")
	// ErrTruncated: the envelope or a wrapped key is shorter than its
	// declared layout.
	ErrTruncated = errors.New("keys: envelope truncated")
	// ErrWrongKey: authentication failed, either because the key-encryption
	// key (or provider) differs from the one that sealed the data or because
	// the data was tampered with. The two cases cannot be told apart.
	ErrWrongKey = errors.New("keys: decryption failed (wrong key or tampered data)")
	// ErrInvalidKey: a key has the wrong size or encoding.
	ErrInvalidKey = errors.New("keys: invalid key")
)

// Envelope layout constants (mesh-formats.md §5.1).
const (
	magic      = "PENV"
	version    = 0x01
	headerSize = 4 + 1 + 2
	nonceSize  = 12
	tagSize    = 16
	// DEKSize is the size of a data-encryption key.
	DEKSize = 32
)

// IsEnvelope reports whether b starts with the PENV magic. A plaintext
// genesis can never do so (its second byte is 0x00), so this distinguishes
// sealed from legacy rows; it does not check that the envelope is intact.
func IsEnvelope(b []byte) bool {
	return len(b) >= len(magic) && string(b[:len(magic)]) == magic
}

// Seal encrypts plaintext under a fresh random DEK, wraps the DEK with p and
// returns the PENV v1 blob: "PENV" | 0x01 | u16 LE len(wrapped) | wrapped |
// 12-byte nonce | AES-256-GCM ciphertext and tag (no associated data).
func Seal(ctx context.Context, p Provider, plaintext []byte) ([]byte, error) {
	return seal(ctx, p, plaintext, rand.Reader)
}

func seal(ctx context.Context, p Provider, plaintext []byte, rnd io.Reader) ([]byte, error) {
	if p == nil {
		return nil, errors.New("keys: seal: no key provider")
	}
	dek := make([]byte, DEKSize)
	defer clear(dek)
	if _, err := io.ReadFull(rnd, dek); err != nil {
		return nil, fmt.Errorf("keys: seal: generating data key: %w", err)
	}
	wrapped, err := p.WrapKey(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("keys: seal: %s provider: %w", p.Name(), err)
	}
	if len(wrapped) > math.MaxUint16 {
		return nil, fmt.Errorf("keys: seal: %s provider returned a %d-byte wrapped key, the envelope holds at most %d", p.Name(), len(wrapped), math.MaxUint16)
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, headerSize+len(wrapped)+nonceSize+len(plaintext)+tagSize)
	out = append(out, magic...)
	out = append(out, version)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	nonce := out[len(out) : len(out)+nonceSize]
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("keys: seal: generating nonce: %w", err)
	}
	out = out[:len(out)+nonceSize]
	return aead.Seal(out, nonce, plaintext, nil), nil
}

// envelope is a parsed PENV blob; its slices alias the input.
type envelope struct {
	wrapped, nonce, ciphertext []byte
}

func parse(blob []byte) (envelope, error) {
	if !IsEnvelope(blob) {
		return envelope{}, ErrNotEnvelope
	}
	if len(blob) < headerSize {
		return envelope{}, fmt.Errorf("%w: %d-byte header", ErrTruncated, len(blob))
	}
	if blob[4] != version {
		return envelope{}, fmt.Errorf("%w: %d", ErrUnsupportedVersion, blob[4])
	}
	w := int(binary.LittleEndian.Uint16(blob[5:]))
	if len(blob) < headerSize+w+nonceSize+tagSize {
		return envelope{}, fmt.Errorf("%w: %d bytes, wrapped key of %d bytes needs at least %d", ErrTruncated, len(blob), w, headerSize+w+nonceSize+tagSize)
	}
	p := headerSize
	e := envelope{wrapped: blob[p : p+w]}
	p += w
	e.nonce = blob[p : p+nonceSize]
	e.ciphertext = blob[p+nonceSize:]
	return e, nil
}

// Open reverses Seal with the provider that sealed the blob (or one holding
// the same key-encryption key). Data without the PENV magic yields
// ErrNotEnvelope; see the package errors for the other failures.
func Open(ctx context.Context, p Provider, blob []byte) ([]byte, error) {
	e, err := parse(blob)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("keys: open: envelope found but no key provider is configured")
	}
	dek, err := unwrap(ctx, p, e.wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, e.nonce, e.ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("keys: open: %w", ErrWrongKey)
	}
	return pt, nil
}

// unwrap calls the provider and checks the DEK size, wiping a DEK of the
// wrong size before returning.
func unwrap(ctx context.Context, p Provider, wrapped []byte) ([]byte, error) {
	dek, err := p.UnwrapKey(ctx, wrapped)
	if err != nil {
		clear(dek)
		return nil, fmt.Errorf("keys: %s provider: %w", p.Name(), err)
	}
	if len(dek) != DEKSize {
		clear(dek)
		return nil, fmt.Errorf("keys: %s provider unwrapped a %d-byte data key, want %d: %w", p.Name(), len(dek), DEKSize, ErrInvalidKey)
	}
	return dek, nil
}

// Rewrap replaces the wrapped DEK of blob: it unwraps it with from and wraps
// it again with to, leaving the nonce and ciphertext untouched. This is how
// a key-encryption key is rotated (or a blob moved to another provider)
// without decrypting the payload. The DEK is checked against the payload's
// authentication tag before it is re-wrapped, so a blob that from cannot
// really open is never re-sealed.
func Rewrap(ctx context.Context, from, to Provider, blob []byte) ([]byte, error) {
	e, err := parse(blob)
	if err != nil {
		return nil, err
	}
	if from == nil || to == nil {
		return nil, errors.New("keys: rewrap: both providers are required")
	}
	dek, err := unwrap(ctx, from, e.wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	// Authenticate without keeping the plaintext: a wrong DEK, or a payload
	// tampered with, must fail here rather than produce an envelope that
	// can never be opened.
	pt, err := aead.Open(nil, e.nonce, e.ciphertext, nil)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("keys: rewrap: %w", ErrWrongKey)
	}
	wrapped, err := to.WrapKey(ctx, dek)
	if err != nil {
		return nil, fmt.Errorf("keys: rewrap: %s provider: %w", to.Name(), err)
	}
	if len(wrapped) > math.MaxUint16 {
		return nil, fmt.Errorf("keys: rewrap: %s provider returned a %d-byte wrapped key", to.Name(), len(wrapped))
	}
	out := make([]byte, 0, headerSize+len(wrapped)+nonceSize+len(e.ciphertext))
	out = append(out, magic...)
	out = append(out, version)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	out = append(out, e.nonce...)
	return append(out, e.ciphertext...), nil
}

// Check proves at start-up that p is reachable and its key usable: it wraps
// a random probe key and unwraps it again. A configured but broken provider
// should stop the gateway with this error rather than fail on first use.
func Check(ctx context.Context, p Provider) error {
	if p == nil {
		return nil
	}
	probe := make([]byte, DEKSize)
	defer clear(probe)
	if _, err := rand.Read(probe); err != nil {
		return err
	}
	wrapped, err := p.WrapKey(ctx, probe)
	if err != nil {
		return fmt.Errorf("keys: %s key provider check failed: wrap: %w", p.Name(), err)
	}
	got, err := p.UnwrapKey(ctx, wrapped)
	defer clear(got)
	if err != nil {
		return fmt.Errorf("keys: %s key provider check failed: unwrap: %w", p.Name(), err)
	}
	if subtle.ConstantTimeCompare(got, probe) != 1 {
		return fmt.Errorf("keys: %s key provider check failed: unwrap returned a different key", p.Name())
	}
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return cipher.NewGCM(block)
}
