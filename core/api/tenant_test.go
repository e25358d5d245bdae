package api_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

var (
	hex8     = regexp.MustCompile(`^[0-9A-F]{8}$`)
	hex16    = regexp.MustCompile(`^[0-9a-f]{16}$`)
	tokenRE  = regexp.MustCompile(`^peat_[0-9a-f]{32}$`)
	orgQuota = `{"quotas":{"max_formations":2,"max_peers_per_formation":5,"max_documents_per_formation":5,"max_cdc_sinks":1}}`
)

func TestOrgs(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := start(t, st, nil)
		r := g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		var org model.Organization
		r.decode(t, &org)
		if org.OrgID != "acme" || org.Quotas != model.DefaultQuotas() || org.CreatedAt == 0 {
			t.Fatalf("org %+v", org)
		}
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Again"}`), 400, "Organization 'acme' already exists")
		g.must(g.do("GET", "/orgs/acme", nil), 200, "")
		g.must(g.do("GET", "/orgs/nope", nil), 404, "Organization 'nope' not found")
		r = g.must(g.do("GET", "/orgs", nil), 200, "")
		var orgs []model.Organization
		r.decode(t, &orgs)
		if len(orgs) != 1 {
			t.Fatalf("orgs %v", orgs)
		}
		r = g.must(g.do("PATCH", "/orgs/acme", orgQuota), 200, "")
		r.decode(t, &org)
		if org.Quotas.MaxFormations != 2 || org.Quotas.MaxEnrollmentsPerHour != 1000 || org.DisplayName != "Acme" {
			t.Fatalf("patched %+v", org)
		}
		g.must(g.do("PATCH", "/orgs/acme", `{"quotas":{"max_formations":1}}`), 422, "missing field")
		g.must(g.do("PATCH", "/orgs/nope", `{}`), 404, "Organization 'nope' not found")
		g.must(g.do("PATCH", "/orgs/acme", `{"display_name":"Acme Corp"}`), 200, "")
		g.must(g.do("DELETE", "/orgs/nope", nil), 404, "not found")
		r = g.must(g.do("DELETE", "/orgs/acme", nil), 200, "")
		if len(r.body) != 0 {
			t.Fatalf("DELETE body %q", r.body)
		}
		g.must(g.do("GET", "/orgs/acme", nil), 404, "not found")
	})
}

