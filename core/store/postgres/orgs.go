package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const orgCols = `org_id, display_name, max_formations, max_peers_per_formation,
	max_documents_per_formation, max_cdc_sinks, max_enrollments_per_hour, created_at`

func scanOrg(row pgx.CollectableRow) (model.Organization, error) {
	var o model.Organization
	q := &o.Quotas
	err := row.Scan(&o.OrgID, &o.DisplayName, &q.MaxFormations, &q.MaxPeersPerFormation,
		&q.MaxDocumentsPerFormation, &q.MaxCdcSinks, &q.MaxEnrollmentsPerHour, &o.CreatedAt)
	return o, err
}

// CreateOrg inserts the org and its outbox counter in one statement.
func (s *Store) CreateOrg(ctx context.Context, o model.Organization) error {
	q := o.Quotas
	_, err := s.pool.Exec(ctx, `WITH o AS (
		INSERT INTO orgs (`+orgCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING org_id)
		INSERT INTO outbox_counters (org_id) SELECT org_id FROM o`,
		o.OrgID, o.DisplayName, q.MaxFormations, q.MaxPeersPerFormation,
		q.MaxDocumentsPerFormation, q.MaxCdcSinks, q.MaxEnrollmentsPerHour, o.CreatedAt)
	return mapErr(err, nil)
}

// GetOrg reads one org.
func (s *Store) GetOrg(ctx context.Context, orgID string) (model.Organization, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+orgCols+" FROM orgs WHERE org_id = $1", orgID)
	o, err := pgx.CollectExactlyOneRow(rows, scanOrg)
	return o, one(err, store.ErrOrgNotFound)
}

// ListOrgs lists every org by org_id.
func (s *Store) ListOrgs(ctx context.Context) ([]model.Organization, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+orgCols+" FROM orgs ORDER BY org_id")
	return pgx.CollectRows(rows, scanOrg)
}

// UpdateOrg rewrites the display name and quotas (created_at never changes).
func (s *Store) UpdateOrg(ctx context.Context, o model.Organization) error {
	q := o.Quotas
	tag, err := s.pool.Exec(ctx, `UPDATE orgs SET display_name = $2, max_formations = $3,
		max_peers_per_formation = $4, max_documents_per_formation = $5, max_cdc_sinks = $6,
		max_enrollments_per_hour = $7 WHERE org_id = $1`,
		o.OrgID, o.DisplayName, q.MaxFormations, q.MaxPeersPerFormation,
		q.MaxDocumentsPerFormation, q.MaxCdcSinks, q.MaxEnrollmentsPerHour)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrOrgNotFound
	}
	return nil
}

// DeleteOrg removes the org; foreign keys cascade to everything under it.
func (s *Store) DeleteOrg(ctx context.Context, orgID string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM orgs WHERE org_id = $1", orgID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrOrgNotFound
	}
	return nil
}

// ---- formations ----

const formationCols = "org_id, app_id, mesh_id, enrollment_policy, status, created_at"

func scanFormation(row pgx.CollectableRow) (model.Formation, error) {
	var f model.Formation
	var policy, status string
	err := row.Scan(&f.OrgID, &f.AppID, &f.MeshID, &policy, &status, &f.CreatedAt)
	f.EnrollmentPolicy, f.Status = model.EnrollmentPolicy(policy), model.FormationStatus(status)
	return f, err
}

// CreateFormation locks the org row, counts, then inserts, in one batch. The lock is FOR
// NO KEY UPDATE: it serialises creates in the org (so 50 concurrent creates
// cannot pass a quota of 10) without blocking foreign-key checks of
// unrelated inserts under the org, which only take KEY SHARE.
//
// The three statements go out as one pipelined batch. Under READ COMMITTED
// each statement takes its snapshot when it starts, i.e. after the lock is
// granted, so the count sees every formation committed before us. (In a
// single statement the snapshot would predate the lock wait.)
func (s *Store) CreateFormation(ctx context.Context, f model.Formation, genesis []byte) error {
	status := f.Status
	if status == "" {
		status = model.FormationActive
	}
	return s.txn(ctx, func(c *pgx.Conn) error {
		b := beginBatch()
		b.Queue("SELECT max_formations FROM orgs WHERE org_id = $1 FOR NO KEY UPDATE", f.OrgID)
		// Bounded by the quota: the count never reads more rows than it needs.
		b.Queue(`SELECT count(*) FROM (SELECT 1 FROM formations WHERE org_id = $1
			LIMIT (SELECT max_formations FROM orgs WHERE org_id = $1)) x`, f.OrgID)
		// Queued unconditionally and rolled back if a check fails: the whole
		// call is then one batch and a COMMIT.
		b.Queue(`INSERT INTO formations (org_id, app_id, mesh_id, enrollment_policy, status, created_at, genesis)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (org_id, app_id) DO NOTHING`,
			f.OrgID, f.AppID, f.MeshID, string(f.EnrollmentPolicy), string(status), f.CreatedAt, genesis)
		br, err := sendBegin(ctx, c, b)
		if err != nil {
			return err
		}
		defer br.Close()
		var limit, count int64
		if err := br.QueryRow().Scan(&limit); err != nil {
			return one(err, store.ErrOrgNotFound)
		}
		if err := br.QueryRow().Scan(&count); err != nil {
			return err
		}
		if count >= limit {
			return fmt.Errorf("%w: organization '%s' has reached its formation quota (%d)", store.ErrQuota, f.OrgID, limit)
		}
		tag, err := br.Exec()
		if err != nil {
			return mapErr(err, store.ErrOrgNotFound)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return br.Close()
	})
}

// GetFormation reads one formation.
func (s *Store) GetFormation(ctx context.Context, orgID, appID string) (model.Formation, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+formationCols+" FROM formations WHERE org_id = $1 AND app_id = $2", orgID, appID)
	f, err := pgx.CollectExactlyOneRow(rows, scanFormation)
	return f, one(err, store.ErrFormationNotFound)
}

// ListFormations lists an org's formations by app_id.
func (s *Store) ListFormations(ctx context.Context, orgID string) ([]model.Formation, error) {
	return listUnderOrg(ctx, s, orgID,
		"SELECT "+formationCols+" FROM formations WHERE org_id = $1 ORDER BY app_id", []any{orgID}, scanFormation)
}

// DeleteFormation removes the formation; its genesis (a column), tokens,
// certificates, documents and filter chain cascade.
func (s *Store) DeleteFormation(ctx context.Context, orgID, appID string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM formations WHERE org_id = $1 AND app_id = $2", orgID, appID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrFormationNotFound
	}
	return nil
}

// SetFormationStatus sets Active or Suspended and returns the formation.
func (s *Store) SetFormationStatus(ctx context.Context, orgID, appID string, status model.FormationStatus) (model.Formation, error) {
	rows, _ := s.pool.Query(ctx, "UPDATE formations SET status = $3 WHERE org_id = $1 AND app_id = $2 RETURNING "+formationCols,
		orgID, appID, string(status))
	f, err := pgx.CollectExactlyOneRow(rows, scanFormation)
	return f, one(err, store.ErrFormationNotFound)
}

// GetGenesis returns the sealed genesis blob.
func (s *Store) GetGenesis(ctx context.Context, orgID, appID string) ([]byte, error) {
	var g []byte
	err := s.pool.QueryRow(ctx, "SELECT genesis FROM formations WHERE org_id = $1 AND app_id = $2", orgID, appID).Scan(&g)
	return g, one(err, store.ErrFormationNotFound)
}

// ReplaceGenesis is a compare-and-swap on the blob.
func (s *Store) ReplaceGenesis(ctx context.Context, orgID, appID string, old, new []byte) error {
	// One statement reports both "swapped" and "exists" so the miss path
	// needs no second query.
	var swapped, exists bool
	err := s.pool.QueryRow(ctx, `WITH u AS (
			UPDATE formations SET genesis = $4 WHERE org_id = $1 AND app_id = $2 AND genesis = $3 RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM formations WHERE org_id = $1 AND app_id = $2)`,
		orgID, appID, old, new).Scan(&swapped, &exists)
	switch {
	case err != nil:
		return err
	case swapped:
		return nil
	case !exists:
		return store.ErrFormationNotFound
	}
	return store.ErrConflict
}

// ListFormationRefs lists every formation, ordered.
func (s *Store) ListFormationRefs(ctx context.Context) ([]store.FormationRef, error) {
	rows, _ := s.pool.Query(ctx, "SELECT org_id, app_id FROM formations ORDER BY org_id, app_id")
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.FormationRef, error) {
		var f store.FormationRef
		return f, r.Scan(&f.OrgID, &f.AppID)
	})
}

// ---- tokens ----

const tokenCols = "token_id, org_id, app_id, label, max_uses, uses, expires_at, created_at, revoked"

func scanToken(row pgx.CollectableRow) (model.EnrollmentToken, error) {
	var t model.EnrollmentToken
	err := row.Scan(&t.TokenID, &t.OrgID, &t.AppID, &t.Label, &t.MaxUses, &t.Uses, &t.ExpiresAt, &t.CreatedAt, &t.Revoked)
	return t, err
}

// CreateToken stores a token; the composite foreign key to formations
// checks org and formation at once.
func (s *Store) CreateToken(ctx context.Context, t model.EnrollmentToken) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO enrollment_tokens ("+tokenCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		t.TokenID, t.OrgID, t.AppID, t.Label, t.MaxUses, t.Uses, t.ExpiresAt, t.CreatedAt, t.Revoked)
	if pgCode(err) == codeForeignKeyViolation {
		return s.missingParent(ctx, s.pool, t.OrgID)
	}
	return mapErr(err, nil)
}

// GetToken reads one token.
func (s *Store) GetToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+tokenCols+" FROM enrollment_tokens WHERE org_id = $1 AND token_id = $2", orgID, tokenID)
	t, err := pgx.CollectExactlyOneRow(rows, scanToken)
	return t, one(err, store.ErrNotFound)
}

// ListTokens lists a formation's tokens by token_id.
func (s *Store) ListTokens(ctx context.Context, orgID, appID string) ([]model.EnrollmentToken, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+tokenCols+" FROM enrollment_tokens WHERE org_id = $1 AND app_id = $2 ORDER BY token_id", orgID, appID)
	return pgx.CollectRows(rows, scanToken)
}

// DeleteToken removes a token.
func (s *Store) DeleteToken(ctx context.Context, orgID, tokenID string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM enrollment_tokens WHERE org_id = $1 AND token_id = $2", orgID, tokenID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// RevokeToken revokes a token once.
func (s *Store) RevokeToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error) {
	rows, _ := s.pool.Query(ctx, "UPDATE enrollment_tokens SET revoked = true WHERE org_id = $1 AND token_id = $2 AND NOT revoked RETURNING "+tokenCols, orgID, tokenID)
	t, err := pgx.CollectExactlyOneRow(rows, scanToken)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, gerr := s.GetToken(ctx, orgID, tokenID); gerr != nil {
			return t, gerr
		}
		return t, store.ErrAlreadyRevoked
	}
	return t, err
}

// ---- sinks ----

const sinkCols = "sink_id, org_id, sink_kind, target, secret, enabled, created_at, filters"

func scanSink(row pgx.CollectableRow) (model.CdcSinkConfig, error) {
	var sc model.CdcSinkConfig
	var kind, target string
	var secret *string
	var filters []byte
	if err := row.Scan(&sc.SinkID, &sc.OrgID, &kind, &target, &secret, &sc.Enabled, &sc.CreatedAt, &filters); err != nil {
		return sc, err
	}
	switch kind {
	case "Nats":
		sc.SinkType.Nats = &model.NatsSink{SubjectPrefix: target}
	case "Kafka":
		sc.SinkType.Kafka = &model.KafkaSink{Topic: target}
	case "Webhook":
		w := &model.WebhookSink{URL: target}
		if secret != nil && *secret != "" {
			w.Secret, w.HasSecret = *secret, true
		}
		sc.SinkType.Webhook = w
	}
	return sc, json.Unmarshal(filters, &sc.Filters)
}

// sinkColumns splits the sink type into the kind/target/secret columns.
func sinkColumns(t model.CdcSinkType) (kind, target string, secret *string, err error) {
	switch {
	case t.Nats != nil:
		return "Nats", t.Nats.SubjectPrefix, nil, nil
	case t.Kafka != nil:
		return "Kafka", t.Kafka.Topic, nil, nil
	case t.Webhook != nil:
		if t.Webhook.Secret != "" {
			secret = &t.Webhook.Secret
		}
		return "Webhook", t.Webhook.URL, secret, nil
	}
	return "", "", nil, errors.New("postgres: sink_type has no variant")
}

// CreateSink checks the org's max_cdc_sinks quota under the org row lock
// (see CreateFormation for why the batch is safe).
func (s *Store) CreateSink(ctx context.Context, sc model.CdcSinkConfig) error {
	kind, target, secret, err := sinkColumns(sc.SinkType)
	if err != nil {
		return err
	}
	filters, err := json.Marshal(sc.Filters)
	if err != nil {
		return err
	}
	return s.txn(ctx, func(c *pgx.Conn) error {
		b := beginBatch()
		b.Queue("SELECT max_cdc_sinks FROM orgs WHERE org_id = $1 FOR NO KEY UPDATE", sc.OrgID)
		b.Queue(`SELECT count(*) FROM (SELECT 1 FROM cdc_sinks WHERE org_id = $1
			LIMIT (SELECT max_cdc_sinks FROM orgs WHERE org_id = $1)) x`, sc.OrgID)
		b.Queue(`INSERT INTO cdc_sinks (`+sinkCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (org_id, sink_id) DO NOTHING`,
			sc.SinkID, sc.OrgID, kind, target, secret, sc.Enabled, sc.CreatedAt, string(filters))
		br, err := sendBegin(ctx, c, b)
		if err != nil {
			return err
		}
		defer br.Close()
		var limit, count int64
		if err := br.QueryRow().Scan(&limit); err != nil {
			return one(err, store.ErrOrgNotFound)
		}
		if err := br.QueryRow().Scan(&count); err != nil {
			return err
		}
		if count >= limit {
			return fmt.Errorf("%w: organization '%s' has reached its CDC sink quota (%d)", store.ErrQuota, sc.OrgID, limit)
		}
		tag, err := br.Exec()
		if err != nil {
			return mapErr(err, store.ErrOrgNotFound)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrExists
		}
		return br.Close()
	})
}

