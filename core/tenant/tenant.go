// Package tenant is the tenancy domain: organisations, formations (each with
// its own genesis), enrollment tokens, CDC sink configurations, identity
// providers and policy rules. It validates input with the reference's rules
// and messages, enforces quotas through the store's atomic checks, and seals
// key material before it reaches storage.
package tenant

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/mesh"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Sealer seals key material at the storage boundary. A nil Sealer stores
// plaintext (development only).
type Sealer interface {
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	// Open returns the plaintext of a sealed blob and passes legacy plaintext through.
	Open(ctx context.Context, blob []byte) ([]byte, error)
}

// Service implements the tenancy operations of the admin API.
type Service struct {
	st     store.Store
	sealer Sealer
	opts   Options
	now    func() time.Time
}

// Options tune validation that depends on deployment.
type Options struct {
	// AllowPrivateWebhooks accepts webhook URLs on loopback and private
	// addresses (PEAT_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivateWebhooks bool
}

// New returns a Service over st. sealer may be nil.
func New(st store.Store, sealer Sealer, opts Options) *Service {
	return &Service{st: st, sealer: sealer, opts: opts, now: time.Now}
}

// Store exposes the underlying store to sibling domain packages.
func (s *Service) Store() store.Store { return s.st }

// NowMs is the service clock in epoch milliseconds.
func (s *Service) NowMs() uint64 { return uint64(s.now().UnixMilli()) }

func orgNotFound(org string) *errs.Error {
	return errs.New(errs.NotFound, "Organization '%s' not found", org)
}

func formationNotFound(org, app string) *errs.Error {
	return errs.New(errs.NotFound, "Formation '%s' not found in org '%s'", app, org)
}

func internal(err error) error {
	return errs.Wrap(errs.Internal, err, "storage error")
}

// ---- organisations ----

// CreateOrg validates and creates an org with the default quotas.
func (s *Service) CreateOrg(ctx context.Context, orgID, displayName string) (model.Organization, error) {
	if err := model.ValidateIdentifier("org_id", orgID); err != nil {
		return model.Organization{}, errs.New(errs.Invalid, "%s", err)
	}
	if displayName == "" {
		return model.Organization{}, errs.New(errs.Invalid, "display_name must not be empty")
	}
	if len(displayName) > 1024 {
		return model.Organization{}, errs.New(errs.Invalid, "display_name exceeds maximum length (%d > 1024)", len(displayName))
	}
	org := model.Organization{OrgID: orgID, DisplayName: displayName, Quotas: model.DefaultQuotas(), CreatedAt: s.NowMs()}
	if err := s.st.CreateOrg(ctx, org); err != nil {
		if errors.Is(err, store.ErrExists) {
			return model.Organization{}, errs.New(errs.Invalid, "Organization '%s' already exists", orgID)
		}
		return model.Organization{}, internal(err)
	}
	return org, nil
}

// GetOrg returns one org.
func (s *Service) GetOrg(ctx context.Context, orgID string) (model.Organization, error) {
	org, err := s.st.GetOrg(ctx, orgID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrOrgNotFound) {
		return org, orgNotFound(orgID)
	}
	if err != nil {
		return org, internal(err)
	}
	return org, nil
}

// ListOrgs lists every org by id.
func (s *Service) ListOrgs(ctx context.Context) ([]model.Organization, error) {
	orgs, err := s.st.ListOrgs(ctx)
	if err != nil {
		return nil, internal(err)
	}
	return orgs, nil
}

// OrgPatch is the body of PATCH /orgs/{org}; nil fields are left alone.
type OrgPatch struct {
	DisplayName *string
	Quotas      *model.OrgQuotas
}

// UpdateOrg merges p into the org. As in the reference, every failure is a 404.
func (s *Service) UpdateOrg(ctx context.Context, orgID string, p OrgPatch) (model.Organization, error) {
	org, err := s.GetOrg(ctx, orgID)
	if err != nil {
		return org, orgNotFound(orgID)
	}
	if p.DisplayName != nil {
		org.DisplayName = *p.DisplayName
	}
	if p.Quotas != nil {
		org.Quotas = *p.Quotas
	}
	if err := s.st.UpdateOrg(ctx, org); err != nil {
		return org, errs.Wrap(errs.NotFound, err, "Organization '%s' not found", orgID)
	}
	return org, nil
}

