// Package enroll is the gateway's enrollment service, its security
// boundary: POST /orgs/{org}/formations/{app}/enroll decides whether a
// device may join a formation (Open, a bootstrap token, or an OIDC identity
// judged by the org's policy rules), issues the mesh certificate signed by
// the formation authority, and records every decision in the audit log.
// It also serves the certificate inventory, revocation and the signed
// revocation list.
//
// Everything an approval writes (rate-limit count, token use, peer quota,
// audit entry, certificate) is applied in one store.Enroll transaction, so
// concurrent enrollments can never exceed a token's max_uses, the hourly
// rate limit or the peer quota.
package enroll

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/identity"
	"github.com/defenseunicorns/peat-gateway/core/mesh"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// CertificateValidity is the lifetime of an issued certificate (the
// reference's fixed 24 h).
const CertificateValidity = 24 * time.Hour

// RootNodeID is the node_id of the formation's root certificate in the
// listing, as in the reference.
const RootNodeID = "authority-0"

// Audit identity provider ids and subjects for the non-OIDC paths, as the
// reference writes them.
const (
	IdpNone     = "none"
	IdpToken    = "token"
	SubjectAnon = "anonymous"
)

// Messages clients match on (the reference's texts).
const (
	msgMissingBearer = "Missing bearer token (Authorization: Bearer <token>)"
	msgTokenInvalid  = "Enrollment token is invalid, revoked, or expired"
	msgStrict        = "Formation requires explicit admin approval (Strict policy)"
	msgRateLimited   = "Enrollment rate limit exceeded"
)