// TestBadInputChangesNothing sends malformed and invalid requests and checks
// each gets a 4xx JSON error and that storage is unchanged afterwards.
func TestBadInputChangesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := start(t, st, nil)
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet"}`), 201, "")
		big := `{"org_id":"big","display_name":"` + strings.Repeat("x", 3<<20) + `"}`
		cases := []struct {
			name, method, path, body string
			status                   int
			want                     string
		}{
			{"malformed json", "POST", "/orgs", `{"org_id":`, 400, "Failed to parse the request body as JSON"},
			{"not json", "POST", "/orgs", `hello`, 400, "Failed to parse"},
			{"empty body", "POST", "/orgs", ``, 400, "Failed to parse"},
			{"wrong type", "POST", "/orgs", `{"org_id":5,"display_name":"x"}`, 422, "Failed to deserialize"},
			{"array body", "POST", "/orgs", `[]`, 422, "Failed to deserialize"},
			{"missing field", "POST", "/orgs", `{"org_id":"x"}`, 422, "missing field `display_name`"},
			{"oversized", "POST", "/orgs", big, 413, "length limit exceeded"},
			{"dot", "POST", "/orgs", `{"org_id":"a.b","display_name":"x"}`, 400, "invalid characters"},
			{"star", "POST", "/orgs", `{"org_id":"a*","display_name":"x"}`, 400, "invalid characters"},
			{"gt", "POST", "/orgs", `{"org_id":"a>","display_name":"x"}`, 400, "invalid characters"},
			{"space", "POST", "/orgs", `{"org_id":"a b","display_name":"x"}`, 400, "invalid characters"},
			{"129 chars", "POST", "/orgs", `{"org_id":"` + strings.Repeat("a", 129) + `","display_name":"x"}`, 400, "exceeds maximum length (129 > 128)"},
			{"reserved", "POST", "/orgs", `{"org_id":"_org","display_name":"x"}`, 400, "reserved"},
			{"leading dash", "POST", "/orgs", `{"org_id":"-a","display_name":"x"}`, 400, "must start with an alphanumeric"},
			{"empty id", "POST", "/orgs", `{"org_id":"","display_name":"x"}`, 400, "must not be empty"},
			{"empty display", "POST", "/orgs", `{"org_id":"ok","display_name":""}`, 400, "display_name must not be empty"},
			{"long display", "POST", "/orgs", `{"org_id":"ok","display_name":"` + strings.Repeat("d", 1025) + `"}`, 400, "display_name exceeds maximum length"},
			{"app dot", "POST", "/orgs/acme/formations", `{"app_id":"a.b"}`, 400, "app_id contains invalid characters"},
			{"app reserved", "POST", "/orgs/acme/formations", `{"app_id":"_org"}`, 400, "reserved"},
			{"policy case", "POST", "/orgs/acme/formations", `{"app_id":"x","enrollment_policy":"open"}`, 422, "unknown variant"},
			{"policy null", "POST", "/orgs/acme/formations", `{"app_id":"x","enrollment_policy":null}`, 422, ""},
			{"token label", "POST", "/orgs/acme/tokens", `{"app_id":"fleet","label":"  "}`, 400, "label must not be empty"},
			{"token neg uses", "POST", "/orgs/acme/tokens", `{"app_id":"fleet","label":"x","max_uses":-1}`, 422, "Failed to deserialize"},
			{"token huge uses", "POST", "/orgs/acme/tokens", `{"app_id":"fleet","label":"x","max_uses":4294967296}`, 422, "Failed to deserialize"},
			{"sink variant", "POST", "/orgs/acme/sinks", `{"sink_type":{"Redis":{}}}`, 422, "unknown variant"},
			{"sink prefix", "POST", "/orgs/acme/sinks", `{"sink_type":{"Nats":{"subject_prefix":"a..b"}}}`, 400, "empty tokens"},
			{"sink prefix chars", "POST", "/orgs/acme/sinks", `{"sink_type":{"Nats":{"subject_prefix":"a*b"}}}`, 400, "only [A-Za-z0-9._-]"},
			{"sink url", "POST", "/orgs/acme/sinks", `{"sink_type":{"Webhook":{"url":"ftp://x"}}}`, 400, "http:// or https://"},
			{"sink loopback", "POST", "/orgs/acme/sinks", `{"sink_type":{"Webhook":{"url":"http://127.0.0.1:9/x"}}}`, 400, "loopback or private"},
			{"sink metadata", "POST", "/orgs/acme/sinks", `{"sink_type":{"Webhook":{"url":"http://169.254.169.254/"}}}`, 400, "loopback or private"},
			{"sink topic", "POST", "/orgs/acme/sinks", `{"sink_type":{"Kafka":{"topic":" "}}}`, 400, "topic must not be empty"},
			{"idp http", "POST", "/orgs/acme/idps", `{"issuer_url":"http://kc","client_id":"a","client_secret":"b"}`, 400, "https://"},
			{"idp secret", "POST", "/orgs/acme/idps", `{"issuer_url":"https://kc","client_id":"a","client_secret":" "}`, 400, "client_secret must not be empty"},
			{"rule tier", "POST", "/orgs/acme/policy-rules", `{"claim_key":"g","claim_value":"v","tier":"Root"}`, 422, "unknown variant"},
			{"audit limit", "GET", "/orgs/acme/audit?limit=abc", ``, 400, "Failed to deserialize query string"},
		}
		before := snapshot(t, st)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body any
				if c.body != "" || c.method == "POST" {
					body = c.body
				}
				gt := *g
				gt.t = t
				gt.must(gt.do(c.method, c.path, body), c.status, c.want)
			})
		}
		g.must(g.do("POST", "/orgs", []byte(`{"org_id":"x","display_name":"x"}`), "Content-Type", "text/plain"), 415, "Content-Type: application/json")
		if after := snapshot(t, st); after != before {
			t.Fatalf("storage changed:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// snapshot summarises everything the bad inputs could have touched.
func snapshot(t *testing.T, st store.Store) string {
	ctx := context.Background()
	orgs, err := st.ListOrgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, o := range orgs {
		fs, _ := st.ListFormations(ctx, o.OrgID)
		ss, _ := st.ListSinks(ctx, o.OrgID)
		is, _ := st.ListIdps(ctx, o.OrgID)
		rs, _ := st.ListPolicyRules(ctx, o.OrgID)
		ts := 0
		for _, f := range fs {
			tk, _ := st.ListTokens(ctx, o.OrgID, f.AppID)
			ts += len(tk)
		}
		fmt.Fprintf(&b, "%s:%+v f=%d s=%d i=%d r=%d t=%d;", o.OrgID, o.Quotas, len(fs), len(ss), len(is), len(rs), ts)
	}
	return b.String()
}

func TestFormationsAndTokens(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := start(t, st, nil)
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet"}`), 400, "Organization 'acme' not found")
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		g.must(g.do("PATCH", "/orgs/acme", orgQuota), 200, "")
		r := g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet"}`), 201, "")
		var f model.Formation
		r.decode(t, &f)
		if f.AppID != "fleet" || !hex8.MatchString(f.MeshID) || f.EnrollmentPolicy != "Controlled" || f.Status != "Active" {
			t.Fatalf("formation %+v", f)
		}
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet","enrollment_policy":"Open"}`), 400, "Formation 'fleet' already exists in org 'acme'")
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"ops","enrollment_policy":{"Open":null}}`), 201, "")
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"third"}`), 429, "Organization 'acme' has reached its formation quota (2)")
		r = g.must(g.do("GET", "/orgs/acme/formations", nil), 200, "")
		var fs []model.Formation
		r.decode(t, &fs)
		if len(fs) != 2 || fs[0].AppID != "fleet" || fs[1].AppID != "ops" {
			t.Fatalf("list %+v", fs)
		}
		g.must(g.do("GET", "/orgs/acme/formations/nope", nil), 404, "Formation 'nope' not found in org 'acme'")
		g.must(g.do("GET", "/orgs/nope/formations", nil), 404, "Organization 'nope' not found")

		r = g.must(g.do("POST", "/orgs/acme/formations/fleet/suspend", nil), 200, "")
		r.decode(t, &f)
		if f.Status != "Suspended" {
			t.Fatalf("suspend %+v", f)
		}
		r = g.must(g.do("POST", "/orgs/acme/formations/fleet/resume", nil), 200, "")
		r.decode(t, &f)
		if f.Status != "Active" {
			t.Fatalf("resume %+v", f)
		}
		g.must(g.do("POST", "/orgs/acme/formations/nope/suspend", nil), 404, "not found")

		// tokens
		g.must(g.do("POST", "/orgs/acme/tokens", `{"app_id":"nope","label":"x"}`), 400, "Formation 'nope' not found in org 'acme'")
		g.must(g.do("POST", "/orgs/nope/tokens", `{"app_id":"fleet","label":"x"}`), 400, "Organization 'nope' not found")
		r = g.must(g.do("POST", "/orgs/acme/tokens", `{"app_id":"fleet","label":"ci","max_uses":3,"expires_at":1}`), 201, "")
		var tk model.EnrollmentToken
		r.decode(t, &tk)
		if !tokenRE.MatchString(tk.TokenID) || tk.Uses != 0 || tk.Revoked || *tk.MaxUses != 3 || *tk.ExpiresAt != 1 {
			t.Fatalf("token %+v", tk)
		}
		if !strings.Contains(string(r.body), `"max_uses":3`) {
			t.Fatalf("body %s", r.body)
		}
		r = g.must(g.do("POST", "/orgs/acme/tokens", `{"app_id":"fleet","label":"open"}`), 201, "")
		if !strings.Contains(string(r.body), `"max_uses":null`) || !strings.Contains(string(r.body), `"expires_at":null`) {
			t.Fatalf("optional fields must be null: %s", r.body)
		}
		r = g.must(g.do("GET", "/orgs/acme/formations/fleet/tokens", nil), 200, "")
		var tks []model.EnrollmentToken
		r.decode(t, &tks)
		if len(tks) != 2 {
			t.Fatalf("tokens %v", tks)
		}
		g.must(g.do("GET", "/orgs/acme/formations/nope/tokens", nil), 404, "not found")
		g.must(g.do("GET", "/orgs/acme/tokens/"+tk.TokenID, nil), 200, "")
		g.must(g.do("GET", "/orgs/acme/tokens/peat_missing", nil), 404, "Token 'peat_missing' not found in org 'acme'")
		r = g.must(g.do("POST", "/orgs/acme/tokens/"+tk.TokenID+"/revoke", nil), 200, "")
		r.decode(t, &tk)
		if !tk.Revoked {
			t.Fatal("not revoked")
		}
		g.must(g.do("POST", "/orgs/acme/tokens/"+tk.TokenID+"/revoke", nil), 400, "is already revoked")
		g.must(g.do("POST", "/orgs/acme/tokens/peat_missing/revoke", nil), 400, "not found")
		g.must(g.do("DELETE", "/orgs/acme/tokens/"+tk.TokenID, nil), 200, "")
		g.must(g.do("DELETE", "/orgs/acme/tokens/"+tk.TokenID, nil), 404, "not found")

		// deleting a formation removes its tokens: re-creating it does not revive them
		other := tks[0].TokenID
		if other == tk.TokenID {
			other = tks[1].TokenID
		}
		g.must(g.do("DELETE", "/orgs/acme/formations/fleet", nil), 200, "")
		g.must(g.do("DELETE", "/orgs/acme/formations/fleet", nil), 404, "not found")
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet"}`), 201, "")
		g.must(g.do("GET", "/orgs/acme/tokens/"+other, nil), 404, "not found")
	})
}

