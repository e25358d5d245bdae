package tenant

import (
	"context"
	"strings"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/model"
)

// IdpRequest is the body of POST /orgs/{org}/idps.
type IdpRequest struct {
	IssuerURL, ClientID, ClientSecret string
	// AllowHTTP accepts an http:// issuer (development flag).
	AllowHTTP bool
}

// CreateIdp validates and stores an identity provider; the client secret is
// sealed with the key provider and never returned.
func (s *Service) CreateIdp(ctx context.Context, orgID string, r IdpRequest) (model.IdpConfig, error) {
	switch {
	case r.IssuerURL == "":
		return model.IdpConfig{}, errs.New(errs.Invalid, "issuer_url must not be empty")
	case !strings.HasPrefix(r.IssuerURL, "https://") && !(r.AllowHTTP && strings.HasPrefix(r.IssuerURL, "http://")):
		return model.IdpConfig{}, errs.New(errs.Invalid, "issuer_url must use https:// scheme")
	case strings.TrimSpace(r.ClientID) == "":
		return model.IdpConfig{}, errs.New(errs.Invalid, "client_id must not be empty")
	case strings.TrimSpace(r.ClientSecret) == "":
		return model.IdpConfig{}, errs.New(errs.Invalid, "client_secret must not be empty")
	}
	secret := []byte(r.ClientSecret)
	if s.sealer != nil {
		sealed, err := s.sealer.Seal(ctx, secret)
		if err != nil {
			return model.IdpConfig{}, errs.Wrap(errs.Internal, err, "failed to seal client_secret")
		}
		secret = sealed
	}
	i := model.IdpConfig{IdpID: model.NewID(), OrgID: orgID, IssuerURL: r.IssuerURL, ClientID: r.ClientID,
		ClientSecret: secret, Enabled: true, CreatedAt: s.NowMs()}
	if err := s.st.CreateIdp(ctx, i); err != nil {
		if isNotFound(err) {
			return i, errs.New(errs.Invalid, "Organization '%s' not found", orgID)
		}
		return i, internal(err)
	}
	return i, nil
}

// OpenIdpSecret returns the plaintext client secret; callers zero it after use.
func (s *Service) OpenIdpSecret(ctx context.Context, i model.IdpConfig) ([]byte, error) {
	if s.sealer == nil {
		return append([]byte(nil), i.ClientSecret...), nil
	}
	return s.sealer.Open(ctx, i.ClientSecret)
}

func idpNotFound(org, id string) *errs.Error {
	return errs.New(errs.NotFound, "IdP '%s' not found in org '%s'", id, org)
}

// ListIdps lists an org's identity providers.
func (s *Service) ListIdps(ctx context.Context, orgID string) ([]model.IdpConfig, error) {
	is, err := s.st.ListIdps(ctx, orgID)
	if err != nil {
		if isNotFound(err) {
			return nil, orgNotFound(orgID)
		}
		return nil, internal(err)
	}
	return is, nil
}

// GetIdp returns one identity provider.
func (s *Service) GetIdp(ctx context.Context, orgID, idpID string) (model.IdpConfig, error) {
	i, err := s.st.GetIdp(ctx, orgID, idpID)
	if err != nil {
		if isNotFound(err) {
			return i, idpNotFound(orgID, idpID)
		}
		return i, internal(err)
	}
	return i, nil
}

// SetIdpEnabled toggles an identity provider.
func (s *Service) SetIdpEnabled(ctx context.Context, orgID, idpID string, enabled bool) (model.IdpConfig, error) {
	i, err := s.st.SetIdpEnabled(ctx, orgID, idpID, enabled)
	if err != nil {
		if isNotFound(err) {
			return i, idpNotFound(orgID, idpID)
		}
		return i, internal(err)
	}
	return i, nil
}

// DeleteIdp removes an identity provider.
func (s *Service) DeleteIdp(ctx context.Context, orgID, idpID string) error {
	if err := s.st.DeleteIdp(ctx, orgID, idpID); err != nil {
		if isNotFound(err) {
			return idpNotFound(orgID, idpID)
		}
		return internal(err)
	}
	return nil
}

// CreatePolicyRule stores a rule; only the org's existence and the new
// effect/required_claims fields are checked, as in the reference.
func (s *Service) CreatePolicyRule(ctx context.Context, orgID string, r model.PolicyRule) (model.PolicyRule, error) {
	r.RuleID, r.OrgID = model.NewID(), orgID
	if r.Effect == "" {
		r.Effect = model.EffectAllow
	}
	if r.RequiredClaims == nil {
		r.RequiredClaims = map[string]string{}
	}
	if err := s.st.CreatePolicyRule(ctx, r); err != nil {
		if isNotFound(err) {
			return r, errs.New(errs.Invalid, "Organization '%s' not found", orgID)
		}
		return r, internal(err)
	}
	return r, nil
}

// ListPolicyRules lists an org's rules in storage order.
func (s *Service) ListPolicyRules(ctx context.Context, orgID string) ([]model.PolicyRule, error) {
	rs, err := s.st.ListPolicyRules(ctx, orgID)
	if err != nil {
		if isNotFound(err) {
			return nil, orgNotFound(orgID)
		}
		return nil, internal(err)
	}
	return rs, nil
}

// DeletePolicyRule removes a rule.
func (s *Service) DeletePolicyRule(ctx context.Context, orgID, ruleID string) error {
	if err := s.st.DeletePolicyRule(ctx, orgID, ruleID); err != nil {
		if isNotFound(err) {
			return errs.New(errs.NotFound, "Policy rule '%s' not found in org '%s'", ruleID, orgID)
		}
		return internal(err)
	}
	return nil
}

// ListAudit lists an org's audit entries newest first.
func (s *Service) ListAudit(ctx context.Context, orgID string, appID *string, limit int) ([]model.AuditEntry, error) {
	if _, err := s.GetOrg(ctx, orgID); err != nil {
		return nil, err
	}
	es, err := s.st.ListAudit(ctx, orgID, appID, limit)
	if err != nil {
		return nil, internal(err)
	}
	return es, nil
}