// Options configure a Service.
type Options struct {
	// Verifier checks OIDC bearers; nil builds one from the fields below.
	Verifier *identity.Verifier
	// HTTPClient supplies the transport for IdP calls (custom CAs).
	HTTPClient *http.Client
	// IdPTimeout bounds each IdP call (default 5 s).
	IdPTimeout time.Duration
	// AllowHTTPIssuers accepts http:// issuers (PEAT_OIDC_ALLOW_HTTP, development only).
	AllowHTTPIssuers bool
	// GenesisCacheSize bounds the decoded geneses kept in memory (default 4096).
	GenesisCacheSize int
	// GenesisIdle is how long an unused genesis stays in memory (default 10 min).
	GenesisIdle time.Duration
	Logger      *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// Service implements enrollment and the certificate inventory.
type Service struct {
	ten      *tenant.Service
	st       store.Store
	verifier *identity.Verifier
	cache    *genesisCache
	views    *viewCache
	log      *slog.Logger
	now      func() time.Time
}

// New returns the enrollment service over the tenancy service (whose store
// and key provider it shares).
func New(ten *tenant.Service, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.GenesisCacheSize <= 0 {
		o.GenesisCacheSize = 4096
	}
	if o.GenesisIdle <= 0 {
		o.GenesisIdle = 10 * time.Minute
	}
	v := o.Verifier
	if v == nil {
		v = identity.New(identity.Options{HTTPClient: o.HTTPClient, Timeout: o.IdPTimeout, AllowHTTP: o.AllowHTTPIssuers})
	}
	s := &Service{ten: ten, st: ten.Store(), verifier: v, log: o.Logger, now: o.Now}
	s.views = newViewCache(o.GenesisCacheSize, viewTTL, o.Now)
	s.cache = newGenesisCache(ten.LoadGenesis, o.GenesisCacheSize, o.GenesisIdle, o.Now)
	return s
}

// Forget drops (and zeroizes) the cached genesis of a formation; call it
// when a formation is deleted so its key leaves memory at once. Without it
// the key is wiped at the next lookup or after the idle period.
func (s *Service) Forget(orgID, appID string) {
	s.views.drop(orgID, appID)
	s.cache.forget(orgID, appID)
}

// Close zeroizes every cached genesis.
func (s *Service) Close() { s.cache.purge() }

// Request is one enrollment call. Authorization is the raw header; Token,
// PublicKey and NodeID come from the JSON body (nil when absent or when the
// body was not usable JSON, as in the reference).
type Request struct {
	Authorization string
	Token         *string
	PublicKey     *string
	NodeID        *string
}

// Response is the reference's EnrollmentResponse (anchor-api.md §8.1). The
// three certificate fields are all null or all set.
type Response struct {
	Decision           model.Decision `json:"decision"`
	AuditID            string         `json:"audit_id"`
	Certificate        *string        `json:"certificate"`
	MeshID             *string        `json:"mesh_id"`
	AuthorityPublicKey *string        `json:"authority_public_key"`
}

// bearer picks the credential as the reference does: the Authorization
// header's exact "Bearer " prefix first, then the body's token.
func (r Request) bearer() (string, bool) {
	if v, ok := strings.CutPrefix(r.Authorization, "Bearer "); ok {
		return v, true
	}
	if r.Authorization == "Bearer" {
		// "Bearer " with nothing after it arrives with its space trimmed.
		return "", true
	}
	if r.Token != nil {
		return *r.Token, true
	}
	return "", false
}

// attempt carries one enrollment through the pipeline.
type attempt struct {
	org    model.Organization
	f      model.Formation
	nowMs  uint64
	subKey []byte
	nodeID *string
	// cached: org and f came from the view cache, so the approval's
	// transaction checks them (store.EnrollTx.Policy).
	cached bool
}

// Enroll runs the decision pipeline for (orgID, appID). On refusal it
// returns an *errs.Error whose kind gives the status (404, 409, 400, 401,
// 403, 429); decisions (approvals and denials) are audited.
func (s *Service) Enroll(ctx context.Context, orgID, appID string, req Request) (*Response, error) {
	if v, ok := s.views.get(orgID, appID); ok && v.f.Status == model.FormationActive && v.f.EnrollmentPolicy != model.PolicyStrict {
		// The approval path checks the view inside its transaction, so a
		// cached one is safe there; every other outcome is decided fresh.
		a := &attempt{nowMs: uint64(s.now().UnixMilli()), org: v.org, f: v.f, cached: true}
		resp, err := s.enroll(ctx, a, req)
		if !errors.Is(err, errStaleView) {
			return resp, err
		}
		s.views.drop(orgID, appID)
	}
	a := &attempt{nowMs: uint64(s.now().UnixMilli())}
	var err error
	if a.f, err = s.st.GetFormation(ctx, orgID, appID); err != nil {
		if isNotFound(err) {
			if _, oerr := s.st.GetOrg(ctx, orgID); isNotFound(oerr) {
				return nil, errs.New(errs.NotFound, "Organization '%s' not found", orgID)
			}
			s.cache.forget(orgID, appID)
			return nil, formationNotFound(orgID, appID)
		}
		return nil, storageErr(err)
	}
	a.f.OrgID = orgID
	if a.org, err = s.st.GetOrg(ctx, orgID); err != nil {
		if isNotFound(err) {
			return nil, errs.New(errs.NotFound, "Organization '%s' not found", orgID)
		}
		return nil, storageErr(err)
	}
	s.views.put(a.org, a.f)
	return s.enroll(ctx, a, req)
}

// errStaleView means a cached view no longer matched the stored formation
// or org: nothing was written and the enrollment is decided again.
var errStaleView = errors.New("enroll: cached formation view is stale")

// enroll decides an attempt whose org and formation are loaded.
func (s *Service) enroll(ctx context.Context, a *attempt, req Request) (*Response, error) {
	orgID, appID := a.org.OrgID, a.f.AppID
	if a.f.Status == model.FormationSuspended {
		return nil, suspended(orgID, appID)
	}
	if req.PublicKey != nil {
		pk, err := hex.DecodeString(*req.PublicKey)
		if err != nil {
			return nil, errs.New(errs.Invalid, "Invalid public_key: not valid hex")
		}
		if len(pk) != 32 {
			return nil, errs.New(errs.Invalid, "Invalid public_key: expected 32 bytes, got %d", len(pk))
		}
		a.subKey = pk
	}
	if req.NodeID != nil && len(*req.NodeID) > 255 {
		// The certificate's u8 length would wrap (mesh-formats.md §2.2).
		return nil, errs.New(errs.Invalid, "Invalid node_id: exceeds maximum length (%d > 255 bytes)", len(*req.NodeID))
	}
	a.nodeID = req.NodeID

	switch a.f.EnrollmentPolicy {
	case model.PolicyOpen:
		return s.approve(ctx, a, model.Approval{Tier: model.TierEndpoint}, IdpNone, SubjectAnon, "", "open enrollment")
	case model.PolicyStrict:
		return nil, s.deny(ctx, a, IdpNone, SubjectAnon, errs.Forbidden, msgStrict)
	}
	tok, ok := req.bearer()
	if !ok {
		return nil, s.deny(ctx, a, IdpNone, SubjectAnon, errs.Unauthorized, msgMissingBearer)
	}
	if strings.HasPrefix(tok, "peat_") {
		// A bootstrap token is only ever a token, never an OIDC bearer.
		subject := "token:" + model.TokenFingerprint(tok)
		if !wellFormedToken(tok) {
			return nil, s.deny(ctx, a, IdpToken, subject, errs.Unauthorized, msgTokenInvalid)
		}
		return s.approve(ctx, a, model.Approval{Tier: model.TierEndpoint}, IdpToken, subject, tok, "enrollment token")
	}
	return s.enrollOIDC(ctx, a, tok)
}

// wellFormedToken checks the "peat_" + 32 lowercase hex shape, so junk
// never reaches the database.
func wellFormedToken(t string) bool {
	if len(t) != 37 {
		return false
	}
	for i := 5; i < len(t); i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Service) enrollOIDC(ctx context.Context, a *attempt, bearer string) (*Response, error) {
	idps, err := s.st.ListIdps(ctx, a.org.OrgID)
	if err != nil {
		return nil, storageErr(err)
	}
	var idp *model.IdpConfig
	for i := range idps {
		if idps[i].Enabled {
			idp = &idps[i]
			break
		}
	}
	if idp == nil {
		return nil, errs.New(errs.Invalid, "No enabled identity provider configured for org '%s'", a.org.OrgID)
	}
	cfg := *idp
	id, err := s.verifier.Verify(ctx, identity.IdP{ID: cfg.IdpID, IssuerURL: cfg.IssuerURL, ClientID: cfg.ClientID,
		Secret: func(ctx context.Context) ([]byte, error) { return s.ten.OpenIdpSecret(ctx, cfg) }}, bearer)
	if err != nil {
		var ve *identity.Error
		reason := "Token validation failed: internal error"
		if errors.As(err, &ve) {
			reason = "Token validation failed: " + ve.Reason
		} else {
			s.log.Error("oidc verification", "org", a.org.OrgID, "idp", cfg.IdpID, "error", err)
		}
		// The subject of an unverified token is not trustworthy.
		return nil, s.deny(ctx, a, cfg.IdpID, "unknown", errs.Unauthorized, reason)
	}
	rules, err := s.st.ListPolicyRules(ctx, a.org.OrgID)
	if err != nil {
		return nil, storageErr(err)
	}
	d, ruleID := identity.Evaluate(rules, id.Claims)
	if d.Denied != nil {
		return nil, s.deny(ctx, a, cfg.IdpID, id.Subject, errs.Forbidden, d.Denied.Reason)
	}
	why := "default policy (no rule matched)"
	if ruleID != "" {
		why = fmt.Sprintf("policy rule '%s'", ruleID)
	}
	return s.approve(ctx, a, *d.Approved, cfg.IdpID, id.Subject, "", why+" via "+id.Method)
}

// deny audits a denial and returns the error the client sees. An audit
// failure is logged but does not change the answer: the caller is refused
// either way.
func (s *Service) deny(ctx context.Context, a *attempt, idpID, subject string, kind errs.Kind, reason string) error {
	if a.cached {
		// Denials are decided, and audited, from fresh reads only.
		return errStaleView
	}
	e := model.AuditEntry{AuditID: model.NewID(), OrgID: a.org.OrgID, AppID: a.f.AppID, IdpID: idpID, Subject: subject,
		Decision: model.Decision{Denied: &model.Denial{Reason: reason}}, Reason: reason, TimestampMs: a.nowMs}
	if err := s.st.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit of enrollment denial failed", "org", a.org.OrgID, "app", a.f.AppID, "error", err)
	}
	return errs.New(kind, "%s", reason)
}

