package keys

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func lookupMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFromEnvSelection(t *testing.T) {
	ctx := context.Background()
	vaultSrv := newTransitServer(t, "s.tok", "peat-gateway", "custom")
	kmsSrv := newKMSServer(t)
	arn := kmsSrv.createKey(t)
	kmsEnv := map[string]string{
		EnvKMSKeyARN: arn, EnvKMSEndpoint: kmsSrv.URL,
		"AWS_REGION": kmsRegion, "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name     string
		env      map[string]string
		wantName string // "" means no provider
		wantErr  string // substring naming the variable
	}{
		{"nothing set: plaintext", map[string]string{}, "", ""},
		{"local", map[string]string{EnvKEK: kekA}, "local", ""},
		{"empty KEK is an error", map[string]string{EnvKEK: ""}, "", EnvKEK},
		{"bad KEK", map[string]string{EnvKEK: "zz" + kekA[2:]}, "", EnvKEK},
		{"vault wins over local", map[string]string{EnvVaultAddr: vaultSrv.URL, EnvVaultToken: "s.tok", EnvKEK: kekA}, "vault", ""},
		{"vault custom key", map[string]string{EnvVaultAddr: vaultSrv.URL, EnvVaultToken: "s.tok", EnvVaultTransitKey: "custom"}, "vault", ""},
		{"vault without token", map[string]string{EnvVaultAddr: vaultSrv.URL, EnvKEK: kekA}, "", EnvVaultToken},
		{"vault empty token", map[string]string{EnvVaultAddr: vaultSrv.URL, EnvVaultToken: ""}, "", EnvVaultToken},
		{"vault empty addr", map[string]string{EnvVaultAddr: "", EnvVaultToken: "s.tok"}, "", EnvVaultAddr},
		{"kms wins over everything", with(kmsEnv, EnvVaultAddr, vaultSrv.URL, EnvVaultToken, "s.tok", EnvKEK, kekA), "kms", ""},
		{"kms with default region var", with(kmsEnv, "AWS_REGION", "", "AWS_DEFAULT_REGION", kmsRegion), "kms", ""},
		{"empty kms arn", map[string]string{EnvKMSKeyARN: "", EnvKEK: kekA}, "", EnvKMSKeyARN},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := FromEnv(ctx, lookupMap(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				for _, secret := range []string{"s.tok", "zz" + kekA[2:8]} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error leaks a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantName == "" {
				if p != nil {
					t.Fatalf("provider %v, want none", p)
				}
				return
			}
			if p.Name() != tc.wantName {
				t.Fatalf("provider %s, want %s", p.Name(), tc.wantName)
			}
			// The provider really works with what the environment described.
			if err := Check(ctx, p); err != nil {
				t.Fatal(err)
			}
			blob, err := Seal(ctx, p, []byte("genesis"))
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := Open(ctx, p, blob); err != nil || !bytes.Equal(pt, []byte("genesis")) {
				t.Fatalf("round trip: %v", err)
			}
		})
	}
}

// The default transit key name is used when PEAT_VAULT_TRANSIT_KEY is
// absent: a server that only knows "peat-gateway" must accept the calls.
func TestFromEnvVaultDefaultKey(t *testing.T) {
	srv := newTransitServer(t, "s.tok", DefaultVaultTransitKey)
	p, err := FromEnv(context.Background(), lookupMap(map[string]string{EnvVaultAddr: srv.URL, EnvVaultToken: "s.tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if v := p.(*Vault); v.key != "peat-gateway" {
		t.Fatalf("key %q", v.key)
	}
	if err := Check(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}
