package sqlite

import (
	"context"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const orgCols = `org_id, display_name, max_formations, max_peers_per_formation,
	max_documents_per_formation, max_cdc_sinks, max_enrollments_per_hour, created_at`

type scanner interface{ Scan(dest ...any) error }

func scanOrg(sc scanner) (model.Organization, error) {
	var o model.Organization
	var created int64
	err := sc.Scan(&o.OrgID, &o.DisplayName, &o.Quotas.MaxFormations, &o.Quotas.MaxPeersPerFormation,
		&o.Quotas.MaxDocumentsPerFormation, &o.Quotas.MaxCdcSinks, &o.Quotas.MaxEnrollmentsPerHour, &created)
	o.CreatedAt = uint64(created)
	return o, err
}

// CreateOrg stores a new organisation (ErrExists if the id is taken).
func (s *Store) CreateOrg(ctx context.Context, o model.Organization) error {
	return s.write(ctx, func(t *txn) error {
		ok, err := t.exists(`SELECT 1 FROM orgs WHERE org_id = ?`, o.OrgID)
		if err != nil {
			return err
		}
		if ok {
			return store.ErrExists
		}
		q := o.Quotas
		_, err = t.exec(`INSERT INTO orgs(`+orgCols+`) VALUES (?,?,?,?,?,?,?,?)`,
			o.OrgID, o.DisplayName, q.MaxFormations, q.MaxPeersPerFormation,
			q.MaxDocumentsPerFormation, q.MaxCdcSinks, q.MaxEnrollmentsPerHour, int64(o.CreatedAt))
		return err
	})
}

// GetOrg returns one organisation (ErrOrgNotFound).
func (s *Store) GetOrg(ctx context.Context, orgID string) (model.Organization, error) {
	o, err := scanOrg(s.row(ctx, `SELECT `+orgCols+` FROM orgs WHERE org_id = ?`, orgID))
	return o, notFound(err, store.ErrOrgNotFound)
}

// ListOrgs returns every organisation ordered by org_id.
func (s *Store) ListOrgs(ctx context.Context) ([]model.Organization, error) {
	rows, err := s.rows(ctx, `SELECT `+orgCols+` FROM orgs ORDER BY org_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.Organization{}
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// UpdateOrg rewrites the display name and quotas; created_at never changes.
func (s *Store) UpdateOrg(ctx context.Context, o model.Organization) error {
	return s.write(ctx, func(t *txn) error {
		q := o.Quotas
		n, err := t.affected(`UPDATE orgs SET display_name = ?, max_formations = ?, max_peers_per_formation = ?,
			max_documents_per_formation = ?, max_cdc_sinks = ?, max_enrollments_per_hour = ? WHERE org_id = ?`,
			o.DisplayName, q.MaxFormations, q.MaxPeersPerFormation, q.MaxDocumentsPerFormation,
			q.MaxCdcSinks, q.MaxEnrollmentsPerHour, o.OrgID)
		if err == nil && n == 0 {
			return store.ErrOrgNotFound
		}
		return err
	})
}

// DeleteOrg removes the org; foreign keys cascade to everything under it.
func (s *Store) DeleteOrg(ctx context.Context, orgID string) error {
	return s.write(ctx, func(t *txn) error {
		// sink_progress is keyed by sink, not (org, sink): its org_id column
		// cascades too, so nothing of the org survives.
		n, err := t.affected(`DELETE FROM orgs WHERE org_id = ?`, orgID)
		if err == nil && n == 0 {
			return store.ErrOrgNotFound
		}
		return err
	})
}
