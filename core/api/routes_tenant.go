package api

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

func (s *Server) registerCore(r *Routes) {
	r.Public("GET", "/health", s.health)
	r.Public("GET", "/ready", s.readyz)
	r.Public("GET", "/metrics", s.metricsHandler())

	r.Admin("POST", "/orgs", s.createOrg)
	r.Admin("GET", "/orgs", s.listOrgs)
	r.Admin("GET", "/orgs/{org}", s.getOrg)
	r.Admin("PATCH", "/orgs/{org}", s.patchOrg)
	r.Admin("DELETE", "/orgs/{org}", s.deleteOrg)

	r.Admin("POST", "/orgs/{org}/formations", s.createFormation)
	r.Admin("GET", "/orgs/{org}/formations", s.listFormations)
	r.Admin("GET", "/orgs/{org}/formations/{app}", s.getFormation)
	r.Admin("DELETE", "/orgs/{org}/formations/{app}", s.deleteFormation)
	r.Admin("POST", "/orgs/{org}/formations/{app}/suspend", s.setFormationStatus(model.FormationSuspended))
	r.Admin("POST", "/orgs/{org}/formations/{app}/resume", s.setFormationStatus(model.FormationActive))

	r.Admin("POST", "/orgs/{org}/tokens", s.createToken)
	r.Admin("GET", "/orgs/{org}/formations/{app}/tokens", s.listTokens)
	r.Admin("GET", "/orgs/{org}/tokens/{token}", s.getToken)
	r.Admin("DELETE", "/orgs/{org}/tokens/{token}", s.deleteToken)
	r.Admin("POST", "/orgs/{org}/tokens/{token}/revoke", s.revokeToken)

	r.Admin("POST", "/orgs/{org}/sinks", s.createSink)
	r.Admin("GET", "/orgs/{org}/sinks", s.listSinks)
	r.Admin("GET", "/orgs/{org}/sinks/{sink}", s.getSink)
	r.Admin("PATCH", "/orgs/{org}/sinks/{sink}", s.patchSink)
	r.Admin("DELETE", "/orgs/{org}/sinks/{sink}", s.deleteSink)

	r.Admin("POST", "/orgs/{org}/idps", s.createIdp)
	r.Admin("GET", "/orgs/{org}/idps", s.listIdps)
	r.Admin("GET", "/orgs/{org}/idps/{idp}", s.getIdp)
	r.Admin("PATCH", "/orgs/{org}/idps/{idp}", s.patchIdp)
	r.Admin("DELETE", "/orgs/{org}/idps/{idp}", s.deleteIdp)

	r.Admin("POST", "/orgs/{org}/policy-rules", s.createRule)
	r.Admin("GET", "/orgs/{org}/policy-rules", s.listRules)
	r.Admin("DELETE", "/orgs/{org}/policy-rules/{rule}", s.deleteRule)

	r.Admin("GET", "/orgs/{org}/audit", s.listAudit)
}

func (s *Server) health(c *fasthttp.RequestCtx, _ []string) {
	writeJSON(c, 200, map[string]string{"status": "ok", "version": s.cfg.Version})
}

// readyz checks every dependency with a short deadline and names the failing one.
func (s *Server) readyz(c *fasthttp.RequestCtx, _ []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2e9)
	defer cancel()
	checks := map[string]string{}
	ok := true
	for _, ch := range s.cfg.Checks {
		if err := ch.Check(ctx); err != nil {
			checks[ch.Name()] = err.Error()
			ok = false
		} else {
			checks[ch.Name()] = "ok"
		}
	}
	status := "ready"
	code := 200
	if !ok {
		status, code = "not ready", 503
	}
	writeJSON(c, code, map[string]any{"status": status, "checks": checks})
}

// ---- orgs ----

