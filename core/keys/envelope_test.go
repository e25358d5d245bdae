package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// mesh-formats.md §7.3 (plaintext is the §7.1 set A genesis encoding).
const (
	vecPlaintext = "09006c6f676973746963734242424242424242424242424242424242424242424242424242424242424242fd60458c490308a3e01139312499415ea6a2f90b0456516311350499f8c843920068e5cf8b01000001"
	vecWrapped   = "010101010101010101010101047f017e536de8543802d57846934592408d0ab35d31eafe69f3c3e170ea2bfab086ed765a20a3f589aec841cfff5627"
	vecBlob      = "50454e56013c00010101010101010101010101047f017e536de8543802d57846934592408d0ab35d31eafe69f3c3e170ea2bfab086ed765a20a3f589aec841cfff5627020202020202020202020202dc7a14404581dc59da405edb6d0b32b29fc72d1e21e8d1856d13fe6782c1c202fbf54d9be0e06e4ee1573ee9d8b93e676a788100f04f00289e5523e8567c6587a0b80a4be54e531f54e0c066d7d9a6d6507245e5356c0ec60468f4082e8bc6a2a081cae6"
)

var (
	kekA = strings.Repeat("aa", 32)
	kekB = strings.Repeat("bb", 32)
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func local(t testing.TB, kek string) *Local {
	t.Helper()
	l, err := NewLocal(kek)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestOpenVector(t *testing.T) {
	for _, kek := range []string{kekA, strings.ToUpper(kekA)} {
		pt, err := Open(context.Background(), local(t, kek), unhex(t, vecBlob))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(pt) != vecPlaintext {
			t.Fatalf("plaintext %x", pt)
		}
	}
}

// Seal with the §7.3 fixed randomness reproduces the vector byte for byte:
// DEK and data nonce come from Seal, the wrap nonce from the provider.
func TestSealVector(t *testing.T) {
	l := local(t, kekA)
	l.rand = bytes.NewReader(rep(0x01, 12))
	blob, err := seal(context.Background(), l, unhex(t, vecPlaintext), io.MultiReader(bytes.NewReader(rep(0x99, 32)), bytes.NewReader(rep(0x02, 12))))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(blob); got != vecBlob {
		t.Fatalf("blob =\n%s\nwant\n%s", got, vecBlob)
	}
	if len(blob) != 179 || !bytes.Equal(blob[7:67], unhex(t, vecWrapped)) {
		t.Errorf("wrapped DEK or length differ")
	}
	// The local wrapped-DEK vector on its own.
	l.rand = bytes.NewReader(rep(0x01, 12))
	w, err := l.WrapKey(context.Background(), rep(0x99, 32))
	if err != nil || hex.EncodeToString(w) != vecWrapped || len(w) != 60 {
		t.Fatalf("wrapped = %x, %v", w, err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	l := local(t, kekA)
	for _, pt := range [][]byte{{}, []byte("x"), rep(0x5a, 70000)} {
		b1, err := Seal(ctx, l, pt)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := Seal(ctx, l, pt)
		if bytes.Equal(b1, b2) {
			t.Error("two seals are identical: DEK or nonce not random")
		}
		if !IsEnvelope(b1) || len(b1) != 7+60+12+len(pt)+16 {
			t.Errorf("blob of %d bytes", len(b1))
		}
		got, err := Open(ctx, l, b1)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip: %v", err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	blob := unhex(t, vecBlob)
	mod := func(i int, x byte) []byte { b := bytes.Clone(blob); b[i] ^= x; return b }
	// A DEK of the wrong size, wrapped by a real provider.
	short, _ := local(t, kekA).WrapKey(ctx, rep(0x99, 16))
	shortDEK := append(append([]byte("PENV\x01\x2c\x00"), short...), blob[67:]...)
	tests := []struct {
		name string
		kek  string
		in   []byte
		want error
	}{
		{"plaintext genesis", kekA, unhex(t, vecPlaintext), ErrNotEnvelope},
		{"empty", kekA, nil, ErrNotEnvelope},
		{"partial magic", kekA, []byte("PEN"), ErrNotEnvelope},
		{"magic only", kekA, []byte("PENV"), ErrTruncated},
		{"no length", kekA, []byte("PENV\x01\x3c"), ErrTruncated},
		{"version 0", kekA, mod(4, 0x01), ErrUnsupportedVersion},
		{"version 2", kekA, mod(4, 0x03), ErrUnsupportedVersion},
		{"no tag", kekA, blob[:7+60+12+15], ErrTruncated},
		{"length beyond data", kekA, mod(6, 0x01), ErrTruncated},
		{"cut wrapped key", kekA, blob[:40], ErrTruncated},
		{"wrong KEK", kekB, blob, ErrWrongKey},
		{"tampered wrapped DEK", kekA, mod(30, 0x80), ErrWrongKey},
		{"tampered wrap nonce", kekA, mod(7, 0x01), ErrWrongKey},
		{"tampered data nonce", kekA, mod(70, 0x01), ErrWrongKey},
		{"tampered ciphertext", kekA, mod(100, 0x01), ErrWrongKey},
		{"tampered tag", kekA, mod(len(blob)-1, 0x01), ErrWrongKey},
		{"shorter wrapped length", kekA, mod(5, 0x3c^0x3b), ErrWrongKey},
		{"16-byte DEK", kekA, shortDEK, ErrInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := Open(ctx, local(t, tc.kek), tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
		})
	}
	if _, err := Open(ctx, nil, blob); err == nil {
		t.Error("nil provider opened an envelope")
	}
}

func TestIsEnvelope(t *testing.T) {
	for in, want := range map[string]bool{"": false, "PEN": false, "PENV": true, "PENV\x01rest": true, "penv": false, "\x09\x00logistics": false} {
		if IsEnvelope([]byte(in)) != want {
			t.Errorf("IsEnvelope(%q) != %v", in, want)
		}
	}
}

func TestNewLocal(t *testing.T) {
	secretish := "g" + strings.Repeat("a", 63)
	tests := []struct {
		name, kek string
		ok        bool
	}{
		{"lower", kekA, true},
		{"upper", strings.ToUpper(kekB), true},
		{"mixed", "aA" + strings.Repeat("bB", 31), true},
		{"empty", "", false},
		{"short", strings.Repeat("a", 62), false},
		{"long", strings.Repeat("a", 66), false},
		{"not hex", secretish, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLocal(tc.kek)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidKey) {
					t.Errorf("err %v is not ErrInvalidKey", err)
				}
				if tc.kek != "" && strings.Contains(err.Error(), tc.kek[:4]) || strings.Contains(err.Error(), "'g'") {
					t.Errorf("error leaks key material: %v", err)
				}
			}
		})
	}
	if _, err := local(t, kekA).UnwrapKey(context.Background(), make([]byte, 27)); !errors.Is(err, ErrTruncated) {
		t.Errorf("27-byte wrapped key: %v", err)
	}
	if err := Check(context.Background(), local(t, kekA)); err != nil {
		t.Errorf("Check: %v", err)
	}
	if Check(context.Background(), nil) != nil {
		t.Error("Check(nil) must accept the plaintext configuration")
	}
}

// spy records the DEKs that pass through a real provider so the test can
// check they were wiped once Seal/Open/Rewrap returned.
type spy struct {
	Provider
	seen    [][]byte
	failure error
}

func (s *spy) WrapKey(ctx context.Context, dek []byte) ([]byte, error) {
	s.seen = append(s.seen, dek)
	if s.failure != nil {
		return nil, s.failure
	}
	return s.Provider.WrapKey(ctx, dek)
}

func (s *spy) UnwrapKey(ctx context.Context, w []byte) ([]byte, error) {
	dek, err := s.Provider.UnwrapKey(ctx, w)
	s.seen = append(s.seen, dek)
	return dek, err
}

func (s *spy) allWiped(t *testing.T) {
	t.Helper()
	if len(s.seen) == 0 {
		t.Fatal("no DEK observed")
	}
	for _, d := range s.seen {
		if !bytes.Equal(d, make([]byte, len(d))) {
			t.Fatalf("DEK not wiped: %x", d)
		}
	}
}

func TestDEKWipedOnEveryPath(t *testing.T) {
	ctx := context.Background()
	blob := unhex(t, vecBlob)
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1

	t.Run("seal", func(t *testing.T) {
		s := &spy{Provider: local(t, kekA)}
		if _, err := Seal(ctx, s, []byte("data")); err != nil {
			t.Fatal(err)
		}
		s.allWiped(t)
	})
	t.Run("seal wrap failure", func(t *testing.T) {
		s := &spy{Provider: local(t, kekA), failure: errors.New("down")}
		if _, err := Seal(ctx, s, []byte("data")); err == nil {
			t.Fatal("wrap failure not reported")
		}
		s.allWiped(t)
	})
	t.Run("open", func(t *testing.T) {
		s := &spy{Provider: local(t, kekA)}
		if _, err := Open(ctx, s, blob); err != nil {
			t.Fatal(err)
		}
		s.allWiped(t)
	})
	t.Run("open tampered payload", func(t *testing.T) {
		s := &spy{Provider: local(t, kekA)}
		if _, err := Open(ctx, s, tampered); !errors.Is(err, ErrWrongKey) {
			t.Fatal(err)
		}
		s.allWiped(t)
	})
	t.Run("rewrap and rewrap failure", func(t *testing.T) {
		from, to := &spy{Provider: local(t, kekA)}, &spy{Provider: local(t, kekB)}
		if _, err := Rewrap(ctx, from, to, blob); err != nil {
			t.Fatal(err)
		}
		if _, err := Rewrap(ctx, from, to, tampered); !errors.Is(err, ErrWrongKey) {
			t.Fatal(err)
		}
		from.allWiped(t)
		to.allWiped(t)
	})
}

func TestRewrapLocalToLocal(t *testing.T) {
	ctx := context.Background()
	a, b := local(t, kekA), local(t, kekB)
	blob := unhex(t, vecBlob)
	re, err := Rewrap(ctx, a, b, blob)
	if err != nil {
		t.Fatal(err)
	}
	// Only the wrapped DEK changed: the nonce and ciphertext are the same
	// bytes.
	if !bytes.Equal(re[:7], blob[:7]) || !bytes.Equal(re[67:], blob[67:]) || bytes.Equal(re[7:67], blob[7:67]) {
		t.Fatal("rewrap touched more (or less) than the wrapped DEK")
	}
	if _, err := Open(ctx, a, re); !errors.Is(err, ErrWrongKey) {
		t.Errorf("old KEK still opens: %v", err)
	}
	pt, err := Open(ctx, b, re)
	if err != nil || hex.EncodeToString(pt) != vecPlaintext {
		t.Fatalf("new KEK: %v", err)
	}
	tests := []struct {
		name     string
		from, to Provider
		in       []byte
		want     error
	}{
		{"wrong from KEK", b, a, blob, ErrWrongKey},
		{"plaintext", a, b, unhex(t, vecPlaintext), ErrNotEnvelope},
		{"truncated", a, b, blob[:50], ErrTruncated},
		{"unknown version", a, b, append([]byte("PENV\x02"), blob[5:]...), ErrUnsupportedVersion},
	}
	for _, tc := range tests {
		if _, err := Rewrap(ctx, tc.from, tc.to, tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Rewrap(ctx, a, nil, blob); err == nil {
		t.Error("nil target provider accepted")
	}
}

func BenchmarkSealLocal(b *testing.B) {
	l := local(b, kekA)
	pt := unhex(b, vecPlaintext)
	for b.Loop() {
		if _, err := Seal(context.Background(), l, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenLocal(b *testing.B) {
	l := local(b, kekA)
	blob := unhex(b, vecBlob)
	for b.Loop() {
		if _, err := Open(context.Background(), l, blob); err != nil {
			b.Fatal(err)
		}
	}
}
