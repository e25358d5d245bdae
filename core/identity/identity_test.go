package identity_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/identity"
	"github.com/defenseunicorns/peat-gateway/core/identity/oidctest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T) (*oidctest.Issuer, *identity.Verifier, identity.IdP, *clock) {
	t.Helper()
	iss := oidctest.New(t)
	clk := &clock{t: time.Now()}
	v := identity.New(identity.Options{HTTPClient: iss.Client(), Timeout: 2 * time.Second, Now: clk.now})
	idp := identity.IdP{ID: "idp1", IssuerURL: iss.URL, ClientID: iss.ClientID,
		Secret: func(context.Context) ([]byte, error) { return []byte(iss.ClientSecret), nil }}
	return iss, v, idp, clk
}

func wantFail(t *testing.T, err error, substr string) {
	t.Helper()
	var e *identity.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *identity.Error containing %q", err, err, substr)
	}
	if !strings.Contains(e.Reason, substr) {
		t.Fatalf("reason %q does not contain %q", e.Reason, substr)
	}
}

func TestVerifyJWT(t *testing.T) {
	iss, v, idp, _ := setup(t)
	ctx := context.Background()

	c := iss.Claims("alice")
	c["groups"] = []string{"operators"}
	id, err := v.Verify(ctx, idp, iss.Sign(c))
	if err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if id.Subject != "alice" || id.Method != "jwt" {
		t.Fatalf("identity %+v", id)
	}
	if !identity.MatchClaim(id.Claims, "groups", "operators") {
		t.Fatalf("claims %v", id.Claims)
	}
	// Discovery and JWKS were each fetched once and are now cached.
	for i := 0; i < 5; i++ {
		if _, err := v.Verify(ctx, idp, iss.Sign(iss.Claims("bob"))); err != nil {
			t.Fatal(err)
		}
	}
	if d, j := iss.DiscoveryHits.Load(), iss.JWKSHits.Load(); d != 1 || j != 1 {
		t.Fatalf("discovery %d, jwks %d fetches; want 1 and 1", d, j)
	}

	mod := func(f func(map[string]any)) string {
		c := iss.Claims("mallory")
		f(c)
		return iss.Sign(c)
	}
	now := time.Now()
	cases := []struct {
		name, token, want string
	}{
		{"wrong issuer", mod(func(c map[string]any) { c["iss"] = "https://evil.example" }), "different provider"},
		{"wrong audience", mod(func(c map[string]any) { c["aud"] = "someone-else" }), "audience"},
		{"expired", mod(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), "expired"},
		{"no exp", mod(func(c map[string]any) { delete(c, "exp") }), "expired"},
		{"not yet valid", mod(func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() }), "not valid before"},
		{"issued in future", mod(func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }), "future"},
		{"bad signature", oidctest.SignRS256(iss.Rogue, iss.KID, iss.Claims("mallory")), "signature"},
		{"alg none", oidctest.Unsigned(iss.Claims("mallory")), "unsigned JWT"},
		{"tampered payload", tamper(iss.Sign(iss.Claims("mallory"))), "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(ctx, idp, tc.token)
			wantFail(t, err, tc.want)
			if strings.Contains(err.Error(), tc.token) {
				t.Fatal("error message contains the token")
			}
		})
	}
	// Within the 60 s skew an expired token is still accepted.
	if _, err := v.Verify(ctx, idp, mod(func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() })); err != nil {
		t.Fatalf("exp 30 s ago (within skew): %v", err)
	}
}

// tamper swaps the payload of a signed JWT for another one.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := json.Marshal(map[string]any{"sub": "admin"})
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

func TestUnknownKidAndRotation(t *testing.T) {
	iss, v, idp, clk := setup(t)
	ctx := context.Background()
	if _, err := v.Verify(ctx, idp, iss.Sign(iss.Claims("a"))); err != nil {
		t.Fatal(err)
	}
	// A token naming a key the issuer never published is refused, and a
	// burst of them costs the IdP at most one key-set fetch per interval.
	before := iss.JWKSHits.Load()
	for i := 0; i < 20; i++ {
		_, err := v.Verify(ctx, idp, oidctest.SignRS256(iss.Rogue, "unknown-kid", iss.Claims("m")))
		if err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := iss.JWKSHits.Load() - before; n > 1 {
		t.Fatalf("%d JWKS fetches for 20 unknown-kid tokens, want ≤ 1", n)
	}
	// The issuer rotates; once the refresh interval has passed the new key
	// is fetched and accepted, and the old one still verifies.
	iss.Rotate()
	clk.add(11 * time.Second)
	// go-oidc shares one in-flight key-set fetch between verifiers and clears
	// it from a goroutine after answering, so a verify issued right after the
	// refused burst can still join that refused fetch; the next one fetches.
	var err error
	for i := 0; i < 100; i++ {
		if _, err = v.Verify(ctx, idp, iss.Sign(iss.Claims("b"))); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if _, err := v.Verify(ctx, idp, oidctest.SignRS256(iss.Key, "key-2", iss.Claims("c"))); err != nil {
		t.Fatal(err)
	}
}

func TestOpaqueTokens(t *testing.T) {
	iss, v, idp, _ := setup(t)
	ctx := context.Background()
	iss.AddOpaque("opaque-good", map[string]any{"sub": "svc-1", "iss": iss.URL, "role": "relay"})

	id, err := v.Verify(ctx, idp, "opaque-good")
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "svc-1" || id.Method != "introspection" || !identity.MatchClaim(id.Claims, "role", "relay") {
		t.Fatalf("identity %+v", id)
	}
	_, err = v.Verify(ctx, idp, "opaque-unknown")
	wantFail(t, err, "not active")

	bad := idp
	bad.Secret = func(context.Context) ([]byte, error) { return []byte("wrong"), nil }
	_, err = v.Verify(ctx, bad, "opaque-good")
	wantFail(t, err, "Introspection endpoint returned 401")

	// Without an introspection endpoint the userinfo endpoint decides.
	iss.Introspection.Store(false)
	v2 := identity.New(identity.Options{HTTPClient: iss.Client()})
	id, err = v2.Verify(ctx, idp, "opaque-good")
	if err != nil || id.Method != "userinfo" || id.Subject != "svc-1" {
		t.Fatalf("userinfo: %+v %v", id, err)
	}
	_, err = v2.Verify(ctx, idp, "opaque-unknown")
	wantFail(t, err, "Userinfo endpoint returned 401")

	iss.Userinfo.Store(false)
	v3 := identity.New(identity.Options{HTTPClient: iss.Client()})
	_, err = v3.Verify(ctx, idp, "opaque-good")
	wantFail(t, err, "neither introspection nor userinfo")
}

func TestHTTPIssuerNeedsFlag(t *testing.T) {
	v := identity.New(identity.Options{})
	_, err := v.Verify(context.Background(), identity.IdP{IssuerURL: "http://idp.example", ClientID: "x"}, "tok")
	wantFail(t, err, "https://")
}

func TestDiscoveryFailureIsBounded(t *testing.T) {
	// Nothing listens here: discovery fails fast, and the failure is
	// remembered so a burst costs one attempt.
	v := identity.New(identity.Options{Timeout: time.Second})
	idp := identity.IdP{IssuerURL: "https://127.0.0.1:1", ClientID: "x"}
	for i := 0; i < 3; i++ {
		_, err := v.Verify(context.Background(), idp, "tok")
		wantFail(t, err, "discovery failed")
	}
}
