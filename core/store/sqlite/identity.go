package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const idpCols = `idp_id, org_id, issuer_url, client_id, client_secret, enabled, created_at`

func scanIdp(sc scanner) (model.IdpConfig, error) {
	var i model.IdpConfig
	var created int64
	err := sc.Scan(&i.IdpID, &i.OrgID, &i.IssuerURL, &i.ClientID, &i.ClientSecret, &i.Enabled, &created)
	i.CreatedAt = uint64(created)
	return i, err
}

// CreateIdp stores an identity provider (ErrOrgNotFound, ErrExists).
func (s *Store) CreateIdp(ctx context.Context, i model.IdpConfig) error {
	return s.write(ctx, func(t *txn) error {
		if err := t.orgExists(i.OrgID); err != nil {
			return err
		}
		_, err := t.exec(`INSERT INTO idp_configs(`+idpCols+`) VALUES (?,?,?,?,?,?,?)`,
			i.IdpID, i.OrgID, i.IssuerURL, i.ClientID, i.ClientSecret, b2i(i.Enabled), int64(i.CreatedAt))
		return err
	})
}

// GetIdp returns one identity provider (ErrNotFound).
func (s *Store) GetIdp(ctx context.Context, orgID, idpID string) (model.IdpConfig, error) {
	i, err := scanIdp(s.row(ctx, `SELECT `+idpCols+` FROM idp_configs WHERE org_id = ? AND idp_id = ?`, orgID, idpID))
	return i, notFound(err, store.ErrNotFound)
}

