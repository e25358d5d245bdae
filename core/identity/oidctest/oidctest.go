// Package oidctest runs a real OpenID Connect issuer inside a test: an
// httptest TLS server with a discovery document, a JWKS endpoint, RFC 7662
// introspection and userinfo, and helpers that sign JWTs (RS256) with the
// published key, with an unpublished key, or not at all.
package oidctest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var (
	keyOnce          sync.Once
	keyA, keyB, keyC *rsa.PrivateKey
)

// keys are generated once per test binary: RSA generation is slow.
func keys() (*rsa.PrivateKey, *rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		for _, k := range []**rsa.PrivateKey{&keyA, &keyB, &keyC} {
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
	})
	return keyA, keyB, keyC
}

// Issuer is a running in-test OIDC provider.
type Issuer struct {
	Server       *httptest.Server
	URL          string
	ClientID     string
	ClientSecret string
	// Key signs tokens and is published under KID.
	Key *rsa.PrivateKey
	KID string
	// Rogue is a key the issuer never publishes (bad signatures).
	Rogue *rsa.PrivateKey

	// Introspection and Userinfo toggle the discovery entries.
	Introspection atomic.Bool
	Userinfo      atomic.Bool

	// Counters of requests served, per endpoint.
	DiscoveryHits, JWKSHits, IntrospectionHits, UserinfoHits atomic.Int64

	mu        sync.Mutex
	published []jose.JSONWebKey
	opaque    map[string]map[string]any
}

// New starts an issuer with one published RS256 key and a confidential
// client. It stops when t ends.
func New(t testing.TB) *Issuer {
	a, _, c := keys()
	i := &Issuer{ClientID: "peat-gateway", ClientSecret: "s3cret-client", Key: a, KID: "key-1", Rogue: c,
		opaque: map[string]map[string]any{}}
	i.Introspection.Store(true)
	i.Userinfo.Store(true)
	i.published = []jose.JSONWebKey{{Key: &a.PublicKey, KeyID: "key-1", Algorithm: "RS256", Use: "sig"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", i.discovery)
	mux.HandleFunc("/jwks", i.jwks)
	mux.HandleFunc("/introspect", i.introspect)
	mux.HandleFunc("/userinfo", i.userinfo)
	i.Server = httptest.NewTLSServer(mux)
	i.URL = i.Server.URL
	t.Cleanup(i.Server.Close)
	return i
}

// Client returns an HTTP client that trusts the issuer's certificate.
func (i *Issuer) Client() *http.Client { return i.Server.Client() }

// Rotate publishes a second key and makes it the signing key.
func (i *Issuer) Rotate() {
	_, b, _ := keys()
	i.mu.Lock()
	defer i.mu.Unlock()
	i.Key, i.KID = b, "key-2"
	i.published = append(i.published, jose.JSONWebKey{Key: &b.PublicKey, KeyID: "key-2", Algorithm: "RS256", Use: "sig"})
}

// Claims returns valid claims for sub: this issuer, audience the client,
// issued now, expiring in five minutes.
func (i *Issuer) Claims(sub string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": i.URL, "aud": i.ClientID, "sub": sub, "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix()}
}

// Sign returns a JWT over claims signed with the issuer's current key.
func (i *Issuer) Sign(claims map[string]any) string {
	i.mu.Lock()
	k, kid := i.Key, i.KID
	i.mu.Unlock()
	return SignRS256(k, kid, claims)
}

// SignRS256 returns a compact RS256 JWS of claims with header kid.
func SignRS256(k *rsa.PrivateKey, kid string, claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(claims)
	in := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + b64(sig)
}

// Unsigned returns an `alg: none` JWT of claims.
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return b64(h) + "." + b64(p) + "."
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// AddOpaque registers an opaque access token that introspection reports
// active with claims (and that userinfo answers for).
func (i *Issuer) AddOpaque(token string, claims map[string]any) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.opaque[token] = claims
}

func (i *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	i.DiscoveryHits.Add(1)
	d := map[string]any{"issuer": i.URL, "jwks_uri": i.URL + "/jwks",
		"authorization_endpoint": i.URL + "/auth", "token_endpoint": i.URL + "/token",
		"id_token_signing_alg_values_supported": []string{"RS256"}}
	if i.Introspection.Load() {
		d["introspection_endpoint"] = i.URL + "/introspect"
	}
	if i.Userinfo.Load() {
		d["userinfo_endpoint"] = i.URL + "/userinfo"
	}
	writeJSON(w, 200, d)
}

func (i *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	i.JWKSHits.Add(1)
	i.mu.Lock()
	set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), i.published...)}
	i.mu.Unlock()
	writeJSON(w, 200, set)
}

func (i *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
	i.IntrospectionHits.Add(1)
	id, secret, ok := r.BasicAuth()
	if r.Method != http.MethodPost || !ok || id != i.ClientID ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(i.ClientSecret)) != 1 {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	i.mu.Lock()
	c, found := i.opaque[r.PostForm.Get("token")]
	i.mu.Unlock()
	if !found {
		writeJSON(w, 200, map[string]any{"active": false})
		return
	}
	out := map[string]any{"active": true}
	for k, v := range c {
		out[k] = v
	}
	writeJSON(w, 200, out)
}

func (i *Issuer) userinfo(w http.ResponseWriter, r *http.Request) {
	i.UserinfoHits.Add(1)
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	i.mu.Lock()
	c, found := i.opaque[tok]
	i.mu.Unlock()
	if !ok || !found {
		writeJSON(w, 401, map[string]string{"error": "invalid_token"})
		return
	}
	writeJSON(w, 200, c)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