// GetSink reads one sink.
func (s *Store) GetSink(ctx context.Context, orgID, sinkID string) (model.CdcSinkConfig, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+sinkCols+" FROM cdc_sinks WHERE org_id = $1 AND sink_id = $2", orgID, sinkID)
	sc, err := pgx.CollectExactlyOneRow(rows, scanSink)
	return sc, one(err, store.ErrNotFound)
}

// ListSinks lists an org's sinks by sink_id.
func (s *Store) ListSinks(ctx context.Context, orgID string) ([]model.CdcSinkConfig, error) {
	return listUnderOrg(ctx, s, orgID,
		"SELECT "+sinkCols+" FROM cdc_sinks WHERE org_id = $1 ORDER BY sink_id", []any{orgID}, scanSink)
}

// ListAllSinks lists every sink, by org then sink.
func (s *Store) ListAllSinks(ctx context.Context) ([]model.CdcSinkConfig, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+sinkCols+" FROM cdc_sinks ORDER BY org_id, sink_id")
	return pgx.CollectRows(rows, scanSink)
}

// UpdateSink rewrites enabled and filters.
func (s *Store) UpdateSink(ctx context.Context, sc model.CdcSinkConfig) error {
	filters, err := json.Marshal(sc.Filters)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, "UPDATE cdc_sinks SET enabled = $3, filters = $4 WHERE org_id = $1 AND sink_id = $2",
		sc.OrgID, sc.SinkID, sc.Enabled, string(filters))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeleteSink removes the sink with its delivery progress and dead letters,
// in one statement.
func (s *Store) DeleteSink(ctx context.Context, orgID, sinkID string) error {
	var n int64
	err := s.pool.QueryRow(ctx, `WITH d AS (DELETE FROM cdc_sinks WHERE org_id = $1 AND sink_id = $2 RETURNING 1),
			p AS (DELETE FROM sink_progress WHERE org_id = $1 AND sink_id = $2 AND EXISTS (SELECT 1 FROM d)),
			l AS (DELETE FROM dead_letters WHERE org_id = $1 AND sink_id = $2 AND EXISTS (SELECT 1 FROM d))
		SELECT count(*) FROM d`, orgID, sinkID).Scan(&n)
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
