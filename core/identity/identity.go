// Package identity verifies enrollment bearers issued by an organisation's
// OpenID Connect provider and decides, with the org's policy rules, which
// tier a verified identity gets (or that it is denied).
//
// A JWT bearer is verified locally with github.com/coreos/go-oidc/v3:
// discovery, JWKS signature, issuer, audience (the IdP's client_id), expiry
// and not-before with at most 60 s of clock skew; `alg: none` and keys the
// provider does not publish are refused. A bearer that is not a JWT (an
// opaque access token) is checked by the provider itself, through RFC 7662
// introspection when the discovery document names an introspection
// endpoint, else through the userinfo endpoint, as the reference does.
//
// Every outbound call carries a timeout and a response size limit. Discovery
// documents and key sets are cached per issuer; the key set is re-fetched
// when a token names an unknown key, at most once per JWKSMinRefresh, so a
// stream of forged key ids cannot turn the gateway into an amplifier against
// the IdP.
package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// MaxClockSkew is the most clock difference tolerated between the gateway
// and an IdP when checking exp, nbf and iat.
const MaxClockSkew = 60 * time.Second

// maxResponseBytes bounds every body read from an IdP.
const maxResponseBytes = 1 << 20

// Options configure a Verifier. The zero value is production-safe.
type Options struct {
	// HTTPClient supplies the transport (e.g. custom root CAs). Its Timeout
	// is ignored: Timeout below always applies.
	HTTPClient *http.Client
	// Timeout bounds every outbound call (default 5 s).
	Timeout time.Duration
	// AllowHTTP accepts http:// issuers and endpoints (development only).
	AllowHTTP bool
	// ClockSkew tolerated on exp/nbf/iat (default and maximum MaxClockSkew).
	ClockSkew time.Duration
	// DiscoveryTTL is how long a discovery document is trusted before it is
	// fetched again (default 1 h).
	DiscoveryTTL time.Duration
	// DiscoveryRetry is how long a failed discovery is remembered, so an IdP
	// outage is not hammered by every enrollment (default 5 s).
	DiscoveryRetry time.Duration
	// JWKSMinRefresh is the shortest interval between two key-set fetches of
	// one issuer (default 10 s).
	JWKSMinRefresh time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// IdP names the provider a bearer is checked against.
type IdP struct {
	ID        string
	IssuerURL string
	ClientID  string
	// Secret returns the client secret; it is only called for
	// introspection, so a JWT never costs a key-provider round trip. The
	// caller's buffer is zeroed after use.
	Secret func(ctx context.Context) ([]byte, error)
}

// Identity is a verified bearer.
type Identity struct {
	// Subject is the `sub` claim, or "unknown" when absent.
	Subject string
	// Claims are the token's claims; JSON numbers are json.Number so they
	// keep their text for policy matching.
	Claims map[string]any
	// Method says how it was verified: "jwt", "introspection" or "userinfo".
	Method string
}

// Error is a verification failure. Its message is safe to return to the
// client and to audit: it never contains the token.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

// fail builds an *Error. Causes from go-oidc or the transport may quote an
// IdP's response body, so the text is flattened and capped.
func fail(format string, args ...any) error {
	return &Error{Reason: sanitize(fmt.Sprintf(format, args...))}
}

// Verifier checks bearers against IdPs. It is safe for concurrent use.
type Verifier struct {
	opts   Options
	client *http.Client

	mu        sync.Mutex
	providers map[string]*provider
}

// New returns a Verifier.
func New(o Options) *Verifier {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.ClockSkew <= 0 || o.ClockSkew > MaxClockSkew {
		o.ClockSkew = MaxClockSkew
	}
	if o.DiscoveryTTL <= 0 {
		o.DiscoveryTTL = time.Hour
	}
	if o.DiscoveryRetry <= 0 {
		o.DiscoveryRetry = 5 * time.Second
	}
	if o.JWKSMinRefresh <= 0 {
		o.JWKSMinRefresh = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	base := http.DefaultTransport
	if o.HTTPClient != nil && o.HTTPClient.Transport != nil {
		base = o.HTTPClient.Transport
	}
	v := &Verifier{opts: o, providers: map[string]*provider{}}
	v.client = &http.Client{Timeout: o.Timeout, Transport: limitBody{base}, CheckRedirect: v.checkRedirect}
	return v
}

// checkRedirect keeps redirects on https (unless allowed) and short.
func (v *Verifier) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	return v.checkURL("redirect", req.URL.String())
}

func (v *Verifier) checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fail("%s %q is not an absolute URL", what, raw)
	}
	if u.Scheme == "https" || (v.opts.AllowHTTP && u.Scheme == "http") {
		return nil
	}
	return fail("%s must use https:// (got %s://)", what, u.Scheme)
}