func (s *Server) createOrg(c *fasthttp.RequestCtx, _ []string) {
	var req struct {
		OrgID       *string `json:"org_id"`
		DisplayName *string `json:"display_name"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.OrgID == nil {
		missing(c, "org_id")
		return
	}
	if req.DisplayName == nil {
		missing(c, "display_name")
		return
	}
	org, err := s.cfg.Tenant.CreateOrg(ctxOf(c), *req.OrgID, *req.DisplayName)
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, org)
}

func (s *Server) listOrgs(c *fasthttp.RequestCtx, _ []string) {
	orgs, err := s.cfg.Tenant.ListOrgs(ctxOf(c))
	if err != nil {
		s.failAs(c, 400, err)
		return
	}
	writeJSON(c, 200, orgs)
}

func (s *Server) getOrg(c *fasthttp.RequestCtx, p []string) {
	org, err := s.cfg.Tenant.GetOrg(ctxOf(c), p[0])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, org)
}

// quotaPatch mirrors OrgQuotas with the reference's required fields.
type quotaPatch struct {
	MaxFormations            *uint32 `json:"max_formations"`
	MaxPeersPerFormation     *uint32 `json:"max_peers_per_formation"`
	MaxDocumentsPerFormation *uint32 `json:"max_documents_per_formation"`
	MaxCdcSinks              *uint32 `json:"max_cdc_sinks"`
	MaxEnrollmentsPerHour    *uint32 `json:"max_enrollments_per_hour"`
}

func (s *Server) patchOrg(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		DisplayName *string     `json:"display_name"`
		Quotas      *quotaPatch `json:"quotas"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	patch := tenant.OrgPatch{DisplayName: req.DisplayName}
	if q := req.Quotas; q != nil {
		for _, f := range []struct {
			name string
			v    *uint32
		}{{"max_formations", q.MaxFormations}, {"max_peers_per_formation", q.MaxPeersPerFormation},
			{"max_documents_per_formation", q.MaxDocumentsPerFormation}, {"max_cdc_sinks", q.MaxCdcSinks}} {
			if f.v == nil {
				missing(c, "quotas."+f.name)
				return
			}
		}
		nq := model.OrgQuotas{MaxFormations: *q.MaxFormations, MaxPeersPerFormation: *q.MaxPeersPerFormation,
			MaxDocumentsPerFormation: *q.MaxDocumentsPerFormation, MaxCdcSinks: *q.MaxCdcSinks, MaxEnrollmentsPerHour: 1000}
		if q.MaxEnrollmentsPerHour != nil {
			nq.MaxEnrollmentsPerHour = *q.MaxEnrollmentsPerHour
		}
		patch.Quotas = &nq
	}
	org, err := s.cfg.Tenant.UpdateOrg(ctxOf(c), p[0], patch)
	if err != nil {
		s.failAs(c, 404, err)
		return
	}
	writeJSON(c, 200, org)
}

func (s *Server) deleteOrg(c *fasthttp.RequestCtx, p []string) {
	if err := s.cfg.Tenant.DeleteOrg(ctxOf(c), p[0]); err != nil {
		s.fail(c, err)
		return
	}
	writeEmpty(c)
}

// ---- formations ----

func (s *Server) createFormation(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		AppID            *string         `json:"app_id"`
		EnrollmentPolicy json.RawMessage `json:"enrollment_policy"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.AppID == nil {
		missing(c, "app_id")
		return
	}
	policy := model.PolicyControlled
	if req.EnrollmentPolicy != nil {
		if err := policy.UnmarshalJSON(req.EnrollmentPolicy); err != nil {
			writeError(c, 422, "Failed to deserialize the JSON body into the target type: enrollment_policy: "+err.Error())
			return
		}
	}
	f, err := s.cfg.Tenant.CreateFormation(ctxOf(c), p[0], *req.AppID, policy)
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 201, f)
}

func (s *Server) listFormations(c *fasthttp.RequestCtx, p []string) {
	fs, err := s.cfg.Tenant.ListFormations(ctxOf(c), p[0])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, nonNil(fs))
}

func (s *Server) getFormation(c *fasthttp.RequestCtx, p []string) {
	f, err := s.cfg.Tenant.GetFormation(ctxOf(c), p[0], p[1])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, f)
}

func (s *Server) deleteFormation(c *fasthttp.RequestCtx, p []string) {
	if err := s.cfg.Tenant.DeleteFormation(ctxOf(c), p[0], p[1]); err != nil {
		s.fail(c, err)
		return
	}
	writeEmpty(c)
}

func (s *Server) setFormationStatus(st model.FormationStatus) func(*fasthttp.RequestCtx, []string) {
	return func(c *fasthttp.RequestCtx, p []string) {
		f, err := s.cfg.Tenant.SetFormationStatus(ctxOf(c), p[0], p[1], st)
		if err != nil {
			s.fail(c, err)
			return
		}
		writeJSON(c, 200, f)
	}
}

// ---- tokens ----

func (s *Server) createToken(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		AppID     *string `json:"app_id"`
		Label     *string `json:"label"`
		MaxUses   *uint32 `json:"max_uses"`
		ExpiresAt *uint64 `json:"expires_at"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.AppID == nil {
		missing(c, "app_id")
		return
	}
	if req.Label == nil {
		missing(c, "label")
		return
	}
	t, err := s.cfg.Tenant.CreateToken(ctxOf(c), p[0], tenant.TokenRequest{AppID: *req.AppID, Label: *req.Label,
		MaxUses: req.MaxUses, ExpiresAt: req.ExpiresAt})
	if err != nil {
		s.failAs(c, 400, err)
		return
	}
	writeJSON(c, 201, t)
}

func (s *Server) listTokens(c *fasthttp.RequestCtx, p []string) {
	ts, err := s.cfg.Tenant.ListTokens(ctxOf(c), p[0], p[1])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, nonNil(ts))
}

