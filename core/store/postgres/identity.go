package postgres

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const idpCols = "idp_id, org_id, issuer_url, client_id, client_secret, enabled, created_at"

func scanIdp(row pgx.CollectableRow) (model.IdpConfig, error) {
	var i model.IdpConfig
	err := row.Scan(&i.IdpID, &i.OrgID, &i.IssuerURL, &i.ClientID, &i.ClientSecret, &i.Enabled, &i.CreatedAt)
	return i, err
}

// CreateIdp stores an identity provider.
func (s *Store) CreateIdp(ctx context.Context, i model.IdpConfig) error {
	secret := i.ClientSecret
	if secret == nil {
		secret = []byte{}
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO idp_configs ("+idpCols+") VALUES ($1, $2, $3, $4, $5, $6, $7)",
		i.IdpID, i.OrgID, i.IssuerURL, i.ClientID, secret, i.Enabled, i.CreatedAt)
	return mapErr(err, store.ErrOrgNotFound)
}

// GetIdp reads one identity provider.
func (s *Store) GetIdp(ctx context.Context, orgID, idpID string) (model.IdpConfig, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+idpCols+" FROM idp_configs WHERE org_id = $1 AND idp_id = $2", orgID, idpID)
	i, err := pgx.CollectExactlyOneRow(rows, scanIdp)
	return i, one(err, store.ErrNotFound)
}

// ListIdps lists an org's identity providers by idp_id.
func (s *Store) ListIdps(ctx context.Context, orgID string) ([]model.IdpConfig, error) {
	return listUnderOrg(ctx, s, orgID,
		"SELECT "+idpCols+" FROM idp_configs WHERE org_id = $1 ORDER BY idp_id", []any{orgID}, scanIdp)
}

// SetIdpEnabled toggles an identity provider.
func (s *Store) SetIdpEnabled(ctx context.Context, orgID, idpID string, enabled bool) (model.IdpConfig, error) {
	rows, _ := s.pool.Query(ctx, "UPDATE idp_configs SET enabled = $3 WHERE org_id = $1 AND idp_id = $2 RETURNING "+idpCols,
		orgID, idpID, enabled)
	i, err := pgx.CollectExactlyOneRow(rows, scanIdp)
	return i, one(err, store.ErrNotFound)
}

