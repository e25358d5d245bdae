package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const formationCols = `org_id, app_id, mesh_id, enrollment_policy, status, created_at`

func scanFormation(sc scanner) (model.Formation, error) {
	var f model.Formation
	var created int64
	var policy, status string
	err := sc.Scan(&f.OrgID, &f.AppID, &f.MeshID, &policy, &status, &created)
	f.EnrollmentPolicy, f.Status, f.CreatedAt = model.EnrollmentPolicy(policy), model.FormationStatus(status), uint64(created)
	return f, err
}

// CreateFormation checks the org, its formation quota and uniqueness, in
// that order, then stores the formation with its genesis.
func (s *Store) CreateFormation(ctx context.Context, f model.Formation, genesis []byte) error {
	if f.Status == "" {
		f.Status = model.FormationActive
	}
	if genesis == nil {
		genesis = []byte{}
	}
	return s.write(ctx, func(t *txn) error {
		var max, count int64
		// Counting stops at the quota, so the cost is bounded by it.
		err := t.row(`SELECT max_formations FROM orgs WHERE org_id = ?`, f.OrgID).Scan(&max)
		if err == nil {
			err = t.row(`SELECT count(*) FROM (SELECT 1 FROM formations WHERE org_id = ? LIMIT ?)`, f.OrgID, max).Scan(&count)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrOrgNotFound
		}
		if err != nil {
			return err
		}
		if count >= max {
			return fmt.Errorf("%w: max_formations %d", store.ErrQuota, max)
		}
		ok, err := t.exists(`SELECT 1 FROM formations WHERE org_id = ? AND app_id = ?`, f.OrgID, f.AppID)
		if err != nil {
			return err
		}
		if ok {
			return store.ErrExists
		}
		_, err = t.exec(`INSERT INTO formations(`+formationCols+`, genesis) VALUES (?,?,?,?,?,?,?)`,
			f.OrgID, f.AppID, f.MeshID, string(f.EnrollmentPolicy), string(f.Status), int64(f.CreatedAt), genesis)
		return err
	})
}

// GetFormation returns one formation (ErrFormationNotFound).
func (s *Store) GetFormation(ctx context.Context, orgID, appID string) (model.Formation, error) {
	f, err := scanFormation(s.row(ctx, `SELECT `+formationCols+` FROM formations WHERE org_id = ? AND app_id = ?`, orgID, appID))
	return f, notFound(err, store.ErrFormationNotFound)
}

// ListFormations lists an org's formations by app_id (ErrOrgNotFound).
func (s *Store) ListFormations(ctx context.Context, orgID string) ([]model.Formation, error) {
	if err := s.orgExistsRead(ctx, orgID); err != nil {
		return nil, err
	}
	rows, err := s.rows(ctx, `SELECT `+formationCols+` FROM formations WHERE org_id = ? ORDER BY app_id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.Formation{}
	for rows.Next() {
		f, err := scanFormation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// DeleteFormation removes the formation; tokens, certificates, documents,
// genesis and filter chain go with it by cascade.
func (s *Store) DeleteFormation(ctx context.Context, orgID, appID string) error {
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`DELETE FROM formations WHERE org_id = ? AND app_id = ?`, orgID, appID)
		if err == nil && n == 0 {
			return store.ErrFormationNotFound
		}
		return err
	})
}

// SetFormationStatus suspends or resumes a formation.
func (s *Store) SetFormationStatus(ctx context.Context, orgID, appID string, status model.FormationStatus) (model.Formation, error) {
	var f model.Formation
	err := s.write(ctx, func(t *txn) error {
		var err error
		f, err = scanFormation(t.row(`UPDATE formations SET status = ? WHERE org_id = ? AND app_id = ? RETURNING `+formationCols,
			string(status), orgID, appID))
		return notFound(err, store.ErrFormationNotFound)
	})
	return f, err
}

// GetGenesis returns the stored (possibly sealed) genesis.
func (s *Store) GetGenesis(ctx context.Context, orgID, appID string) ([]byte, error) {
	var g []byte
	err := s.row(ctx, `SELECT genesis FROM formations WHERE org_id = ? AND app_id = ?`, orgID, appID).Scan(&g)
	return g, notFound(err, store.ErrFormationNotFound)
}

// ReplaceGenesis swaps the genesis only if it still equals old.
func (s *Store) ReplaceGenesis(ctx context.Context, orgID, appID string, old, new []byte) error {
	if new == nil {
		new = []byte{}
	}
	return s.write(ctx, func(t *txn) error {
		var cur []byte
		err := t.row(`SELECT genesis FROM formations WHERE org_id = ? AND app_id = ?`, orgID, appID).Scan(&cur)
		if err != nil {
			return notFound(err, store.ErrFormationNotFound)
		}
		if !bytes.Equal(cur, old) {
			return store.ErrConflict
		}
		_, err = t.exec(`UPDATE formations SET genesis = ? WHERE org_id = ? AND app_id = ?`, new, orgID, appID)
		return err
	})
}

// ListFormationRefs lists every formation ordered by (org_id, app_id).
func (s *Store) ListFormationRefs(ctx context.Context) ([]store.FormationRef, error) {
	rows, err := s.rows(ctx, `SELECT org_id, app_id FROM formations ORDER BY org_id, app_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.FormationRef{}
	for rows.Next() {
		var r store.FormationRef
		if err := rows.Scan(&r.OrgID, &r.AppID); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetFormationFilters replaces the formation's filter chain.
func (s *Store) SetFormationFilters(ctx context.Context, orgID, appID string, chain []model.FilterRef) error {
	if chain == nil {
		chain = []model.FilterRef{}
	}
	js, err := json.Marshal(chain)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`UPDATE formations SET filters = ? WHERE org_id = ? AND app_id = ?`, string(js), orgID, appID)
		if err == nil && n == 0 {
			return store.ErrFormationNotFound
		}
		return err
	})
}

// GetFormationFilters returns the formation's filter chain (empty when unset).
func (s *Store) GetFormationFilters(ctx context.Context, orgID, appID string) ([]model.FilterRef, error) {
	var js string
	err := s.row(ctx, `SELECT filters FROM formations WHERE org_id = ? AND app_id = ?`, orgID, appID).Scan(&js)
	if err != nil {
		return nil, notFound(err, store.ErrFormationNotFound)
	}
	out := []model.FilterRef{}
	return out, json.Unmarshal([]byte(js), &out)
}