func (s *Server) getToken(c *fasthttp.RequestCtx, p []string) {
	t, err := s.cfg.Tenant.GetToken(ctxOf(c), p[0], p[1])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, t)
}

func (s *Server) deleteToken(c *fasthttp.RequestCtx, p []string) {
	if err := s.cfg.Tenant.DeleteToken(ctxOf(c), p[0], p[1]); err != nil {
		s.fail(c, err)
		return
	}
	writeEmpty(c)
}

func (s *Server) revokeToken(c *fasthttp.RequestCtx, p []string) {
	t, err := s.cfg.Tenant.RevokeToken(ctxOf(c), p[0], p[1])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, t)
}

// ---- sinks ----

func (s *Server) createSink(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		SinkType *model.CdcSinkType `json:"sink_type"`
		Filters  []model.FilterRef  `json:"filters"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.SinkType == nil {
		missing(c, "sink_type")
		return
	}
	sc, err := s.cfg.Tenant.CreateSink(ctxOf(c), p[0], *req.SinkType, req.Filters)
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 201, sc)
}

func (s *Server) listSinks(c *fasthttp.RequestCtx, p []string) {
	ss, err := s.cfg.Tenant.ListSinks(ctxOf(c), p[0])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, nonNil(ss))
}

func (s *Server) getSink(c *fasthttp.RequestCtx, p []string) {
	sc, err := s.cfg.Tenant.GetSink(ctxOf(c), p[0], p[1])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, sc)
}

func (s *Server) patchSink(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		Enabled *bool              `json:"enabled"`
		Filters *[]model.FilterRef `json:"filters"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.Enabled == nil && req.Filters == nil {
		missing(c, "enabled")
		return
	}
	sc, err := s.cfg.Tenant.PatchSink(ctxOf(c), p[0], p[1], tenant.SinkPatch{Enabled: req.Enabled, Filters: req.Filters})
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, sc)
}

func (s *Server) deleteSink(c *fasthttp.RequestCtx, p []string) {
	if err := s.cfg.Tenant.DeleteSink(ctxOf(c), p[0], p[1]); err != nil {
		s.fail(c, err)
		return
	}
	writeEmpty(c)
}

// ---- identity ----

