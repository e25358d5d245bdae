package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// PutFilter stores a new version of a module. Only the latest version of a
// name is kept, so the quotas bound what is actually stored: maxModules the
// number of names, maxBytes the sum of their sizes (the version being
// replaced does not count). The org row lock serialises uploads of an org,
// as for the other quotas.
func (s *Store) PutFilter(ctx context.Context, m store.FilterModule, maxModules int, maxBytes int64) (store.FilterModule, error) {
	m.SizeBytes = len(m.Wasm)
	err := s.txn(ctx, func(c *pgx.Conn) error {
		b := beginBatch()
		b.Queue("SELECT 1 FROM orgs WHERE org_id = $1 FOR NO KEY UPDATE", m.OrgID)
		b.Queue(`SELECT count(*), coalesce(sum(size_bytes) FILTER (WHERE name <> $2), 0),
				count(*) FILTER (WHERE name = $2)
			FROM filter_modules WHERE org_id = $1`, m.OrgID, m.Name)
		// The upsert is queued with the checks and rolled back if they fail.
		b.Queue(`INSERT INTO filter_modules AS f (org_id, name, version, sha256, size_bytes, created_at, wasm)
			VALUES ($1, $2, 1, $3, $4, $5, $6)
			ON CONFLICT (org_id, name) DO UPDATE SET version = f.version + 1, sha256 = EXCLUDED.sha256,
				size_bytes = EXCLUDED.size_bytes, created_at = EXCLUDED.created_at, wasm = EXCLUDED.wasm
			RETURNING version`,
			m.OrgID, m.Name, m.SHA256, m.SizeBytes, m.CreatedAt, nonNil(m.Wasm))
		br, err := sendBegin(ctx, c, b)
		if err != nil {
			return err
		}
		defer br.Close()
		var locked int
		if err := br.QueryRow().Scan(&locked); err != nil {
			return one(err, store.ErrOrgNotFound)
		}
		var count, otherBytes, existing int64
		if err := br.QueryRow().Scan(&count, &otherBytes, &existing); err != nil {
			return err
		}
		if existing == 0 && count >= int64(maxModules) {
			return fmt.Errorf("%w: organization '%s' has reached its filter module quota (%d)", store.ErrQuota, m.OrgID, maxModules)
		}
		if otherBytes+int64(m.SizeBytes) > maxBytes {
			return fmt.Errorf("%w: organization '%s' would exceed its filter storage quota (%d bytes)", store.ErrQuota, m.OrgID, maxBytes)
		}
		if err := br.QueryRow().Scan(&m.Version); err != nil {
			return mapErr(err, store.ErrOrgNotFound)
		}
		return br.Close()
	})
	if err != nil {
		return store.FilterModule{}, err
	}
	return m, nil
}

const filterCols = "org_id, name, version, sha256, size_bytes, created_at"

func scanFilter(r pgx.CollectableRow) (store.FilterModule, error) {
	var m store.FilterModule
	return m, r.Scan(&m.OrgID, &m.Name, &m.Version, &m.SHA256, &m.SizeBytes, &m.CreatedAt)
}

// GetFilter returns the latest version with its bytes.
func (s *Store) GetFilter(ctx context.Context, orgID, name string) (store.FilterModule, error) {
	var m store.FilterModule
	err := s.pool.QueryRow(ctx, "SELECT "+filterCols+", wasm FROM filter_modules WHERE org_id = $1 AND name = $2", orgID, name).
		Scan(&m.OrgID, &m.Name, &m.Version, &m.SHA256, &m.SizeBytes, &m.CreatedAt, &m.Wasm)
	return m, one(err, store.ErrNotFound)
}

// ListFilters lists the org's modules by name, without their bytes.
func (s *Store) ListFilters(ctx context.Context, orgID string) ([]store.FilterModule, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+filterCols+" FROM filter_modules WHERE org_id = $1 ORDER BY name", orgID)
	return pgx.CollectRows(rows, scanFilter)
}

// DeleteFilter removes a module.
func (s *Store) DeleteFilter(ctx context.Context, orgID, name string) error {
	return deleteOne(ctx, s, "DELETE FROM filter_modules WHERE org_id = $1 AND name = $2", orgID, name)
}

// SetFormationFilters replaces the formation's chain.
func (s *Store) SetFormationFilters(ctx context.Context, orgID, appID string, chain []model.FilterRef) error {
	raw, err := json.Marshal(chain)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO formation_filters (org_id, app_id, chain) VALUES ($1, $2, $3)
		ON CONFLICT (org_id, app_id) DO UPDATE SET chain = EXCLUDED.chain`, orgID, appID, string(raw))
	if pgCode(err) == codeForeignKeyViolation {
		return store.ErrFormationNotFound
	}
	return err
}

// GetFormationFilters returns the chain (empty when none is set).
func (s *Store) GetFormationFilters(ctx context.Context, orgID, appID string) ([]model.FilterRef, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT ff.chain FROM formations f
		LEFT JOIN formation_filters ff ON ff.org_id = f.org_id AND ff.app_id = f.app_id
		WHERE f.org_id = $1 AND f.app_id = $2`, orgID, appID).Scan(&raw)
	if err != nil {
		return nil, one(err, store.ErrFormationNotFound)
	}
	if raw == nil {
		return []model.FilterRef{}, nil
	}
	var chain []model.FilterRef
	return chain, json.Unmarshal(raw, &chain)
}
