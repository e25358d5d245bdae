package sqlite

import (
	"context"
	"database/sql"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const tokenCols = `token_id, org_id, app_id, label, max_uses, uses, expires_at, created_at, revoked`

func scanToken(sc scanner) (model.EnrollmentToken, error) {
	var t model.EnrollmentToken
	var maxUses, expires sql.NullInt64
	var created int64
	err := sc.Scan(&t.TokenID, &t.OrgID, &t.AppID, &t.Label, &maxUses, &t.Uses, &expires, &created, &t.Revoked)
	if maxUses.Valid {
		v := uint32(maxUses.Int64)
		t.MaxUses = &v
	}
	if expires.Valid {
		v := uint64(expires.Int64)
		t.ExpiresAt = &v
	}
	t.CreatedAt = uint64(created)
	return t, err
}

// CreateToken stores a token for an existing formation.
func (s *Store) CreateToken(ctx context.Context, tk model.EnrollmentToken) error {
	var maxUses, expires sql.NullInt64
	if tk.MaxUses != nil {
		maxUses = sql.NullInt64{Int64: int64(*tk.MaxUses), Valid: true}
	}
	if tk.ExpiresAt != nil {
		expires = sql.NullInt64{Int64: int64(*tk.ExpiresAt), Valid: true}
	}
	return s.write(ctx, func(t *txn) error {
		if err := t.orgExists(tk.OrgID); err != nil {
			return err
		}
		ok, err := t.exists(`SELECT 1 FROM formations WHERE org_id = ? AND app_id = ?`, tk.OrgID, tk.AppID)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrFormationNotFound
		}
		_, err = t.exec(`INSERT INTO enrollment_tokens(`+tokenCols+`) VALUES (?,?,?,?,?,?,?,?,?)`,
			tk.TokenID, tk.OrgID, tk.AppID, tk.Label, maxUses, tk.Uses, expires, int64(tk.CreatedAt), b2i(tk.Revoked))
		return err
	})
}

// GetToken returns one token (ErrNotFound).
func (s *Store) GetToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error) {
	tk, err := scanToken(s.row(ctx, `SELECT `+tokenCols+` FROM enrollment_tokens WHERE org_id = ? AND token_id = ?`, orgID, tokenID))
	return tk, notFound(err, store.ErrNotFound)
}

// ListTokens lists a formation's tokens by token_id.
func (s *Store) ListTokens(ctx context.Context, orgID, appID string) ([]model.EnrollmentToken, error) {
	rows, err := s.rows(ctx, `SELECT `+tokenCols+` FROM enrollment_tokens WHERE org_id = ? AND app_id = ? ORDER BY token_id`, orgID, appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.EnrollmentToken{}
	for rows.Next() {
		tk, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, tk)
	}
	return out, rows.Err()
}

// DeleteToken removes a token (ErrNotFound).
func (s *Store) DeleteToken(ctx context.Context, orgID, tokenID string) error {
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`DELETE FROM enrollment_tokens WHERE org_id = ? AND token_id = ?`, orgID, tokenID)
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// RevokeToken marks a token revoked (ErrNotFound, ErrAlreadyRevoked).
func (s *Store) RevokeToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error) {
	var tk model.EnrollmentToken
	err := s.write(ctx, func(t *txn) error {
		var err error
		tk, err = scanToken(t.row(`SELECT `+tokenCols+` FROM enrollment_tokens WHERE org_id = ? AND token_id = ?`, orgID, tokenID))
		if err != nil {
			return notFound(err, store.ErrNotFound)
		}
		if tk.Revoked {
			return store.ErrAlreadyRevoked
		}
		tk.Revoked = true
		_, err = t.exec(`UPDATE enrollment_tokens SET revoked = 1 WHERE org_id = ? AND token_id = ?`, orgID, tokenID)
		return err
	})
	return tk, err
}