func (s *Server) createIdp(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		IssuerURL    *string `json:"issuer_url"`
		ClientID     *string `json:"client_id"`
		ClientSecret *string `json:"client_secret"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	for _, f := range []struct {
		n string
		v *string
	}{{"issuer_url", req.IssuerURL}, {"client_id", req.ClientID}, {"client_secret", req.ClientSecret}} {
		if f.v == nil {
			missing(c, f.n)
			return
		}
	}
	i, err := s.cfg.Tenant.CreateIdp(ctxOf(c), p[0], tenant.IdpRequest{IssuerURL: *req.IssuerURL, ClientID: *req.ClientID,
		ClientSecret: *req.ClientSecret, AllowHTTP: s.cfg.AllowHTTPIssuers})
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 201, i)
}

func (s *Server) listIdps(c *fasthttp.RequestCtx, p []string) {
	is, err := s.cfg.Tenant.ListIdps(ctxOf(c), p[0])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, nonNil(is))
}

func (s *Server) getIdp(c *fasthttp.RequestCtx, p []string) {
	i, err := s.cfg.Tenant.GetIdp(ctxOf(c), p[0], p[1])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, i)
}

func (s *Server) patchIdp(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.Enabled == nil {
		missing(c, "enabled")
		return
	}
	i, err := s.cfg.Tenant.SetIdpEnabled(ctxOf(c), p[0], p[1], *req.Enabled)
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, i)
}

func (s *Server) deleteIdp(c *fasthttp.RequestCtx, p []string) {
	if err := s.cfg.Tenant.DeleteIdp(ctxOf(c), p[0], p[1]); err != nil {
		s.fail(c, err)
		return
	}
	writeEmpty(c)
}

func (s *Server) createRule(c *fasthttp.RequestCtx, p []string) {
	var req struct {
		ClaimKey       *string           `json:"claim_key"`
		ClaimValue     *string           `json:"claim_value"`
		Tier           *model.MeshTier   `json:"tier"`
		Permissions    *uint32           `json:"permissions"`
		Priority       *uint32           `json:"priority"`
		Effect         *model.RuleEffect `json:"effect"`
		RequiredClaims map[string]string `json:"required_claims"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	switch {
	case req.ClaimKey == nil:
		missing(c, "claim_key")
		return
	case req.ClaimValue == nil:
		missing(c, "claim_value")
		return
	case req.Tier == nil:
		missing(c, "tier")
		return
	}
	r := model.PolicyRule{ClaimKey: *req.ClaimKey, ClaimValue: *req.ClaimValue, Tier: *req.Tier, Priority: 100,
		RequiredClaims: req.RequiredClaims}
	if req.Permissions != nil {
		r.Permissions = *req.Permissions
	}
	if req.Priority != nil {
		r.Priority = *req.Priority
	}
	if req.Effect != nil {
		r.Effect = *req.Effect
	}
	out, err := s.cfg.Tenant.CreatePolicyRule(ctxOf(c), p[0], r)
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 201, out)
}

func (s *Server) listRules(c *fasthttp.RequestCtx, p []string) {
	rs, err := s.cfg.Tenant.ListPolicyRules(ctxOf(c), p[0])
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, nonNil(rs))
}

func (s *Server) deleteRule(c *fasthttp.RequestCtx, p []string) {
	if err := s.cfg.Tenant.DeletePolicyRule(ctxOf(c), p[0], p[1]); err != nil {
		s.fail(c, err)
		return
	}
	writeEmpty(c)
}

func (s *Server) listAudit(c *fasthttp.RequestCtx, p []string) {
	args := c.QueryArgs()
	limit := 100
	if args.Has("limit") {
		n, err := strconv.ParseUint(string(args.Peek("limit")), 10, 63)
		if err != nil {
			writeError(c, 400, "Failed to deserialize query string: limit: invalid digit found in string")
			return
		}
		limit = int(min(n, 1<<31))
	}
	var app *string
	if args.Has("app_id") {
		a := string(args.Peek("app_id"))
		app = &a
	}
	es, err := s.cfg.Tenant.ListAudit(ctxOf(c), p[0], app, limit)
	if err != nil {
		s.fail(c, err)
		return
	}
	writeJSON(c, 200, nonNil(es))
}

// nonNil makes an empty list serialise as [] rather than null.
func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