func TestSinksIdentityAudit(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := start(t, st, nil)
		g.must(g.do("POST", "/orgs/nope/sinks", `{"sink_type":{"Nats":{"subject_prefix":"cdc"}}}`), 400, "Organization 'nope' not found")
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		r := g.must(g.do("POST", "/orgs/acme/sinks", `{"sink_type":{"Nats":{"subject_prefix":"peat.cdc"}}}`), 201, "")
		var sk model.CdcSinkConfig
		r.decode(t, &sk)
		if !hex16.MatchString(sk.SinkID) || !sk.Enabled || sk.SinkType.Nats == nil || sk.SinkType.Nats.SubjectPrefix != "peat.cdc" {
			t.Fatalf("sink %+v", sk)
		}
		if !strings.Contains(string(r.body), `"sink_type":{"Nats":{"subject_prefix":"peat.cdc"}}`) {
			t.Fatalf("wire shape %s", r.body)
		}
		r = g.must(g.do("POST", "/orgs/acme/sinks", `{"sink_type":{"Webhook":{"url":"https://hooks.example.com/x","secret":"s3cret"}}}`), 201, "")
		if strings.Contains(string(r.body), "s3cret") {
			t.Fatalf("secret echoed: %s", r.body)
		}
		g.must(g.do("POST", "/orgs/acme/sinks", `{"sink_type":{"Kafka":{"topic":"cdc"}}}`), 201, "")
		g.must(g.do("PATCH", "/orgs/acme", `{"quotas":{"max_formations":1,"max_peers_per_formation":1,"max_documents_per_formation":1,"max_cdc_sinks":3}}`), 200, "")
		g.must(g.do("POST", "/orgs/acme/sinks", `{"sink_type":{"Kafka":{"topic":"more"}}}`), 429, "Organization 'acme' has reached its CDC sink quota (3)")
		r = g.must(g.do("GET", "/orgs/acme/sinks", nil), 200, "")
		if strings.Contains(string(r.body), "s3cret") {
			t.Fatalf("secret listed: %s", r.body)
		}
		r = g.must(g.do("PATCH", "/orgs/acme/sinks/"+sk.SinkID, `{"enabled":false}`), 200, "")
		r.decode(t, &sk)
		if sk.Enabled {
			t.Fatal("still enabled")
		}
		g.must(g.do("PATCH", "/orgs/acme/sinks/"+sk.SinkID, `{}`), 422, "missing field `enabled`")
		g.must(g.do("PATCH", "/orgs/acme/sinks/ffffffffffffffff", `{"enabled":true}`), 404, "Sink 'ffffffffffffffff' not found in org 'acme'")
		g.must(g.do("GET", "/orgs/acme/sinks/"+sk.SinkID, nil), 200, "")
		g.must(g.do("DELETE", "/orgs/acme/sinks/"+sk.SinkID, nil), 200, "")
		g.must(g.do("GET", "/orgs/acme/sinks/"+sk.SinkID, nil), 404, "not found")
		g.must(g.do("GET", "/orgs/nope/sinks", nil), 404, "Organization 'nope' not found")

		r = g.must(g.do("POST", "/orgs/acme/idps", `{"issuer_url":"https://kc.example.com/realms/a","client_id":"gw","client_secret":"topsecret"}`), 201, "")
		if strings.Contains(string(r.body), "topsecret") || strings.Contains(string(r.body), "client_secret") {
			t.Fatalf("idp secret returned: %s", r.body)
		}
		var idp model.IdpConfig
		r.decode(t, &idp)
		g.must(g.do("GET", "/orgs/acme/idps", nil), 200, "")
		g.must(g.do("GET", "/orgs/acme/idps/"+idp.IdpID, nil), 200, "")
		r = g.must(g.do("PATCH", "/orgs/acme/idps/"+idp.IdpID, `{"enabled":false}`), 200, "")
		if strings.Contains(string(r.body), "topsecret") {
			t.Fatal("secret in patch response")
		}
		g.must(g.do("GET", "/orgs/acme/idps/0000000000000000", nil), 404, "IdP '0000000000000000' not found in org 'acme'")
		g.must(g.do("DELETE", "/orgs/acme/idps/"+idp.IdpID, nil), 200, "")
		g.must(g.do("POST", "/orgs/nope/idps", `{"issuer_url":"https://kc","client_id":"a","client_secret":"b"}`), 400, "Organization 'nope' not found")

		r = g.must(g.do("POST", "/orgs/acme/policy-rules", `{"claim_key":"groups","claim_value":"ops","tier":"Infrastructure","permissions":5}`), 201, "")
		var rule model.PolicyRule
		r.decode(t, &rule)
		if rule.Priority != 100 || rule.Permissions != 5 || !hex16.MatchString(rule.RuleID) || rule.Effect != "Allow" {
			t.Fatalf("rule %+v", rule)
		}
		g.must(g.do("POST", "/orgs/nope/policy-rules", `{"claim_key":"g","claim_value":"v","tier":"Endpoint"}`), 400, "Organization 'nope' not found")
		g.must(g.do("GET", "/orgs/acme/policy-rules", nil), 200, "")
		g.must(g.do("DELETE", "/orgs/acme/policy-rules/"+rule.RuleID, nil), 200, "")
		g.must(g.do("DELETE", "/orgs/acme/policy-rules/"+rule.RuleID, nil), 404, "Policy rule")

		r = g.must(g.do("GET", "/orgs/acme/audit?limit=0&app_id=", nil), 200, "")
		if string(r.body) != "[]" {
			t.Fatalf("audit %s", r.body)
		}
		g.must(g.do("GET", "/orgs/nope/audit", nil), 404, "Organization 'nope' not found")
	})
}