// approve issues the certificate (when key material was sent) and commits
// the approval. Nothing is returned to the client unless the transaction
// committed.
func (s *Service) approve(ctx context.Context, a *attempt, ap model.Approval, idpID, subject, tokenID, why string) (*Response, error) {
	resp := &Response{Decision: model.Decision{Approved: &ap}, AuditID: model.NewID()}
	entry := model.AuditEntry{AuditID: resp.AuditID, OrgID: a.org.OrgID, AppID: a.f.AppID, IdpID: idpID,
		Subject: subject, Decision: resp.Decision, Reason: why, TimestampMs: a.nowMs}
	var cert *model.Certificate
	if a.subKey != nil && a.nodeID != nil {
		var err error
		if cert, err = s.issue(ctx, a, ap, resp); err != nil {
			// As in the reference, a genesis that cannot be opened leaves the
			// certificate fields null rather than failing the enrollment.
			s.log.Error("certificate issuance failed; enrolling without a certificate",
				"org", a.org.OrgID, "app", a.f.AppID, "error", err)
			resp.Certificate, resp.MeshID, resp.AuthorityPublicKey = nil, nil, nil
		} else {
			cert.AuditID = resp.AuditID
			entry.Serial = &cert.Serial
		}
	}
	tx := store.EnrollTx{OrgID: a.org.OrgID, AppID: a.f.AppID, NowMs: a.nowMs,
		RateLimit: a.org.Quotas.MaxEnrollmentsPerHour, TokenID: tokenID,
		PeerLimit: a.org.Quotas.MaxPeersPerFormation, Audit: entry, Certificate: cert}
	if a.cached {
		tx.Policy, tx.MeshID = a.f.EnrollmentPolicy, a.f.MeshID
	}
	err := s.st.Enroll(ctx, tx)
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, store.ErrStale):
		return nil, errStaleView
	case errors.Is(err, store.ErrRateLimited):
		return nil, errs.New(errs.RateLimited, msgRateLimited)
	case errors.Is(err, store.ErrTokenInvalid):
		return nil, s.deny(ctx, a, idpID, subject, errs.Unauthorized, msgTokenInvalid)
	case errors.Is(err, store.ErrQuota):
		return nil, errs.New(errs.Quota, "Formation '%s' has reached its peer quota (%d)", a.f.AppID, a.org.Quotas.MaxPeersPerFormation)
	case errors.Is(err, store.ErrSuspended):
		return nil, suspended(a.org.OrgID, a.f.AppID)
	case isNotFound(err) && a.cached:
		return nil, errStaleView
	case isNotFound(err):
		s.cache.forget(a.org.OrgID, a.f.AppID)
		return nil, formationNotFound(a.org.OrgID, a.f.AppID)
	}
	return nil, storageErr(err)
}

