package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/api"
	"github.com/defenseunicorns/peat-gateway/core/enroll"
	"github.com/defenseunicorns/peat-gateway/core/identity/oidctest"
	"github.com/defenseunicorns/peat-gateway/core/mesh"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// enrollGW starts a gateway with the enrollment module; client (may be nil)
// is the HTTP client used to reach IdPs.
func enrollGW(t *testing.T, st store.Store, client *http.Client) (*gw, *enroll.Service) {
	t.Helper()
	ten := tenant.New(st, nil, tenant.Options{})
	svc := enroll.New(ten, enroll.Options{HTTPClient: client, IdPTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(svc.Close)
	return start(t, st, nil, api.EnrollModule(svc)), svc
}

// enrollResp is the decoded §8.1 response.
type enrollResp struct {
	Decision           model.Decision `json:"decision"`
	AuditID            string         `json:"audit_id"`
	Certificate        *string        `json:"certificate"`
	MeshID             *string        `json:"mesh_id"`
	AuthorityPublicKey *string        `json:"authority_public_key"`
}

func newKey(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func (g *gw) setup(org string, formations map[string]string) map[string]model.Formation {
	g.t.Helper()
	g.must(g.do("POST", "/orgs", fmt.Sprintf(`{"org_id":%q,"display_name":"x"}`, org)), 200, "")
	out := map[string]model.Formation{}
	for app, pol := range formations {
		var f model.Formation
		g.must(g.do("POST", "/orgs/"+org+"/formations", fmt.Sprintf(`{"app_id":%q,"enrollment_policy":%q}`, app, pol)), 201, "").decode(g.t, &f)
		out[app] = f
	}
	return out
}

func (g *gw) audit(org string) []model.AuditEntry {
	g.t.Helper()
	var es []model.AuditEntry
	g.must(g.do("GET", "/orgs/"+org+"/audit?limit=10000", nil), 200, "").decode(g.t, &es)
	return es
}

func (g *gw) enroll(org, app string, body any, hdr ...string) resp {
	g.t.Helper()
	return g.do("POST", "/orgs/"+org+"/formations/"+app+"/enroll", body, hdr...)
}

func TestEnrollOpenIssuesVerifiableCertificate(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := enrollGW(t, st, nil)
		fs := g.setup("acme", map[string]string{"open": "Open"})
		pub := newKey(t)

		// The formation's authority key, read independently of the response.
		ten := tenant.New(st, nil, tenant.Options{})
		gen, err := ten.LoadGenesis(context.Background(), "acme", "open")
		if err != nil {
			t.Fatal(err)
		}
		authority := gen.AuthorityPublicKey()
		gen.Zeroize()

		var er enrollResp
		g.must(g.enroll("acme", "open", map[string]string{"public_key": hex.EncodeToString(pub), "node_id": "node-1"}), 200, "").decode(t, &er)
		if er.Decision.Approved == nil || *er.Decision.Approved != (model.Approval{Tier: model.TierEndpoint}) || !hex16.MatchString(er.AuditID) {
			t.Fatalf("response %+v", er)
		}
		if er.Certificate == nil || er.MeshID == nil || *er.MeshID != fs["open"].MeshID ||
			er.AuthorityPublicKey == nil || *er.AuthorityPublicKey != hex.EncodeToString(authority) {
			t.Fatalf("certificate fields %+v", er)
		}
		wire, err := hex.DecodeString(*er.Certificate)
		if err != nil || *er.Certificate != strings.ToLower(*er.Certificate) {
			t.Fatalf("certificate is not lowercase hex: %v", err)
		}
		// Verify with nothing but crypto/ed25519 and the wire layout.
		if !ed25519.Verify(authority, wire[:len(wire)-64], wire[len(wire)-64:]) {
			t.Fatal("certificate signature does not verify against the formation authority")
		}
		c, err := mesh.DecodeCertificate(wire)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.VerifyIssuedBy(authority); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.SubjectPublicKey[:], pub) || c.NodeID != "node-1" || c.MeshID != fs["open"].MeshID ||
			c.Tier != mesh.TierTactical || c.Permissions != 0 || c.ExpiresAtMs-c.IssuedAtMs != 86_400_000 {
			t.Fatalf("certificate %+v", c)
		}
		serial := mesh.Serial(wire)

		// Audited with the serial.
		es := g.audit("acme")
		if len(es) != 1 || es[0].AuditID != er.AuditID || es[0].IdpID != "none" || es[0].Subject != "anonymous" ||
			es[0].Serial == nil || *es[0].Serial != serial || es[0].Decision.Approved == nil {
			t.Fatalf("audit %+v", es)
		}

		// Without key material: approved, certificate fields all null.
		r := g.must(g.enroll("acme", "open", `{"node_id":"only-node"}`), 200, "")
		if !strings.Contains(string(r.body), `"certificate":null,"mesh_id":null,"authority_public_key":null`) {
			t.Fatalf("body %s", r.body)
		}
		// A body that is not JSON (or has no JSON content type) is "no body".
		req, _ := http.NewRequest("POST", g.base+"/orgs/acme/formations/open/enroll",
			strings.NewReader(`{"public_key":"`+hex.EncodeToString(pub)+`","node_id":"n"}`))
		req.Header.Set("Content-Type", "text/plain")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `"certificate":null`) {
			t.Fatalf("text/plain body: %d %s", res.StatusCode, b)
		}
		g.must(g.enroll("acme", "open", `{"public_key":5}`), 200, "")

		// Validation.
		g.must(g.enroll("acme", "open", `{"public_key":"zz","node_id":"n"}`), 400, "Invalid public_key: not valid hex")
		g.must(g.enroll("acme", "open", `{"public_key":"abcd","node_id":"n"}`), 400, "Invalid public_key: expected 32 bytes, got 2")
		g.must(g.enroll("acme", "open", map[string]string{"public_key": hex.EncodeToString(pub), "node_id": strings.Repeat("n", 256)}), 400, "node_id")
		// 255 bytes is the most the certificate can carry.
		g.must(g.enroll("acme", "open", map[string]string{"public_key": strings.ToUpper(hex.EncodeToString(newKey(t))), "node_id": strings.Repeat("n", 255)}), 200, "")

		// Inventory: root first, stable, then the issued certificates.
		var cs1, cs2 []model.Certificate
		g.must(g.do("GET", "/orgs/acme/formations/open/certificates", nil), 200, "").decode(t, &cs1)
		g.must(g.do("GET", "/orgs/acme/formations/open/certificates", nil), 200, "").decode(t, &cs2)
		if len(cs1) != 3 || cs1[0].PeerID != "authority-0" || cs1[0].IssuedAt != fs["open"].CreatedAt || cs1[0].ExpiresAt != 0 ||
			cs1[0].SubjectKey != hex.EncodeToString(authority) || cs1[0].Fingerprint != hex.EncodeToString(authority[:8]) ||
			cs1[0].Permissions != 0x87 || cs1[0].Serial != cs2[0].Serial {
			t.Fatalf("root %+v / %+v", cs1[0], cs2[0])
		}
		if got := cs1[1]; got.Serial != serial || got.PeerID != "node-1" || got.NodeID != "node-1" ||
			got.SubjectKey != hex.EncodeToString(pub) || got.Tier != "Endpoint" || got.Revoked || got.AuditID != er.AuditID {
			t.Fatalf("issued %+v", got)
		}
		var peers []model.PeerInfo
		g.must(g.do("GET", "/orgs/acme/formations/open/peers", nil), 200, "").decode(t, &peers)
		if len(peers) != 2 || peers[0].PeerID != strings.Repeat("n", 255) || peers[1].PeerID != "node-1" ||
			peers[1].Status != "Disconnected" || peers[1].LastSeen != c.IssuedAtMs {
			t.Fatalf("peers %+v", peers)
		}

		// Revocation.
		g.must(g.do("POST", "/orgs/acme/formations/open/certificates/"+strings.ToUpper(serial)+"/revoke", nil), 200, "")
		g.must(g.do("POST", "/orgs/acme/formations/open/certificates/"+serial+"/revoke", nil), 400, "already revoked")
		g.must(g.do("POST", "/orgs/acme/formations/open/certificates/"+strings.Repeat("0", 32)+"/revoke", nil), 404, "not found")
		g.must(g.do("POST", "/orgs/acme/formations/open/certificates/xyz/revoke", nil), 404, "not found")
		g.must(g.do("POST", "/orgs/acme/formations/nope/certificates/"+serial+"/revoke", nil), 404, "Formation 'nope' not found")
		g.must(g.do("GET", "/orgs/acme/formations/open/peers", nil), 200, "").decode(t, &peers)
		if len(peers) != 1 || peers[0].PeerID == "node-1" || peers[0].Status != "Disconnected" {
			t.Fatalf("peers after revoke %+v", peers)
		}

		var rl enroll.RevocationList
		g.must(g.do("GET", "/orgs/acme/formations/open/revocations", nil), 200, "").decode(t, &rl)
		raw, err := base64.StdEncoding.DecodeString(rl.List)
		if err != nil {
			t.Fatal(err)
		}
		l, err := mesh.DecodeRevocationList(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Verify(authority); err != nil {
			t.Fatalf("revocation list does not verify: %v", err)
		}
		sn, _ := mesh.ParseSerial(serial)
		if _, ok := l.Lookup(sn); !ok || l.Sequence != 1 || l.MeshID != fs["open"].MeshID || len(rl.Entries) != 1 ||
			rl.Entries[0].Serial != serial || rl.Entries[0].SubjectPublicKey != hex.EncodeToString(pub) || !l.IsRevoked(c) {
			t.Fatalf("revocation list %+v", rl)
		}
		// Raw bytes for mesh nodes.
		req, _ = http.NewRequest("GET", g.base+"/orgs/acme/formations/open/revocations", nil)
		req.Header.Set("Accept", "application/octet-stream")
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if l2, err := mesh.DecodeRevocationList(b); err != nil || l2.Verify(authority) != nil {
			t.Fatalf("raw revocation list: %v", err)
		}
		g.must(g.do("GET", "/orgs/acme/formations/nope/certificates", nil), 404, "not found")
		g.must(g.do("GET", "/orgs/acme/formations/nope/revocations", nil), 404, "not found")
		g.must(g.do("GET", "/orgs/acme/formations/nope/peers", nil), 404, "not found")
	})
}