func TestAuthAndRouting(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		tok := "s3cret-admin"
		g := start(t, st, &tok)
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		anon := *g
		anon.token = ""
		anon.t = t
		cases := []struct {
			name, method, path string
			hdr                []string
			status             int
			want               string
		}{
			{"no header", "GET", "/orgs", nil, 401, "Admin token required"},
			{"basic", "GET", "/orgs", []string{"Authorization", "Basic abc"}, 401, "Admin token required"},
			{"lowercase bearer", "GET", "/orgs", []string{"Authorization", "bearer " + tok}, 401, "Admin token required"},
			{"wrong", "GET", "/orgs", []string{"Authorization", "Bearer nope"}, 403, "Invalid admin token"},
			{"empty", "GET", "/orgs", []string{"Authorization", "Bearer "}, 403, "Invalid admin token"},
			{"other token", "GET", "/orgs", []string{"Authorization", "Bearer " + tok + "x"}, 403, "Invalid admin token"},
			{"auth before 405", "PUT", "/orgs", nil, 401, "Admin token required"},
			{"auth before body", "POST", "/orgs", []string{"Content-Type", "text/plain"}, 401, "Admin token required"},
			{"ok", "GET", "/orgs/acme", []string{"Authorization", "Bearer " + tok}, 200, ""},
			{"health public", "GET", "/health", nil, 200, ""},
			{"ready public", "GET", "/ready", nil, 200, ""},
			{"unknown route", "GET", "/nope", nil, 404, "no route"},
			{"trailing slash", "GET", "/orgs/", nil, 404, "no route"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := anon
				a.t = t
				a.must(a.do(c.method, c.path, nil, c.hdr...), c.status, c.want)
			})
		}
		r := g.must(g.do("PUT", "/orgs/acme", nil), 405, "not allowed")
		if allow := r.hdr.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "PATCH") || !strings.Contains(allow, "DELETE") {
			t.Fatalf("Allow %q", allow)
		}
		r = g.must(g.do("HEAD", "/orgs/acme", nil), 200, "")
		if len(r.body) != 0 {
			t.Fatal("HEAD has a body")
		}
		r = g.must(g.do("GET", "/health", nil), 200, "")
		if string(r.body) != `{"status":"ok","version":"test"}` {
			t.Fatalf("health %s", r.body)
		}
		r = g.must(g.do("GET", "/metrics", nil), 200, "")
		if !strings.Contains(string(r.body), `peat_gw_http_requests_total{method="GET",route="/orgs/{org}",status="200"}`) {
			t.Fatalf("metrics lack route labels:\n%s", r.body)
		}
	})
}