// ReplaceIdpSecret is a compare-and-swap on the sealed secret, like
// ReplaceGenesis, so key rotation can be re-run safely.
func (s *Store) ReplaceIdpSecret(ctx context.Context, orgID, idpID string, old, new []byte) error {
	var swapped, exists bool
	err := s.pool.QueryRow(ctx, `WITH u AS (
			UPDATE idp_configs SET client_secret = $4 WHERE org_id = $1 AND idp_id = $2 AND client_secret = $3 RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM idp_configs WHERE org_id = $1 AND idp_id = $2)`,
		orgID, idpID, nonNil(old), nonNil(new)).Scan(&swapped, &exists)
	switch {
	case err != nil:
		return err
	case swapped:
		return nil
	case !exists:
		return store.ErrNotFound
	}
	return store.ErrConflict
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// DeleteIdp removes an identity provider.
func (s *Store) DeleteIdp(ctx context.Context, orgID, idpID string) error {
	return deleteOne(ctx, s, "DELETE FROM idp_configs WHERE org_id = $1 AND idp_id = $2", orgID, idpID)
}

func deleteOne(ctx context.Context, s *Store, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ---- policy rules ----

const ruleCols = "rule_id, org_id, claim_key, claim_value, tier, permissions, priority, effect, required_claims"

func scanRule(row pgx.CollectableRow) (model.PolicyRule, error) {
	var r model.PolicyRule
	var tier, effect string
	var claims []byte
	if err := row.Scan(&r.RuleID, &r.OrgID, &r.ClaimKey, &r.ClaimValue, &tier, &r.Permissions, &r.Priority, &effect, &claims); err != nil {
		return r, err
	}
	r.Tier, r.Effect = model.MeshTier(tier), model.RuleEffect(effect)
	return r, json.Unmarshal(claims, &r.RequiredClaims)
}

// CreatePolicyRule stores a rule.
func (s *Store) CreatePolicyRule(ctx context.Context, r model.PolicyRule) error {
	claims, err := json.Marshal(r.RequiredClaims)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, "INSERT INTO policy_rules ("+ruleCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		r.RuleID, r.OrgID, r.ClaimKey, r.ClaimValue, string(r.Tier), r.Permissions, r.Priority, string(r.Effect), string(claims))
	return mapErr(err, store.ErrOrgNotFound)
}

// ListPolicyRules lists an org's rules by rule_id.
func (s *Store) ListPolicyRules(ctx context.Context, orgID string) ([]model.PolicyRule, error) {
	return listUnderOrg(ctx, s, orgID,
		"SELECT "+ruleCols+" FROM policy_rules WHERE org_id = $1 ORDER BY rule_id", []any{orgID}, scanRule)
}

// DeletePolicyRule removes a rule.
func (s *Store) DeletePolicyRule(ctx context.Context, orgID, ruleID string) error {
	return deleteOne(ctx, s, "DELETE FROM policy_rules WHERE org_id = $1 AND rule_id = $2", orgID, ruleID)
}

// ---- audit ----

const auditCols = "audit_id, org_id, app_id, idp_id, subject, decision, reason, certificate_serial, timestamp_ms"

const insertAudit = `INSERT INTO enrollment_audit (audit_id, org_id, app_id, idp_id, subject, decision, reason,
	certificate_serial, timestamp_ms, approved) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// insertAuditCounted is insertAudit that also counts an approval in the
// rate limiter's minute bucket (migration 0003), in the same statement.
const insertAuditCounted = `WITH a AS (` + insertAudit + ` RETURNING org_id, timestamp_ms, approved)
	INSERT INTO enrollment_rate (org_id, minute, n) SELECT org_id, timestamp_ms / 60000, 1 FROM a WHERE approved
	ON CONFLICT (org_id, minute) DO UPDATE SET n = enrollment_rate.n + 1`

func auditArgs(e model.AuditEntry) ([]any, error) {
	decision, err := json.Marshal(e.Decision)
	if err != nil {
		return nil, err
	}
	return []any{e.AuditID, e.OrgID, e.AppID, e.IdpID, e.Subject, string(decision), e.Reason,
		e.Serial, e.TimestampMs, e.Decision.Approved != nil}, nil
}

func scanAudit(row pgx.CollectableRow) (model.AuditEntry, error) {
	var e model.AuditEntry
	var decision []byte
	if err := row.Scan(&e.AuditID, &e.OrgID, &e.AppID, &e.IdpID, &e.Subject, &decision, &e.Reason, &e.Serial, &e.TimestampMs); err != nil {
		return e, err
	}
	return e, json.Unmarshal(decision, &e.Decision)
}

// AppendAudit records a decision.
func (s *Store) AppendAudit(ctx context.Context, e model.AuditEntry) error {
	args, err := auditArgs(e)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, insertAuditCounted, args...)
	return mapErr(err, store.ErrOrgNotFound)
}

// ListAudit returns newest first, at most limit entries (none for a missing
// org). A non-positive limit returns nothing without asking the database:
// PostgreSQL rejects a negative LIMIT, which is how the reference broke
// every enrollment.
func (s *Store) ListAudit(ctx context.Context, orgID string, appID *string, limit int) ([]model.AuditEntry, error) {
	if limit <= 0 {
		return []model.AuditEntry{}, nil
	}
	var rows pgx.Rows
	if appID == nil {
		rows, _ = s.pool.Query(ctx, "SELECT "+auditCols+` FROM enrollment_audit WHERE org_id = $1
			ORDER BY timestamp_ms DESC, audit_id DESC LIMIT $2`, orgID, int64(limit))
	} else {
		rows, _ = s.pool.Query(ctx, "SELECT "+auditCols+` FROM enrollment_audit WHERE org_id = $1 AND app_id = $2
			ORDER BY timestamp_ms DESC, audit_id DESC LIMIT $3`, orgID, *appID, int64(limit))
	}
	return pgx.CollectRows(rows, scanAudit)
}