// ListIdps lists an org's identity providers by idp_id (ErrOrgNotFound).
func (s *Store) ListIdps(ctx context.Context, orgID string) ([]model.IdpConfig, error) {
	if err := s.orgExistsRead(ctx, orgID); err != nil {
		return nil, err
	}
	rows, err := s.rows(ctx, `SELECT `+idpCols+` FROM idp_configs WHERE org_id = ? ORDER BY idp_id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.IdpConfig{}
	for rows.Next() {
		i, err := scanIdp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// SetIdpEnabled toggles an identity provider (ErrNotFound).
func (s *Store) SetIdpEnabled(ctx context.Context, orgID, idpID string, enabled bool) (model.IdpConfig, error) {
	var i model.IdpConfig
	err := s.write(ctx, func(t *txn) error {
		var err error
		i, err = scanIdp(t.row(`UPDATE idp_configs SET enabled = ? WHERE org_id = ? AND idp_id = ? RETURNING `+idpCols,
			b2i(enabled), orgID, idpID))
		return notFound(err, store.ErrNotFound)
	})
	return i, err
}

// ReplaceIdpSecret swaps the sealed secret only if it still equals old
// (ErrConflict), like ReplaceGenesis.
func (s *Store) ReplaceIdpSecret(ctx context.Context, orgID, idpID string, old, new []byte) error {
	return s.write(ctx, func(t *txn) error {
		var cur []byte
		err := t.row(`SELECT client_secret FROM idp_configs WHERE org_id = ? AND idp_id = ?`, orgID, idpID).Scan(&cur)
		if err != nil {
			return notFound(err, store.ErrNotFound)
		}
		if !bytes.Equal(cur, old) {
			return store.ErrConflict
		}
		_, err = t.exec(`UPDATE idp_configs SET client_secret = ? WHERE org_id = ? AND idp_id = ?`, new, orgID, idpID)
		return err
	})
}

// DeleteIdp removes an identity provider (ErrNotFound).
func (s *Store) DeleteIdp(ctx context.Context, orgID, idpID string) error {
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`DELETE FROM idp_configs WHERE org_id = ? AND idp_id = ?`, orgID, idpID)
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

const ruleCols = `rule_id, org_id, claim_key, claim_value, tier, permissions, priority, effect, required_claims`

// CreatePolicyRule stores a policy rule (ErrOrgNotFound, ErrExists).
func (s *Store) CreatePolicyRule(ctx context.Context, r model.PolicyRule) error {
	req, err := json.Marshal(r.RequiredClaims)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		if err := t.orgExists(r.OrgID); err != nil {
			return err
		}
		_, err := t.exec(`INSERT INTO policy_rules(`+ruleCols+`) VALUES (?,?,?,?,?,?,?,?,?)`,
			r.RuleID, r.OrgID, r.ClaimKey, r.ClaimValue, string(r.Tier), r.Permissions, r.Priority, string(r.Effect), string(req))
		return err
	})
}

// ListPolicyRules lists an org's rules by rule_id (ErrOrgNotFound).
func (s *Store) ListPolicyRules(ctx context.Context, orgID string) ([]model.PolicyRule, error) {
	if err := s.orgExistsRead(ctx, orgID); err != nil {
		return nil, err
	}
	rows, err := s.rows(ctx, `SELECT `+ruleCols+` FROM policy_rules WHERE org_id = ? ORDER BY rule_id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.PolicyRule{}
	for rows.Next() {
		var r model.PolicyRule
		var tier, effect, req string
		if err := rows.Scan(&r.RuleID, &r.OrgID, &r.ClaimKey, &r.ClaimValue, &tier, &r.Permissions, &r.Priority, &effect, &req); err != nil {
			return nil, err
		}
		r.Tier, r.Effect = model.MeshTier(tier), model.RuleEffect(effect)
		if err := json.Unmarshal([]byte(req), &r.RequiredClaims); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeletePolicyRule removes a rule (ErrNotFound).
func (s *Store) DeletePolicyRule(ctx context.Context, orgID, ruleID string) error {
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`DELETE FROM policy_rules WHERE org_id = ? AND rule_id = ?`, orgID, ruleID)
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

const auditCols = `audit_id, org_id, app_id, idp_id, subject, decision, reason, serial, timestamp_ms`

// appendAudit inserts one entry inside a write transaction.
func (t *txn) appendAudit(e model.AuditEntry) error {
	dec, err := json.Marshal(e.Decision)
	if err != nil {
		return err
	}
	return t.appendAuditJSON(e, dec)
}

// appendAuditJSON is appendAudit with e.Decision already marshalled, so a
// caller can do that outside the writer.
func (t *txn) appendAuditJSON(e model.AuditEntry, dec []byte) error {
	var serial sql.NullString
	if e.Serial != nil {
		serial = sql.NullString{String: *e.Serial, Valid: true}
	}
	_, err := t.exec(`INSERT INTO enrollment_audit(`+auditCols+`, approved) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		e.AuditID, e.OrgID, e.AppID, e.IdpID, e.Subject, string(dec), e.Reason, serial, int64(e.TimestampMs),
		b2i(e.Decision.Approved != nil))
	if err != nil || e.Decision.Approved == nil {
		return err
	}
	_, err = t.exec(`INSERT INTO enrollment_rate(org_id, minute, n) VALUES (?, ?, 1)
		ON CONFLICT (org_id, minute) DO UPDATE SET n = n + 1`, e.OrgID, int64(e.TimestampMs/minuteMs))
	return err
}

// AppendAudit records a decision (ErrOrgNotFound).
func (s *Store) AppendAudit(ctx context.Context, e model.AuditEntry) error {
	return s.write(ctx, func(t *txn) error {
		if err := t.orgExists(e.OrgID); err != nil {
			return err
		}
		return t.appendAudit(e)
	})
}

// ListAudit returns the org's entries newest first; appID nil means every
// formation and limit <= 0 returns nothing.
func (s *Store) ListAudit(ctx context.Context, orgID string, appID *string, limit int) ([]model.AuditEntry, error) {
	out := []model.AuditEntry{}
	if limit <= 0 {
		return out, nil
	}
	var rows *sql.Rows
	var err error
	if appID == nil {
		rows, err = s.rows(ctx, `SELECT `+auditCols+` FROM enrollment_audit WHERE org_id = ?
			ORDER BY timestamp_ms DESC, audit_id DESC LIMIT ?`, orgID, limit)
	} else {
		rows, err = s.rows(ctx, `SELECT `+auditCols+` FROM enrollment_audit WHERE org_id = ? AND app_id = ?
			ORDER BY timestamp_ms DESC, audit_id DESC LIMIT ?`, orgID, *appID, limit)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var e model.AuditEntry
		var dec string
		var serial sql.NullString
		var ts int64
		if err := rows.Scan(&e.AuditID, &e.OrgID, &e.AppID, &e.IdpID, &e.Subject, &dec, &e.Reason, &serial, &ts); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(dec), &e.Decision); err != nil {
			return nil, err
		}
		if serial.Valid {
			v := serial.String
			e.Serial = &v
		}
		e.TimestampMs = uint64(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}
