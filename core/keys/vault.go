package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	vault "github.com/hashicorp/vault/api"
)

// DefaultVaultTransitKey is the Transit key name used when none is
// configured (PEAT_VAULT_TRANSIT_KEY unset).
const DefaultVaultTransitKey = "peat-gateway"

// Vault wraps data keys with a HashiCorp Vault Transit key: the wrapped key
// is the "vault:vN:..." ciphertext string as bytes, the same as the Rust
// gateway stores.
type Vault struct {
	client  *vault.Client
	key     string
	timeout time.Duration
}

// NewVault builds the Vault Transit provider for the server at addr,
// authenticating with token and using the Transit key named key (mounted at
// transit/). TLS settings (VAULT_CACERT, VAULT_CLIENT_CERT...), retries
// (VAULT_MAX_RETRIES) and VAULT_NAMESPACE are taken from the standard Vault
// environment variables; the address, token and timeout never are (a set
// VAULT_AGENT_ADDR is ignored). Each call is bounded by 10 s. It makes no
// request; use Check to prove the key is usable.
func NewVault(addr, token, key string) (*Vault, error) {
	if addr == "" {
		return nil, errors.New("keys: vault: empty address")
	}
	if token == "" {
		return nil, errors.New("keys: vault: empty token")
	}
	if key == "" {
		key = DefaultVaultTransitKey
	}
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("keys: vault: %w", cfg.Error)
	}
	cfg.Address = strings.TrimRight(addr, "/")
	// VAULT_AGENT_ADDR would silently take precedence over the configured
	// address in NewClient; PEAT_VAULT_ADDR is the contract.
	cfg.AgentAddress = ""
	// The client's own timeout cancels its context when the call returns,
	// before a raw response body has been read; each call gets its own
	// deadline instead (see call).
	cfg.Timeout = 0
	client, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("keys: vault: %w", err)
	}
	client.SetToken(token)
	return &Vault{client: client, key: key, timeout: defaultTimeout}, nil
}

// Name returns "vault".
func (v *Vault) Name() string { return "vault" }

// transitResponse is the part of a Transit encrypt/decrypt reply we read.
// Plaintext decodes straight from base64 into a byte slice we can wipe,
// rather than an immutable string.
type transitResponse struct {
	Data struct {
		Ciphertext string `json:"ciphertext"`
		Plaintext  []byte `json:"plaintext"`
	} `json:"data"`
}

// call POSTs (the Vault client sends PUT, which Vault treats the same) a
// JSON body to transit/{op}/{key} and decodes the reply, wiping the request
// and response buffers afterwards since both can hold the DEK.
func (v *Vault) call(ctx context.Context, op string, body []byte, out *transitResponse) error {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	resp, err := v.client.Logical().WriteRawWithContext(ctx, "transit/"+op+"/"+v.key, body)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		var re *vault.ResponseError
		if op == "decrypt" && errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			// Transit answers 400 for ciphertexts it cannot authenticate or
			// parse, i.e. another key or tampered data.
			return fmt.Errorf("%w: vault transit decrypt: %v", ErrWrongKey, strings.Join(re.Errors, "; "))
		}
		return fmt.Errorf("vault transit %s with key %q: %w", op, v.key, err)
	}
	raw, err := io.ReadAll(resp.Body)
	defer clear(raw)
	if err != nil {
		return fmt.Errorf("vault transit %s: reading response: %w", op, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("vault transit %s: malformed response", op)
	}
	return nil
}

// WrapKey sends dek to transit/encrypt and returns the ciphertext string's
// bytes.
func (v *Vault) WrapKey(ctx context.Context, dek []byte) ([]byte, error) {
	body := make([]byte, 0, 16+base64.StdEncoding.EncodedLen(len(dek))+2)
	body = append(body, `{"plaintext":"`...)
	body = base64.StdEncoding.AppendEncode(body, dek)
	body = append(body, `"}`...)
	defer clear(body)
	var out transitResponse
	if err := v.call(ctx, "encrypt", body, &out); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(out.Data.Ciphertext, "vault:") {
		return nil, errors.New("vault transit encrypt: response has no vault ciphertext")
	}
	return []byte(out.Data.Ciphertext), nil
}

// UnwrapKey sends the stored ciphertext string to transit/decrypt and
// returns the decoded plaintext.
func (v *Vault) UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error) {
	// A Vault ciphertext is ASCII; anything else was wrapped by another
	// provider.
	if !utf8.Valid(wrapped) || !bytes.HasPrefix(wrapped, []byte("vault:")) {
		return nil, fmt.Errorf("%w: wrapped key is not a vault ciphertext", ErrWrongKey)
	}
	body, err := json.Marshal(map[string]string{"ciphertext": string(wrapped)})
	if err != nil {
		return nil, err
	}
	var out transitResponse
	if err := v.call(ctx, "decrypt", body, &out); err != nil {
		clear(out.Data.Plaintext)
		return nil, err
	}
	return out.Data.Plaintext, nil
}
