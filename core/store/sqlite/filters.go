package sqlite

import (
	"context"
	"fmt"

	"github.com/defenseunicorns/peat-gateway/core/store"
)

// PutFilter stores the next version of a module. maxModules bounds the
// org's distinct module names and maxBytes the sum of their latest versions'
// sizes (a new version replaces its predecessor in that sum).
func (s *Store) PutFilter(ctx context.Context, m store.FilterModule, maxModules int, maxBytes int64) (store.FilterModule, error) {
	m.SizeBytes = len(m.Wasm)
	err := s.write(ctx, func(t *txn) error {
		if err := t.orgExists(m.OrgID); err != nil {
			return err
		}
		var cur int
		if err := t.row(`SELECT coalesce(max(version), 0) FROM filter_modules WHERE org_id = ? AND name = ?`,
			m.OrgID, m.Name).Scan(&cur); err != nil {
			return err
		}
		var modules, others int64
		if err := t.row(`SELECT count(*), coalesce(sum(CASE WHEN f.name = ?2 THEN 0 ELSE f.size_bytes END), 0)
			FROM filter_modules f WHERE f.org_id = ?1
			AND f.version = (SELECT max(version) FROM filter_modules g WHERE g.org_id = f.org_id AND g.name = f.name)`,
			m.OrgID, m.Name).Scan(&modules, &others); err != nil {
			return err
		}
		if cur == 0 && modules >= int64(maxModules) {
			return fmt.Errorf("%w: at most %d filter modules", store.ErrQuota, maxModules)
		}
		if others+int64(m.SizeBytes) > maxBytes {
			return fmt.Errorf("%w: filter modules may total at most %d bytes", store.ErrQuota, maxBytes)
		}
		m.Version = cur + 1
		_, err := t.exec(`INSERT INTO filter_modules(org_id, name, version, sha256, size_bytes, created_at, wasm)
			VALUES (?,?,?,?,?,?,?)`, m.OrgID, m.Name, m.Version, m.SHA256, m.SizeBytes, int64(m.CreatedAt), m.Wasm)
		return err
	})
	if err != nil {
		return store.FilterModule{}, err
	}
	return m, nil
}

// GetFilter returns the latest version with its bytes (ErrNotFound).
func (s *Store) GetFilter(ctx context.Context, orgID, name string) (store.FilterModule, error) {
	var m store.FilterModule
	var created int64
	err := s.row(ctx, `SELECT org_id, name, version, sha256, size_bytes, created_at, wasm FROM filter_modules
		WHERE org_id = ? AND name = ? ORDER BY version DESC LIMIT 1`, orgID, name).
		Scan(&m.OrgID, &m.Name, &m.Version, &m.SHA256, &m.SizeBytes, &created, &m.Wasm)
	m.CreatedAt = uint64(created)
	return m, notFound(err, store.ErrNotFound)
}

// ListFilters lists the latest version of each module by name, without bytes.
func (s *Store) ListFilters(ctx context.Context, orgID string) ([]store.FilterModule, error) {
	rows, err := s.rows(ctx, `SELECT org_id, name, version, sha256, size_bytes, created_at FROM filter_modules f
		WHERE org_id = ? AND version = (SELECT max(version) FROM filter_modules g WHERE g.org_id = f.org_id AND g.name = f.name)
		ORDER BY name`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.FilterModule{}
	for rows.Next() {
		var m store.FilterModule
		var created int64
		if err := rows.Scan(&m.OrgID, &m.Name, &m.Version, &m.SHA256, &m.SizeBytes, &created); err != nil {
			return nil, err
		}
		m.CreatedAt = uint64(created)
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteFilter removes every version of a module (ErrNotFound).
func (s *Store) DeleteFilter(ctx context.Context, orgID, name string) error {
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`DELETE FROM filter_modules WHERE org_id = ? AND name = ?`, orgID, name)
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
}
