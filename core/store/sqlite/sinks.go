package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const sinkCols = `sink_id, org_id, kind, target, secret, enabled, created_at, filters`

func scanSink(sc scanner) (model.CdcSinkConfig, error) {
	var c model.CdcSinkConfig
	var kind, target, filters string
	var secret sql.NullString
	var created int64
	if err := sc.Scan(&c.SinkID, &c.OrgID, &kind, &target, &secret, &c.Enabled, &created, &filters); err != nil {
		return c, err
	}
	c.CreatedAt = uint64(created)
	switch kind {
	case "Nats":
		c.SinkType.Nats = &model.NatsSink{SubjectPrefix: target}
	case "Kafka":
		c.SinkType.Kafka = &model.KafkaSink{Topic: target}
	case "Webhook":
		c.SinkType.Webhook = &model.WebhookSink{URL: target, Secret: secret.String, HasSecret: secret.Valid && secret.String != ""}
	}
	c.Filters = []model.FilterRef{}
	return c, json.Unmarshal([]byte(filters), &c.Filters)
}

func sinkTarget(t model.CdcSinkType) (kind, target string, secret sql.NullString, err error) {
	switch {
	case t.Nats != nil:
		return "Nats", t.Nats.SubjectPrefix, secret, nil
	case t.Kafka != nil:
		return "Kafka", t.Kafka.Topic, secret, nil
	case t.Webhook != nil:
		if t.Webhook.Secret != "" {
			secret = sql.NullString{String: t.Webhook.Secret, Valid: true}
		}
		return "Webhook", t.Webhook.URL, secret, nil
	}
	return "", "", secret, fmt.Errorf("sqlite: sink_type has no variant")
}

func filtersJSON(f []model.FilterRef) (string, error) {
	if f == nil {
		f = []model.FilterRef{}
	}
	b, err := json.Marshal(f)
	return string(b), err
}

// CreateSink stores a sink within the org's max_cdc_sinks quota.
func (s *Store) CreateSink(ctx context.Context, c model.CdcSinkConfig) error {
	kind, target, secret, err := sinkTarget(c.SinkType)
	if err != nil {
		return err
	}
	filters, err := filtersJSON(c.Filters)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		var max, count int64
		err := t.row(`SELECT max_cdc_sinks FROM orgs WHERE org_id = ?`, c.OrgID).Scan(&max)
		if err == nil {
			err = t.row(`SELECT count(*) FROM (SELECT 1 FROM cdc_sinks WHERE org_id = ? LIMIT ?)`, c.OrgID, max).Scan(&count)
		}
		if err != nil {
			return notFound(err, store.ErrOrgNotFound)
		}
		if count >= max {
			return fmt.Errorf("%w: max_cdc_sinks %d", store.ErrQuota, max)
		}
		_, err = t.exec(`INSERT INTO cdc_sinks(`+sinkCols+`) VALUES (?,?,?,?,?,?,?,?)`,
			c.SinkID, c.OrgID, kind, target, secret, b2i(c.Enabled), int64(c.CreatedAt), filters)
		return err
	})
}

// GetSink returns one sink (ErrNotFound).
func (s *Store) GetSink(ctx context.Context, orgID, sinkID string) (model.CdcSinkConfig, error) {
	c, err := scanSink(s.row(ctx, `SELECT `+sinkCols+` FROM cdc_sinks WHERE org_id = ? AND sink_id = ?`, orgID, sinkID))
	return c, notFound(err, store.ErrNotFound)
}

func (s *Store) listSinks(ctx context.Context, query string, args ...any) ([]model.CdcSinkConfig, error) {
	rows, err := s.rows(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.CdcSinkConfig{}
	for rows.Next() {
		c, err := scanSink(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListSinks lists an org's sinks by sink_id (ErrOrgNotFound).
func (s *Store) ListSinks(ctx context.Context, orgID string) ([]model.CdcSinkConfig, error) {
	if err := s.orgExistsRead(ctx, orgID); err != nil {
		return nil, err
	}
	return s.listSinks(ctx, `SELECT `+sinkCols+` FROM cdc_sinks WHERE org_id = ? ORDER BY sink_id`, orgID)
}

// ListAllSinks lists every org's sinks ordered by (org_id, sink_id).
func (s *Store) ListAllSinks(ctx context.Context) ([]model.CdcSinkConfig, error) {
	return s.listSinks(ctx, `SELECT `+sinkCols+` FROM cdc_sinks ORDER BY org_id, sink_id`)
}

// UpdateSink rewrites enabled and filters.
func (s *Store) UpdateSink(ctx context.Context, c model.CdcSinkConfig) error {
	filters, err := filtersJSON(c.Filters)
	if err != nil {
		return err
	}
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`UPDATE cdc_sinks SET enabled = ?, filters = ? WHERE org_id = ? AND sink_id = ?`,
			b2i(c.Enabled), filters, c.OrgID, c.SinkID)
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// DeleteSink removes a sink with its delivery progress and dead letters.
func (s *Store) DeleteSink(ctx context.Context, orgID, sinkID string) error {
	return s.write(ctx, func(t *txn) error {
		n, err := t.affected(`DELETE FROM cdc_sinks WHERE org_id = ? AND sink_id = ?`, orgID, sinkID)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if _, err := t.exec(`DELETE FROM sink_progress WHERE org_id = ? AND sink_id = ?`, orgID, sinkID); err != nil {
			return err
		}
		_, err = t.exec(`DELETE FROM dead_letters WHERE org_id = ? AND sink_id = ?`, orgID, sinkID)
		return err
	})
}