// Verify checks token against idp and returns the verified identity, or an
// *Error explaining the refusal.
func (v *Verifier) Verify(ctx context.Context, idp IdP, token string) (*Identity, error) {
	if err := v.checkURL("issuer_url", idp.IssuerURL); err != nil {
		return nil, err
	}
	p, err := v.provider(ctx, idp.IssuerURL)
	if err != nil {
		return nil, err
	}
	if hdr, ok := jwtHeader(token); ok {
		return v.verifyJWT(ctx, p, idp, token, hdr)
	}
	switch {
	case p.introspection != "":
		return v.introspect(ctx, p, idp, token)
	case p.userinfo != "":
		return v.userinfo(ctx, p, token)
	}
	return nil, fail("IdP has neither introspection nor userinfo endpoint")
}

// ---- discovery ----

type provider struct {
	mu      sync.Mutex // serialises (re)discovery of this issuer
	issuer  string
	fetched time.Time
	failed  time.Time
	lastErr error

	keys          oidc.KeySet
	jwksURL       string
	algs          []string
	introspection string
	userinfo      string
}

// provider returns the issuer's discovered metadata, fetching it when absent
// or older than DiscoveryTTL. A failed refresh keeps serving the previous
// document; a failed first discovery is remembered for DiscoveryRetry.
func (v *Verifier) provider(ctx context.Context, issuer string) (*provider, error) {
	v.mu.Lock()
	p := v.providers[issuer]
	if p == nil {
		p = &provider{issuer: issuer}
		v.providers[issuer] = p
	}
	v.mu.Unlock()

	p.mu.Lock()
	defer p.mu.Unlock()
	now := v.opts.Now()
	if !p.fetched.IsZero() && now.Sub(p.fetched) < v.opts.DiscoveryTTL {
		return p, nil
	}
	if !p.failed.IsZero() && now.Sub(p.failed) < v.opts.DiscoveryRetry {
		if !p.fetched.IsZero() {
			return p, nil
		}
		return nil, p.lastErr
	}
	if err := v.discover(ctx, p); err != nil {
		p.failed, p.lastErr = now, err
		if !p.fetched.IsZero() {
			return p, nil
		}
		return nil, err
	}
	p.fetched, p.failed, p.lastErr = now, time.Time{}, nil
	return p, nil
}

