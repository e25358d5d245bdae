package tenant

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// ValidateSinkType applies the reference's sink content rules (anchor-api.md
// §3.3) and refuses webhook targets on loopback, private, link-local or
// unspecified literal addresses unless allowPrivate. Host names are checked
// again after resolution by the webhook driver on every attempt.
func ValidateSinkType(t model.CdcSinkType, allowPrivate bool) error {
	switch {
	case t.Webhook != nil:
		u := t.Webhook.URL
		if u == "" {
			return errs.New(errs.Invalid, "webhook url must not be empty")
		}
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return errs.New(errs.Invalid, "webhook url must use http:// or https:// scheme")
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			return errs.New(errs.Invalid, "webhook url must include a host")
		}
		if !allowPrivate && isPrivateHost(pu.Hostname()) {
			return errs.New(errs.Invalid, "webhook url targets a loopback or private address (set PEAT_WEBHOOK_ALLOW_PRIVATE=true to allow)")
		}
	case t.Nats != nil:
		p := t.Nats.SubjectPrefix
		if strings.TrimSpace(p) == "" {
			return errs.New(errs.Invalid, "subject_prefix must not be empty")
		}
		if strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
			return errs.New(errs.Invalid, "subject_prefix must not have empty tokens (leading/trailing/double dot)")
		}
		for _, c := range []byte(p) {
			if !isAlnumByte(c) && c != '.' && c != '_' && c != '-' {
				return errs.New(errs.Invalid, "subject_prefix must contain only [A-Za-z0-9._-]")
			}
		}
	case t.Kafka != nil:
		topic := t.Kafka.Topic
		if strings.TrimSpace(topic) == "" {
			return errs.New(errs.Invalid, "topic must not be empty")
		}
		// Kafka's own topic rules: a name outside them would fail at every delivery.
		if len(topic) > 249 || topic == "." || topic == ".." {
			return errs.New(errs.Invalid, "topic must be at most 249 characters and not '.' or '..'")
		}
		for _, c := range []byte(topic) {
			if !isAlnumByte(c) && c != '.' && c != '_' && c != '-' {
				return errs.New(errs.Invalid, "topic must contain only [A-Za-z0-9._-]")
			}
		}
	default:
		return errs.New(errs.Unprocessable, "sink_type: expected one of `Nats`, `Kafka`, `Webhook`")
	}
	return nil
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isPrivateHost reports names that are always local and literal addresses
// the webhook driver's SSRF guard would refuse, so creation and delivery
// apply one policy.
func isPrivateHost(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && !sinks.IsPublicAddr(ip)
}

func sinkNotFound(org, id string) *errs.Error {
	return errs.New(errs.NotFound, "Sink '%s' not found in org '%s'", id, org)
}

// checkFilters makes sure every referenced module exists in the org.
func (s *Service) checkFilters(ctx context.Context, orgID string, refs []model.FilterRef) error {
	for _, r := range refs {
		if err := model.ValidateToken("filter name", r.Name); err != nil {
			return errs.New(errs.Invalid, "%s", err)
		}
		switch r.OnError {
		case "", "dead_letter", "drop", "pass":
		default:
			return errs.New(errs.Invalid, "filter '%s': on_error must be one of dead_letter, drop, pass", r.Name)
		}
		if _, err := s.st.GetFilter(ctx, orgID, r.Name); err != nil {
			if isNotFound(err) {
				return errs.New(errs.Invalid, "Filter '%s' not found in org '%s'", r.Name, orgID)
			}
			return internal(err)
		}
	}
	return nil
}

// CreateSink validates and creates a sink under the org's sink quota.
func (s *Service) CreateSink(ctx context.Context, orgID string, t model.CdcSinkType, filters []model.FilterRef) (model.CdcSinkConfig, error) {
	if err := ValidateSinkType(t, s.opts.AllowPrivateWebhooks); err != nil {
		return model.CdcSinkConfig{}, err
	}
	if _, err := s.st.GetOrg(ctx, orgID); err != nil {
		if isNotFound(err) {
			return model.CdcSinkConfig{}, errs.New(errs.Invalid, "Organization '%s' not found", orgID)
		}
		return model.CdcSinkConfig{}, internal(err)
	}
	if err := s.checkFilters(ctx, orgID, filters); err != nil {
		return model.CdcSinkConfig{}, err
	}
	if filters == nil {
		filters = []model.FilterRef{}
	}
	sc := model.CdcSinkConfig{SinkID: model.NewID(), OrgID: orgID, SinkType: t, Enabled: true, CreatedAt: s.NowMs(), Filters: filters}
	if err := s.st.CreateSink(ctx, sc); err != nil {
		switch {
		case isNotFound(err):
			return sc, errs.New(errs.Invalid, "Organization '%s' not found", orgID)
		case errors.Is(err, store.ErrQuota):
			org, _ := s.st.GetOrg(ctx, orgID)
			return sc, errs.New(errs.Quota, "Organization '%s' has reached its CDC sink quota (%d)", orgID, org.Quotas.MaxCdcSinks)
		}
		return sc, internal(err)
	}
	return sc, nil
}

// ListSinks lists an org's sinks.
func (s *Service) ListSinks(ctx context.Context, orgID string) ([]model.CdcSinkConfig, error) {
	ss, err := s.st.ListSinks(ctx, orgID)
	if err != nil {
		if isNotFound(err) {
			return nil, orgNotFound(orgID)
		}
		return nil, internal(err)
	}
	return ss, nil
}

// GetSink returns one sink.
func (s *Service) GetSink(ctx context.Context, orgID, sinkID string) (model.CdcSinkConfig, error) {
	sc, err := s.st.GetSink(ctx, orgID, sinkID)
	if err != nil {
		if isNotFound(err) {
			return sc, sinkNotFound(orgID, sinkID)
		}
		return sc, internal(err)
	}
	return sc, nil
}

// SinkPatch is the body of PATCH /orgs/{org}/sinks/{id}.
type SinkPatch struct {
	Enabled *bool
	Filters *[]model.FilterRef
}

// PatchSink toggles a sink and/or rebinds its filter chain.
func (s *Service) PatchSink(ctx context.Context, orgID, sinkID string, p SinkPatch) (model.CdcSinkConfig, error) {
	sc, err := s.GetSink(ctx, orgID, sinkID)
	if err != nil {
		return sc, err
	}
	if p.Enabled != nil {
		sc.Enabled = *p.Enabled
	}
	if p.Filters != nil {
		if err := s.checkFilters(ctx, orgID, *p.Filters); err != nil {
			return sc, err
		}
		sc.Filters = *p.Filters
	}
	if err := s.st.UpdateSink(ctx, sc); err != nil {
		if isNotFound(err) {
			return sc, sinkNotFound(orgID, sinkID)
		}
		return sc, internal(err)
	}
	return sc, nil
}

// DeleteSink removes a sink (its cursor and dead letters go with it).
func (s *Service) DeleteSink(ctx context.Context, orgID, sinkID string) error {
	if err := s.st.DeleteSink(ctx, orgID, sinkID); err != nil {
		if isNotFound(err) {
			return sinkNotFound(orgID, sinkID)
		}
		return internal(err)
	}
	return nil
}