// TestConcurrentCreates proves quotas and uniqueness hold under 50 parallel creates.
func TestConcurrentCreates(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := start(t, st, nil)
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		g.must(g.do("PATCH", "/orgs/acme", `{"quotas":{"max_formations":10,"max_peers_per_formation":1,"max_documents_per_formation":1,"max_cdc_sinks":7}}`), 200, "")
		count := func(f func(i int) resp) map[int]int {
			var mu sync.Mutex
			got := map[int]int{}
			var wg sync.WaitGroup
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					r := f(i)
					mu.Lock()
					got[r.status]++
					mu.Unlock()
				}(i)
			}
			wg.Wait()
			return got
		}
		got := count(func(i int) resp {
			return g.do("POST", "/orgs/acme/formations", fmt.Sprintf(`{"app_id":"f%d"}`, i))
		})
		if got[201] != 10 || got[429] != 40 {
			t.Fatalf("formations: %v", got)
		}
		got = count(func(i int) resp { return g.do("POST", "/orgs", `{"org_id":"same","display_name":"x"}`) })
		if got[200] != 1 || got[400] != 49 {
			t.Fatalf("orgs: %v", got)
		}
		got = count(func(i int) resp {
			return g.do("POST", "/orgs/acme/sinks", `{"sink_type":{"Kafka":{"topic":"t"}}}`)
		})
		if got[201] != 7 || got[429] != 43 {
			t.Fatalf("sinks: %v", got)
		}
		fs, _ := st.ListFormations(context.Background(), "acme")
		if len(fs) != 10 {
			t.Fatalf("stored %d formations", len(fs))
		}
	})
}