func (v *Verifier) discover(ctx context.Context, p *provider) error {
	// The discovery request must not be cut short by the caller's request
	// ending (the result is shared), but is bounded by the client timeout.
	dctx := oidc.ClientContext(context.WithoutCancel(ctx), v.client)
	op, err := oidc.NewProvider(dctx, p.issuer)
	if err != nil {
		return fail("discovery failed: %v", err)
	}
	var meta struct {
		JWKS          string   `json:"jwks_uri"`
		Introspection string   `json:"introspection_endpoint"`
		Userinfo      string   `json:"userinfo_endpoint"`
		Algs          []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return fail("discovery document: %v", err)
	}
	for _, u := range []struct{ what, v string }{{"jwks_uri", meta.JWKS},
		{"introspection_endpoint", meta.Introspection}, {"userinfo_endpoint", meta.Userinfo}} {
		if u.v != "" {
			if err := v.checkURL(u.what, u.v); err != nil {
				return err
			}
		}
	}
	var algs []string
	for _, a := range meta.Algs {
		if a != "" && !strings.EqualFold(a, "none") && !strings.HasPrefix(a, "HS") {
			algs = append(algs, a)
		}
	}
	if meta.JWKS != p.jwksURL || p.keys == nil {
		// One key set per jwks_uri, kept across rediscoveries so its cache
		// survives; its fetches are rate limited per issuer.
		kc := &http.Client{Timeout: v.opts.Timeout, CheckRedirect: v.checkRedirect,
			Transport: &refreshLimit{next: v.client.Transport, min: v.opts.JWKSMinRefresh, now: v.opts.Now}}
		p.keys = oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), kc), meta.JWKS)
		p.jwksURL = meta.JWKS
	}
	p.algs, p.introspection, p.userinfo = algs, meta.Introspection, meta.Userinfo
	return nil
}

// ---- JWT ----

type joseHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// jwtHeader reports whether token is a compact JWS and returns its header.
// Anything else is treated as an opaque token.
func jwtHeader(token string) (joseHeader, bool) {
	var h joseHeader
	if strings.Count(token, ".") != 2 {
		return h, false
	}
	seg, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return h, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || m["alg"] == nil {
		return h, false
	}
	if json.Unmarshal(b, &h) != nil {
		return h, false
	}
	return h, true
}

func (v *Verifier) verifyJWT(ctx context.Context, p *provider, idp IdP, token string, hdr joseHeader) (*Identity, error) {
	if hdr.Alg == "" || strings.EqualFold(hdr.Alg, "none") {
		return nil, fail("unsigned JWT (alg %q) refused", hdr.Alg)
	}
	if strings.HasPrefix(strings.ToUpper(hdr.Alg), "HS") {
		// A symmetric algorithm would let anyone holding the public key (or
		// the client secret) mint tokens.
		return nil, fail("JWT algorithm %s refused", hdr.Alg)
	}
	skew := v.opts.ClockSkew
	cfg := &oidc.Config{
		ClientID:             idp.ClientID,
		SupportedSigningAlgs: p.algs,
		// go-oidc allows no leeway on exp; checking against a clock set back
		// by the skew gives exactly `skew` of tolerance.
		Now: func() time.Time { return v.opts.Now().Add(-skew) },
	}
	if idp.ClientID == "" {
		return nil, fail("IdP has no client_id to check the audience against")
	}
	vctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, v.client), v.opts.Timeout)
	defer cancel()
	tok, err := oidc.NewVerifier(p.issuer, p.keys, cfg).Verify(vctx, token)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return nil, fail("token expired at %s", exp.Expiry.UTC().Format(time.RFC3339))
		}
		return nil, fail("%s", err.Error())
	}
	var raw json.RawMessage
	if err := tok.Claims(&raw); err != nil {
		return nil, fail("claims: %v", err)
	}
	claims, err := decodeClaims(raw)
	if err != nil {
		return nil, fail("claims: %v", err)
	}
	now := v.opts.Now()
	// go-oidc gives nbf five minutes of leeway and ignores iat; the contract
	// allows one minute of skew on both.
	if nbf, ok := numericDate(claims["nbf"]); ok && nbf.After(now.Add(skew)) {
		return nil, fail("token not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok := numericDate(claims["iat"]); ok && iat.After(now.Add(skew)) {
		return nil, fail("token issued in the future (%s)", iat.UTC().Format(time.RFC3339))
	}
	return &Identity{Subject: subject(claims), Claims: claims, Method: "jwt"}, nil
}