// DeleteOrg removes the org and everything under it.
func (s *Service) DeleteOrg(ctx context.Context, orgID string) error {
	if err := s.st.DeleteOrg(ctx, orgID); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrOrgNotFound) {
			return orgNotFound(orgID)
		}
		return internal(err)
	}
	return nil
}

// ---- formations ----

var meshPolicy = map[model.EnrollmentPolicy]mesh.Policy{
	model.PolicyOpen:       mesh.PolicyOpen,
	model.PolicyControlled: mesh.PolicyControlled,
	model.PolicyStrict:     mesh.PolicyStrict,
}

// CreateFormation validates app_id, creates the formation's genesis, seals it
// and stores both atomically with the quota and uniqueness checks.
func (s *Service) CreateFormation(ctx context.Context, orgID, appID string, policy model.EnrollmentPolicy) (model.Formation, error) {
	if err := model.ValidateIdentifier("app_id", appID); err != nil {
		return model.Formation{}, errs.New(errs.Invalid, "%s", err)
	}
	if policy == "" {
		policy = model.PolicyControlled
	}
	now := s.NowMs()
	g, err := mesh.NewGenesis(rand.Reader, appID, meshPolicy[policy], now)
	if err != nil {
		return model.Formation{}, errs.Wrap(errs.Internal, err, "failed to create genesis")
	}
	defer g.Zeroize()
	raw := g.Encode()
	defer zero(raw)
	blob := raw
	if s.sealer != nil {
		if blob, err = s.sealer.Seal(ctx, raw); err != nil {
			return model.Formation{}, errs.Wrap(errs.Internal, err, "failed to seal genesis")
		}
	}
	f := model.Formation{OrgID: orgID, AppID: appID, MeshID: g.MeshID(), EnrollmentPolicy: policy,
		Status: model.FormationActive, CreatedAt: now}
	if err := s.st.CreateFormation(ctx, f, blob); err != nil {
		switch {
		case errors.Is(err, store.ErrOrgNotFound), errors.Is(err, store.ErrNotFound):
			return f, errs.New(errs.Invalid, "Organization '%s' not found", orgID)
		case errors.Is(err, store.ErrQuota):
			org, _ := s.st.GetOrg(ctx, orgID)
			return f, errs.New(errs.Quota, "Organization '%s' has reached its formation quota (%d)", orgID, org.Quotas.MaxFormations)
		case errors.Is(err, store.ErrExists):
			return f, errs.New(errs.Invalid, "Formation '%s' already exists in org '%s'", appID, orgID)
		}
		return f, internal(err)
	}
	return f, nil
}

// GetFormation returns one formation.
func (s *Service) GetFormation(ctx context.Context, orgID, appID string) (model.Formation, error) {
	f, err := s.st.GetFormation(ctx, orgID, appID)
	if err != nil {
		if isNotFound(err) {
			return f, formationNotFound(orgID, appID)
		}
		return f, internal(err)
	}
	return f, nil
}

// ListFormations lists an org's formations.
func (s *Service) ListFormations(ctx context.Context, orgID string) ([]model.Formation, error) {
	fs, err := s.st.ListFormations(ctx, orgID)
	if err != nil {
		if isNotFound(err) {
			return nil, orgNotFound(orgID)
		}
		return nil, internal(err)
	}
	return fs, nil
}

// DeleteFormation removes a formation and all its per-formation state.
func (s *Service) DeleteFormation(ctx context.Context, orgID, appID string) error {
	if err := s.st.DeleteFormation(ctx, orgID, appID); err != nil {
		if isNotFound(err) {
			return formationNotFound(orgID, appID)
		}
		return internal(err)
	}
	return nil
}

// SetFormationStatus suspends or resumes a formation.
func (s *Service) SetFormationStatus(ctx context.Context, orgID, appID string, st model.FormationStatus) (model.Formation, error) {
	f, err := s.st.SetFormationStatus(ctx, orgID, appID, st)
	if err != nil {
		if isNotFound(err) {
			return f, formationNotFound(orgID, appID)
		}
		return f, internal(err)
	}
	return f, nil
}