// issue signs the certificate with the cached formation authority and
// fills the response's certificate fields.
func (s *Service) issue(ctx context.Context, a *attempt, ap model.Approval, resp *Response) (*model.Certificate, error) {
	tier, err := mesh.TierFromGateway(string(ap.Tier))
	if err != nil {
		return nil, err
	}
	perms := mesh.PermissionsFromGateway(ap.Permissions)
	e, err := s.cache.acquire(ctx, a.f)
	if err != nil {
		return nil, err
	}
	c, err := e.g.IssueCertificate(a.subKey, *a.nodeID, tier, perms, a.nowMs, uint64(CertificateValidity.Milliseconds()))
	pubHex := e.pubHex
	e.release()
	if err != nil {
		return nil, err
	}
	wire, err := c.Encode()
	if err != nil {
		return nil, err
	}
	certHex, meshID := hex.EncodeToString(wire), a.f.MeshID
	resp.Certificate, resp.MeshID, resp.AuthorityPublicKey = &certHex, &meshID, &pubHex
	return &model.Certificate{Serial: mesh.Serial(wire), OrgID: a.org.OrgID, AppID: a.f.AppID,
		PeerID: *a.nodeID, NodeID: *a.nodeID, SubjectKey: hex.EncodeToString(a.subKey),
		Fingerprint: hex.EncodeToString(a.subKey[:8]), Tier: string(ap.Tier), Permissions: uint8(perms),
		IssuedAt: c.IssuedAtMs, ExpiresAt: c.ExpiresAtMs, Raw: wire}, nil
}

// ---- errors ----

func isNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrOrgNotFound) || errors.Is(err, store.ErrFormationNotFound)
}

func formationNotFound(org, app string) error {
	return errs.New(errs.NotFound, "Formation '%s' not found in org '%s'", app, org)
}

func suspended(org, app string) error {
	return errs.New(errs.Conflict, "Formation '%s' in org '%s' is suspended", app, org)
}

func storageErr(err error) error { return errs.Wrap(errs.Internal, err, "storage error") }