// sanitize keeps error text short and single-line. go-oidc's errors never
// hold the token (they report claims and key ids, not the JWT).
func sanitize(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ---- opaque tokens ----

func (v *Verifier) introspect(ctx context.Context, p *provider, idp IdP, token string) (*Identity, error) {
	if idp.Secret == nil {
		return nil, fail("IdP client secret unavailable for introspection")
	}
	secret, err := idp.Secret(ctx)
	if err != nil {
		return nil, fail("IdP client secret could not be opened")
	}
	defer clear(secret)
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	cctx, cancel := context.WithTimeout(ctx, v.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, p.introspection, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fail("introspection request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(idp.ClientID, string(secret))
	body, status, err := v.do(req)
	if err != nil {
		return nil, fail("introspection endpoint unreachable: %v", err)
	}
	if status/100 != 2 {
		return nil, fail("Introspection endpoint returned %d — check client credentials", status)
	}
	claims, err := decodeClaims(body)
	if err != nil {
		return nil, fail("introspection response is not a JSON object")
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, fail("Introspection response missing required 'active' field")
	}
	if !active {
		return nil, fail("Token is not active (revoked or expired)")
	}
	now := v.opts.Now()
	if exp, ok := numericDate(claims["exp"]); ok && exp.Before(now.Add(-v.opts.ClockSkew)) {
		return nil, fail("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if iss, ok := claims["iss"].(string); ok && iss != p.issuer {
		return nil, fail("token issued by %q, expected %q", iss, p.issuer)
	}
	return &Identity{Subject: subject(claims), Claims: claims, Method: "introspection"}, nil
}

func (v *Verifier) userinfo(ctx context.Context, p *provider, token string) (*Identity, error) {
	cctx, cancel := context.WithTimeout(ctx, v.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, p.userinfo, nil)
	if err != nil {
		return nil, fail("userinfo request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	body, status, err := v.do(req)
	if err != nil {
		return nil, fail("userinfo endpoint unreachable: %v", err)
	}
	if status/100 != 2 {
		return nil, fail("Userinfo endpoint returned %d — token may be invalid or expired", status)
	}
	claims, err := decodeClaims(body)
	if err != nil {
		return nil, fail("userinfo response is not a JSON object")
	}
	return &Identity{Subject: subject(claims), Claims: claims, Method: "userinfo"}, nil
}

// do sends req and reads a bounded body. Transport errors are reduced to
// their cause: url.Error would repeat the URL, which may carry a query.
func (v *Verifier) do(req *http.Request) ([]byte, int, error) {
	res, err := v.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, res.StatusCode, err
	}
	return b, res.StatusCode, nil
}

// ---- helpers ----

func decodeClaims(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not an object")
	}
	return m, nil
}

func subject(claims map[string]any) string {
	if s, ok := claims["sub"].(string); ok && s != "" {
		return s
	}
	return "unknown"
}

// numericDate reads a JWT NumericDate (seconds, possibly fractional).
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(f * 1000)), true
}

// limitBody caps every response body at maxResponseBytes, so a hostile or
// broken IdP cannot make us buffer unbounded data within the timeout.
type limitBody struct{ next http.RoundTripper }

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	res.Body = &cappedBody{rc: res.Body, left: maxResponseBytes}
	return res, nil
}

type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// Probe for one more byte: a body of exactly the limit is fine.
		var one [1]byte
		if n, _ := c.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("IdP response larger than %d bytes", maxResponseBytes)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cappedBody) Close() error { return c.rc.Close() }

// refreshLimit lets one key-set fetch through per interval. go-oidc's
// remote key set re-fetches whenever a token names a key it has not cached
// (or its signature fails), so without this every forged token would cost
// the IdP a request.
type refreshLimit struct {
	next http.RoundTripper
	min  time.Duration
	now  func() time.Time

	mu   sync.Mutex
	last time.Time
}

func (l *refreshLimit) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.min {
		l.mu.Unlock()
		return nil, errors.New("key set refreshed recently; unknown signing key")
	}
	l.last = now
	l.mu.Unlock()
	return l.next.RoundTrip(r)
}