func TestEnrollStatusesAndDenials(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := enrollGW(t, st, nil)
		g.setup("acme", map[string]string{"strict": "Strict", "ctl": "Controlled", "open": "Open"})
		g.must(g.enroll("nope", "open", nil), 404, "Organization 'nope' not found")
		g.must(g.enroll("acme", "nope", nil), 404, "Formation 'nope' not found in org 'acme'")
		g.must(g.enroll("acme", "strict", nil), 403, "Strict policy")
		g.must(g.enroll("acme", "ctl", nil), 401, "Missing bearer token")

		g.must(g.do("POST", "/orgs/acme/formations/open/suspend", nil), 200, "")
		g.must(g.enroll("acme", "open", nil), 409, "suspended")
		g.must(g.do("POST", "/orgs/acme/formations/open/resume", nil), 200, "")
		g.must(g.enroll("acme", "open", nil), 200, "")

		es := g.audit("acme")
		denials := map[string]string{}
		for _, e := range es {
			if e.Decision.Denied != nil {
				denials[e.AppID] = e.Decision.Denied.Reason
			}
		}
		if len(es) != 3 || !strings.Contains(denials["strict"], "Strict") || !strings.Contains(denials["ctl"], "Missing bearer") {
			t.Fatalf("audit %+v", es)
		}

		// A formation deleted and re-created under the same name signs with
		// its new authority, never the cached old one.
		pub := hex.EncodeToString(newKey(t))
		var a, b enrollResp
		g.must(g.enroll("acme", "open", map[string]string{"public_key": pub, "node_id": "n"}), 200, "").decode(t, &a)
		g.must(g.do("DELETE", "/orgs/acme/formations/open", nil), 200, "")
		g.must(g.enroll("acme", "open", nil), 404, "not found")
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"open","enrollment_policy":"Open"}`), 201, "")
		g.must(g.enroll("acme", "open", map[string]string{"public_key": pub, "node_id": "n"}), 200, "").decode(t, &b)
		if *a.AuthorityPublicKey == *b.AuthorityPublicKey || *a.MeshID == *b.MeshID {
			t.Fatal("re-created formation issued with the old authority")
		}
	})
}

func TestEnrollTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := enrollGW(t, st, nil)
		g.setup("acme", map[string]string{"ctl": "Controlled", "other": "Controlled"})
		var tk model.EnrollmentToken
		g.must(g.do("POST", "/orgs/acme/tokens", `{"app_id":"ctl","label":"fleet","max_uses":10}`), 201, "").decode(t, &tk)

		// 100 concurrent enrollments with a max_uses 10 token: exactly 10 win.
		const n = 100
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				body := fmt.Sprintf(`{"public_key":%q,"node_id":"n-%d"}`, hex.EncodeToString(newKey(t)), i)
				req, _ := http.NewRequest("POST", g.base+"/orgs/acme/formations/ctl/enroll", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tk.TokenID)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				statuses[i] = res.StatusCode
			}(i)
		}
		wg.Wait()
		count := map[int]int{}
		for _, s := range statuses {
			count[s]++
		}
		if count[200] != 10 || count[401] != 90 {
			t.Fatalf("statuses %v, want 10×200 and 90×401", count)
		}
		g.must(g.do("GET", "/orgs/acme/tokens/"+tk.TokenID, nil), 200, "").decode(t, &tk)
		if tk.Uses != 10 {
			t.Fatalf("uses %d", tk.Uses)
		}
		var cs []model.Certificate
		g.must(g.do("GET", "/orgs/acme/formations/ctl/certificates", nil), 200, "").decode(t, &cs)
		if len(cs) != 11 {
			t.Fatalf("%d certificates, want root + 10", len(cs))
		}

		// The body token is the fallback; the token of another formation,
		// a revoked token and junk are refused; each is audited.
		var tk2 model.EnrollmentToken
		g.must(g.do("POST", "/orgs/acme/tokens", `{"app_id":"ctl","label":"second"}`), 201, "").decode(t, &tk2)
		g.must(g.enroll("acme", "ctl", map[string]string{"token": tk2.TokenID}), 200, "")
		g.must(g.enroll("acme", "other", map[string]string{"token": tk2.TokenID}), 401, "Enrollment token is invalid, revoked, or expired")
		g.must(g.do("POST", "/orgs/acme/tokens/"+tk2.TokenID+"/revoke", nil), 200, "")
		g.must(g.enroll("acme", "ctl", nil, "Authorization", "Bearer "+tk2.TokenID), 401, "invalid, revoked, or expired")
		g.must(g.enroll("acme", "ctl", nil, "Authorization", "Bearer peat_junk"), 401, "invalid, revoked, or expired")

		// No token secret appears in the audit log or the inventory.
		a := g.do("GET", "/orgs/acme/audit?limit=10000", nil)
		c := g.do("GET", "/orgs/acme/formations/ctl/certificates", nil)
		for _, secret := range []string{tk.TokenID, tk2.TokenID, tk.TokenID[5:], tk2.TokenID[5:]} {
			if bytes.Contains(a.body, []byte(secret)) || bytes.Contains(c.body, []byte(secret)) {
				t.Fatal("token secret leaked into audit or certificate listing")
			}
		}
		es := g.audit("acme")
		approved, denied := 0, 0
		for _, e := range es {
			if e.IdpID != "token" {
				t.Fatalf("audit idp %q", e.IdpID)
			}
			if e.Decision.Approved != nil {
				approved++
				if e.Subject != "token:"+model.TokenFingerprint(tk.TokenID) && e.Subject != "token:"+model.TokenFingerprint(tk2.TokenID) {
					t.Fatalf("subject %q", e.Subject)
				}
			} else {
				denied++
			}
		}
		if approved != 11 || denied != 93 {
			t.Fatalf("audit: %d approvals, %d denials; want 11 and 93", approved, denied)
		}
	})
}

func TestEnrollQuotas(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := enrollGW(t, st, nil)
		g.setup("rl", map[string]string{"a": "Open", "b": "Open"})
		g.must(g.do("PATCH", "/orgs/rl", `{"quotas":{"max_formations":5,"max_peers_per_formation":100,"max_documents_per_formation":5,"max_cdc_sinks":1,"max_enrollments_per_hour":3}}`), 200, "")
		g.must(g.enroll("rl", "a", nil), 200, "")
		g.must(g.enroll("rl", "b", nil), 200, "")
		g.must(g.enroll("rl", "a", nil), 200, "")
		g.must(g.enroll("rl", "b", nil), 429, "Enrollment rate limit exceeded")
		g.must(g.enroll("rl", "a", nil), 429, "Enrollment rate limit exceeded")

		g.setup("pq", map[string]string{"a": "Open"})
		g.must(g.do("PATCH", "/orgs/pq", `{"quotas":{"max_formations":5,"max_peers_per_formation":2,"max_documents_per_formation":5,"max_cdc_sinks":1}}`), 200, "")
		body := func() map[string]string {
			return map[string]string{"public_key": hex.EncodeToString(newKey(t)), "node_id": "n"}
		}
		g.must(g.enroll("pq", "a", body()), 200, "")
		var er enrollResp
		g.must(g.enroll("pq", "a", body()), 200, "").decode(t, &er)
		g.must(g.enroll("pq", "a", body()), 429, "peer quota")
		// Revoking a certificate frees its slot.
		serial := mesh.Serial(mustHex(t, *er.Certificate))
		g.must(g.do("POST", "/orgs/pq/formations/a/certificates/"+serial+"/revoke", nil), 200, "")
		g.must(g.enroll("pq", "a", body()), 200, "")
	})
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnrollOIDC(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		iss := oidctest.New(t)
		g, _ := enrollGW(t, st, iss.Client())
		g.setup("acme", map[string]string{"ctl": "Controlled"})
		g.must(g.enroll("acme", "ctl", nil, "Authorization", "Bearer "+iss.Sign(iss.Claims("alice"))), 400, "No enabled identity provider")

		var idp model.IdpConfig
		g.must(g.do("POST", "/orgs/acme/idps", map[string]string{"issuer_url": iss.URL, "client_id": iss.ClientID,
			"client_secret": iss.ClientSecret}), 201, "").decode(t, &idp)
		g.must(g.do("POST", "/orgs/acme/policy-rules", `{"claim_key":"groups","claim_value":"operators","tier":"Infrastructure","permissions":13,"priority":10}`), 201, "")
		g.must(g.do("POST", "/orgs/acme/policy-rules", `{"claim_key":"banned","claim_value":"true","tier":"Endpoint","priority":1,"effect":"Deny"}`), 201, "")
		g.must(g.do("POST", "/orgs/acme/policy-rules", `{"claim_key":"groups","claim_value":"admins","tier":"Authority","permissions":15,"priority":5,"required_claims":{"mfa":"true"}}`), 201, "")

		bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
		pub := newKey(t)
		withKey := map[string]string{"public_key": hex.EncodeToString(pub), "node_id": "alice-laptop"}

		// A valid JWT: the operators rule decides; the certificate carries
		// the mapped mesh tier and permissions (gateway ADMIN 0x08 → 0x80).
		c := iss.Claims("alice")
		c["groups"] = []string{"operators", "admins"}
		var er enrollResp
		g.must(g.enroll("acme", "ctl", withKey, bearer(iss.Sign(c))...), 200, "").decode(t, &er)
		if *er.Decision.Approved != (model.Approval{Tier: model.TierInfrastructure, Permissions: 13}) {
			t.Fatalf("decision %+v", er.Decision.Approved)
		}
		cert, err := mesh.DecodeCertificate(mustHex(t, *er.Certificate))
		if err != nil || cert.Tier != mesh.TierRegional || cert.Permissions != 0x85 ||
			cert.VerifyIssuedBy(ed25519.PublicKey(mustHex(t, *er.AuthorityPublicKey))) != nil {
			t.Fatalf("certificate %+v %v", cert, err)
		}
		// With mfa the higher-priority admins rule applies.
		c["mfa"] = true
		g.must(g.enroll("acme", "ctl", nil, bearer(iss.Sign(c))...), 200, "").decode(t, &er)
		if *er.Decision.Approved != (model.Approval{Tier: model.TierAuthority, Permissions: 15}) {
			t.Fatalf("decision %+v", er.Decision.Approved)
		}
		// No rule matches: the reference default.
		g.must(g.enroll("acme", "ctl", nil, bearer(iss.Sign(iss.Claims("bob")))...), 200, "").decode(t, &er)
		if *er.Decision.Approved != (model.Approval{Tier: model.TierEndpoint}) {
			t.Fatalf("default decision %+v", er.Decision.Approved)
		}
		// A Deny rule → 403.
		banned := iss.Claims("eve")
		banned["banned"] = true
		banned["groups"] = []string{"operators"}
		g.must(g.enroll("acme", "ctl", nil, bearer(iss.Sign(banned))...), 403, "Denied by policy rule")
		// An opaque token is introspected.
		iss.AddOpaque("opaque-123", map[string]any{"sub": "svc", "groups": []string{"operators"}})
		g.must(g.enroll("acme", "ctl", map[string]string{"token": "opaque-123"}), 200, "").decode(t, &er)
		if er.Decision.Approved.Tier != model.TierInfrastructure {
			t.Fatalf("introspected decision %+v", er.Decision.Approved)
		}
		g.must(g.enroll("acme", "ctl", nil, bearer("opaque-unknown")...), 401, "not active")

		// Every kind of bad JWT: 401, audited as a denial by this IdP.
		mod := func(f func(map[string]any)) string {
			c := iss.Claims("mallory")
			f(c)
			return iss.Sign(c)
		}
		bad := map[string]string{
			"wrong issuer":   mod(func(c map[string]any) { c["iss"] = "https://evil.example" }),
			"wrong audience": mod(func(c map[string]any) { c["aud"] = "another-client" }),
			"expired":        mod(func(c map[string]any) { c["exp"] = time.Now().Add(-5 * time.Minute).Unix() }),
			"bad signature":  oidctest.SignRS256(iss.Rogue, iss.KID, iss.Claims("mallory")),
			"alg none":       oidctest.Unsigned(iss.Claims("mallory")),
			"unknown kid":    oidctest.SignRS256(iss.Rogue, "kid-nobody-published", iss.Claims("mallory")),
		}
		before := len(g.audit("acme"))
		for name, tok := range bad {
			r := g.must(g.enroll("acme", "ctl", withKey, bearer(tok)...), 401, "Token validation failed")
			if bytes.Contains(r.body, []byte(tok)) {
				t.Fatalf("%s: response echoes the token", name)
			}
		}
		es := g.audit("acme")
		if len(es)-before != len(bad) {
			t.Fatalf("%d new audit entries for %d bad tokens", len(es)-before, len(bad))
		}
		for _, e := range es[:len(bad)] { // newest first
			if e.Decision.Denied == nil || e.IdpID != idp.IdpID || e.Subject != "unknown" ||
				!strings.HasPrefix(e.Decision.Denied.Reason, "Token validation failed") || e.Serial != nil {
				t.Fatalf("denial audit %+v", e)
			}
		}
		subjects := map[string]int{}
		for _, e := range es {
			subjects[e.Subject]++
			if e.Decision.Denied != nil && strings.Contains(e.Decision.Denied.Reason, "policy rule") && e.Subject != "eve" {
				t.Fatalf("deny-rule audit %+v", e)
			}
		}
		if subjects["alice"] != 2 || subjects["bob"] != 1 || subjects["eve"] != 1 || subjects["svc"] != 1 {
			t.Fatalf("audit subjects %v", subjects)
		}
		// A disabled IdP is not used.
		g.must(g.do("PATCH", "/orgs/acme/idps/"+idp.IdpID, `{"enabled":false}`), 200, "")
		g.must(g.enroll("acme", "ctl", nil, bearer(iss.Sign(iss.Claims("alice")))...), 400, "No enabled identity provider")
	})
}
