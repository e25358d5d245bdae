package keys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// transitServer implements Vault's documented Transit encrypt/decrypt
// endpoints (POST/PUT /v1/transit/{encrypt,decrypt}/:name) with real
// AES-256-GCM, producing "vault:v1:" ciphertexts, and records the request
// bodies so tests can check exactly what is sent.
type transitServer struct {
	*httptest.Server
	token string
	mu    sync.Mutex
	keys  map[string]cipher.AEAD
	log   []map[string]any
}

func newTransitServer(t *testing.T, token string, keyNames ...string) *transitServer {
	t.Helper()
	ts := &transitServer{token: token, keys: map[string]cipher.AEAD{}}
	for _, n := range keyNames {
		k := make([]byte, 32)
		rand.Read(k)
		block, _ := aes.NewCipher(k)
		ts.keys[n], _ = cipher.NewGCM(block)
	}
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.Close)
	return ts
}

func vaultError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
}

func (ts *transitServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		vaultError(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	if r.Header.Get("X-Vault-Token") != ts.token {
		vaultError(w, http.StatusForbidden, "permission denied")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/transit/")
	op, name, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		vaultError(w, http.StatusNotFound, "no handler for route")
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		vaultError(w, http.StatusBadRequest, "failed to parse JSON input")
		return
	}
	ts.mu.Lock()
	ts.log = append(ts.log, body)
	aead := ts.keys[name]
	ts.mu.Unlock()
	if aead == nil {
		vaultError(w, http.StatusBadRequest, "encryption key not found")
		return
	}
	var data map[string]string
	switch op {
	case "encrypt":
		s, _ := body["plaintext"].(string)
		pt, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			vaultError(w, http.StatusBadRequest, "failed to base64-decode plaintext")
			return
		}
		nonce := make([]byte, aead.NonceSize())
		rand.Read(nonce)
		data = map[string]string{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, pt, nil))}
	case "decrypt":
		s, _ := body["ciphertext"].(string)
		enc, ok := strings.CutPrefix(s, "vault:v1:")
		raw, err := base64.StdEncoding.DecodeString(enc)
		if !ok || err != nil || len(raw) < aead.NonceSize() {
			vaultError(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
			return
		}
		pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], nil)
		if err != nil {
			vaultError(w, http.StatusBadRequest, "cipher: message authentication failed")
			return
		}
		data = map[string]string{"plaintext": base64.StdEncoding.EncodeToString(pt)}
	default:
		vaultError(w, http.StatusNotFound, "no handler for route")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"request_id": "r", "data": data})
}

func newVault(t *testing.T, addr, token, key string) *Vault {
	t.Helper()
	v, err := NewVault(addr, token, key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVaultSealOpen(t *testing.T) {
	ctx := context.Background()
	ts := newTransitServer(t, "s.root", "peat-gateway", "other")
	v := newVault(t, ts.URL+"/", "s.root", "") // trailing slash and default key name
	if err := Check(ctx, v); err != nil {
		t.Fatal(err)
	}
	pt := unhex(t, vecPlaintext)
	blob, err := Seal(ctx, v, pt)
	if err != nil {
		t.Fatal(err)
	}
	w := int(blob[5]) | int(blob[6])<<8
	wrapped := string(blob[7 : 7+w])
	if !strings.HasPrefix(wrapped, "vault:v1:") || w != 89 {
		t.Errorf("wrapped DEK %q (%d bytes)", wrapped, w)
	}
	got, err := Open(ctx, v, blob)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %v", err)
	}
	// The requests carry exactly the documented fields.
	ts.mu.Lock()
	for _, body := range ts.log {
		if len(body) != 1 || (body["plaintext"] == nil && body["ciphertext"] == nil) {
			t.Errorf("unexpected request body fields: %v", body)
		}
	}
	ts.mu.Unlock()

	tests := []struct {
		name string
		p    Provider
		in   []byte
		want error
	}{
		{"other transit key", newVault(t, ts.URL, "s.root", "other"), blob, ErrWrongKey},
		{"local cannot open vault blob", local(t, kekA), blob, ErrWrongKey},
		{"vault cannot open local blob", v, unhex(t, vecBlob), ErrWrongKey},
		{"tampered vault ciphertext", v, func() []byte { b := bytes.Clone(blob); b[7+40] ^= 0x01; return b }(), ErrWrongKey},
		{"tampered payload", v, func() []byte { b := bytes.Clone(blob); b[len(b)-1] ^= 0x01; return b }(), ErrWrongKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(ctx, tc.p, tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVaultFailures(t *testing.T) {
	ctx := context.Background()
	ts := newTransitServer(t, "s.root", "peat-gateway")

	bad := newVault(t, ts.URL, "s.wrong-token", "")
	err := Check(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("bad token: %v", err)
	}
	if strings.Contains(err.Error(), "s.wrong-token") {
		t.Errorf("error leaks the token: %v", err)
	}
	if err := Check(ctx, newVault(t, ts.URL, "s.root", "missing")); err == nil {
		t.Error("missing transit key passed the check")
	}

	down := httptest.NewServer(http.NotFoundHandler())
	addr := down.URL
	down.Close()
	if err := Check(ctx, newVault(t, addr, "s.root", "")); err == nil || !strings.Contains(err.Error(), "vault") {
		t.Errorf("unreachable vault: %v", err)
	}

	for _, args := range [][2]string{{"", "t"}, {"http://x", ""}} {
		if _, err := NewVault(args[0], args[1], "k"); err == nil {
			t.Errorf("NewVault(%q, %q) accepted", args[0], args[1])
		}
	}
}

func TestRewrapLocalToVault(t *testing.T) {
	ctx := context.Background()
	ts := newTransitServer(t, "s.root", "peat-gateway")
	v := newVault(t, ts.URL, "s.root", "peat-gateway")
	blob := unhex(t, vecBlob)
	re, err := Rewrap(ctx, local(t, kekA), v, blob)
	if err != nil {
		t.Fatal(err)
	}
	w := int(re[5]) | int(re[6])<<8
	if !bytes.Equal(re[7+w:], blob[67:]) {
		t.Fatal("payload changed")
	}
	pt, err := Open(ctx, v, re)
	if err != nil || !bytes.Equal(pt, unhex(t, vecPlaintext)) {
		t.Fatalf("open after rewrap: %v", err)
	}
	if _, err := Open(ctx, local(t, kekA), re); !errors.Is(err, ErrWrongKey) {
		t.Errorf("local KEK still opens: %v", err)
	}
	// And back again.
	back, err := Rewrap(ctx, v, local(t, kekB), re)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Open(ctx, local(t, kekB), back); err != nil || !bytes.Equal(pt, unhex(t, vecPlaintext)) {
		t.Fatalf("vault→local: %v", err)
	}
}

// Standard Vault environment variables must not redirect the provider away
// from the configured address or replace its token.
func TestVaultIgnoresAddressEnv(t *testing.T) {
	ts := newTransitServer(t, "s.root", "peat-gateway")
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "s.other")
	if err := Check(context.Background(), newVault(t, ts.URL, "s.root", "")); err != nil {
		t.Fatal(err)
	}
}