// LoadGenesis reads and opens a formation's genesis. Callers must Zeroize it.
func (s *Service) LoadGenesis(ctx context.Context, orgID, appID string) (*mesh.Genesis, error) {
	blob, err := s.st.GetGenesis(ctx, orgID, appID)
	if err != nil {
		if isNotFound(err) {
			return nil, errs.New(errs.Internal, "Genesis not found for formation '%s' in org '%s'", appID, orgID)
		}
		return nil, internal(err)
	}
	raw := blob
	if s.sealer != nil {
		if raw, err = s.sealer.Open(ctx, blob); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "Failed to open genesis: %v", err)
		}
		defer zero(raw)
	} else if isEnvelope(blob) {
		return nil, errs.New(errs.Internal, "Failed to decode genesis: it is sealed but no key provider is configured")
	}
	g, err := mesh.DecodeGenesis(raw)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "Failed to decode genesis: %v", err)
	}
	return g, nil
}

func isEnvelope(b []byte) bool { return len(b) >= 7 && string(b[:4]) == "PENV" }

// ---- tokens ----

// TokenRequest is the body of POST /orgs/{org}/tokens.
type TokenRequest struct {
	AppID     string
	Label     string
	MaxUses   *uint32
	ExpiresAt *uint64
}

// CreateToken issues a bootstrap token for a formation.
func (s *Service) CreateToken(ctx context.Context, orgID string, r TokenRequest) (model.EnrollmentToken, error) {
	if strings.TrimSpace(r.Label) == "" {
		return model.EnrollmentToken{}, errs.New(errs.Invalid, "label must not be empty")
	}
	t := model.EnrollmentToken{TokenID: model.NewTokenID(), OrgID: orgID, AppID: r.AppID, Label: r.Label,
		MaxUses: r.MaxUses, ExpiresAt: r.ExpiresAt, CreatedAt: s.NowMs()}
	if err := s.st.CreateToken(ctx, t); err != nil {
		switch {
		case errors.Is(err, store.ErrOrgNotFound):
			return t, errs.New(errs.Invalid, "Organization '%s' not found", orgID)
		case errors.Is(err, store.ErrFormationNotFound), errors.Is(err, store.ErrNotFound):
			return t, errs.New(errs.Invalid, "Formation '%s' not found in org '%s'", r.AppID, orgID)
		}
		return t, internal(err)
	}
	return t, nil
}

// ListTokens lists a formation's tokens (revoked ones included).
func (s *Service) ListTokens(ctx context.Context, orgID, appID string) ([]model.EnrollmentToken, error) {
	if _, err := s.GetOrg(ctx, orgID); err != nil {
		return nil, err
	}
	if _, err := s.GetFormation(ctx, orgID, appID); err != nil {
		return nil, err
	}
	ts, err := s.st.ListTokens(ctx, orgID, appID)
	if err != nil {
		return nil, internal(err)
	}
	return ts, nil
}

func tokenNotFound(org, id string) *errs.Error {
	return errs.New(errs.NotFound, "Token '%s' not found in org '%s'", id, org)
}

// GetToken returns one token.
func (s *Service) GetToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error) {
	t, err := s.st.GetToken(ctx, orgID, tokenID)
	if err != nil {
		if isNotFound(err) {
			return t, tokenNotFound(orgID, tokenID)
		}
		return t, internal(err)
	}
	return t, nil
}

// DeleteToken removes a token.
func (s *Service) DeleteToken(ctx context.Context, orgID, tokenID string) error {
	if err := s.st.DeleteToken(ctx, orgID, tokenID); err != nil {
		if isNotFound(err) {
			return tokenNotFound(orgID, tokenID)
		}
		return internal(err)
	}
	return nil
}

// RevokeToken revokes a token; as in the reference both failures are 400.
func (s *Service) RevokeToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error) {
	t, err := s.st.RevokeToken(ctx, orgID, tokenID)
	switch {
	case err == nil:
		return t, nil
	case isNotFound(err):
		return t, errs.New(errs.Invalid, "Token '%s' not found in org '%s'", tokenID, orgID)
	case errors.Is(err, store.ErrAlreadyRevoked):
		return t, errs.New(errs.Invalid, "Token '%s' is already revoked", tokenID)
	}
	return t, internal(err)
}

func isNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrOrgNotFound) || errors.Is(err, store.ErrFormationNotFound)
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
