package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// ReadOutbox returns an org's committed events after a seq, ascending.
func (s *Store) ReadOutbox(ctx context.Context, orgID string, after int64, limit int) ([]store.OutboxEvent, error) {
	if limit <= 0 {
		return []store.OutboxEvent{}, nil
	}
	rows, _ := s.pool.Query(ctx, "SELECT seq, event FROM outbox WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
		orgID, after, int64(limit))
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.OutboxEvent, error) {
		var e store.OutboxEvent
		if err := r.Scan(&e.Seq, &e.Raw); err != nil {
			return e, err
		}
		return e, model.UnmarshalEvent(e.Raw, &e.Event)
	})
}

// LastSeq is the org's highest allocated (hence committed) seq; it is read
// from the counter, so pruning never lowers it.
func (s *Store) LastSeq(ctx context.Context, orgID string) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce((SELECT last_seq FROM outbox_counters WHERE org_id = $1), 0)", orgID).Scan(&seq)
	return seq, err
}

// CountAfter counts an org's retained events after a seq.
func (s *Store) CountAfter(ctx context.Context, orgID string, after int64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE org_id = $1 AND seq > $2", orgID, after).Scan(&n)
	return n, err
}

// GetProgress returns a sink's delivery state (zero for a sink never seen).
func (s *Store) GetProgress(ctx context.Context, sinkID string) (store.SinkProgress, error) {
	var p store.SinkProgress
	err := s.pool.QueryRow(ctx, `SELECT cursor_seq, delivered, dead_lettered, last_error, last_delivered_at
		FROM sink_progress WHERE sink_id = $1`, sinkID).
		Scan(&p.Cursor, &p.Delivered, &p.DeadLettered, &p.LastError, &p.LastDeliveredAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.SinkProgress{}, nil
	}
	return p, err
}

// Advance records a delivery round in one statement (hence one
// transaction): dead letters are inserted and the progress row upserted
// with the cursor moved forward only (GREATEST), so a late or repeated
// Advance can never rewind it. The org row is key-share locked before
// anything else (an uncorrelated EXISTS runs first), as in WriteDocuments,
// so a concurrent DeleteOrg cannot deadlock with it.
func (s *Store) Advance(ctx context.Context, orgID, sinkID string, seq int64, delivered int64, deadLetters []store.DeadLetter, lastError string, nowMs uint64) error {
	return s.advance(ctx, orgID, sinkID, seq, delivered, 0, deadLetters, lastError, nowMs)
}

// AdvanceReplay is Advance that also marks the sink's un-replayed dead
// letters up to replayedThrough replayed, in the same statement. The
// UPDATE runs on the statement's snapshot, so it cannot see (and mark) the
// letters inserted beside it.
func (s *Store) AdvanceReplay(ctx context.Context, orgID, sinkID string, seq, delivered, replayedThrough int64, deadLetters []store.DeadLetter, lastError string, nowMs uint64) error {
	return s.advance(ctx, orgID, sinkID, seq, delivered, replayedThrough, deadLetters, lastError, nowMs)
}

func (s *Store) advance(ctx context.Context, orgID, sinkID string, seq, delivered, replayedThrough int64, deadLetters []store.DeadLetter, lastError string, nowMs uint64) error {
	n := len(deadLetters)
	dSeq, dErr, dAtt, dAt, dEv := make([]int64, n), make([]string, n), make([]int32, n), make([]int64, n), make([][]byte, n)
	for i, d := range deadLetters {
		raw := d.RawEvent
		if raw == nil {
			var err error
			if raw, err = json.Marshal(d.Event); err != nil {
				return err
			}
		}
		created := d.CreatedAt
		if created == 0 {
			created = nowMs
		}
		dSeq[i], dErr[i], dAtt[i], dAt[i], dEv[i] = d.Seq, d.Error, int32(d.Attempts), int64(created), raw
	}
	var lastAt *uint64
	if delivered > 0 {
		lastAt = &nowMs
	}
	tag, err := s.pool.Exec(ctx, `WITH o AS (SELECT 1 FROM orgs WHERE org_id = $1 FOR KEY SHARE),
		dl AS (
			INSERT INTO dead_letters (org_id, sink_id, seq, error, attempts, created_at, event)
			SELECT $1, $2, u.* FROM unnest($7::int8[], $8::text[], $9::int4[], $10::int8[], $11::bytea[]) u
			WHERE EXISTS (SELECT 1 FROM o)),
		r AS (
			UPDATE dead_letters SET replayed = true
			WHERE org_id = $1 AND sink_id = $2 AND NOT replayed AND id <= $13 AND EXISTS (SELECT 1 FROM o))
		INSERT INTO sink_progress AS p (sink_id, org_id, cursor_seq, delivered, dead_lettered, last_error, last_delivered_at)
		SELECT $2, $1, $3, $4, $5, $6, coalesce($12::int8, 0) WHERE EXISTS (SELECT 1 FROM o)
		ON CONFLICT (sink_id) DO UPDATE SET
			cursor_seq = GREATEST(p.cursor_seq, EXCLUDED.cursor_seq),
			delivered = p.delivered + EXCLUDED.delivered,
			dead_lettered = p.dead_lettered + EXCLUDED.dead_lettered,
			last_error = EXCLUDED.last_error,
			last_delivered_at = coalesce($12::int8, p.last_delivered_at)`,
		orgID, sinkID, seq, delivered, int64(n), lastError, dSeq, dErr, dAtt, dAt, dEv, lastAt, replayedThrough)
	if err != nil {
		return mapErr(err, store.ErrOrgNotFound)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrOrgNotFound
	}
	return nil
}

// SetLastError records a delivery error without moving the cursor. The org
// of a sink seen for the first time is taken from its configuration.
func (s *Store) SetLastError(ctx context.Context, sinkID, msg string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sink_progress (sink_id, org_id, last_error)
		SELECT sink_id, org_id, $2 FROM cdc_sinks WHERE sink_id = $1 LIMIT 1
		ON CONFLICT (sink_id) DO UPDATE SET last_error = EXCLUDED.last_error`, sinkID, msg)
	return err
}

const deadLetterCols = "id, sink_id, seq, error, attempts, created_at, event, replayed"

func scanDeadLetter(r pgx.CollectableRow) (store.DeadLetter, error) {
	var d store.DeadLetter
	if err := r.Scan(&d.ID, &d.SinkID, &d.Seq, &d.Error, &d.Attempts, &d.CreatedAt, &d.RawEvent, &d.Replayed); err != nil {
		return d, err
	}
	return d, model.UnmarshalEvent(d.RawEvent, &d.Event)
}

// ListDeadLetters lists a sink's dead letters by id, at most limit.
func (s *Store) ListDeadLetters(ctx context.Context, orgID, sinkID string, limit int) ([]store.DeadLetter, error) {
	if limit <= 0 {
		return []store.DeadLetter{}, nil
	}
	rows, _ := s.pool.Query(ctx, "SELECT "+deadLetterCols+` FROM dead_letters
		WHERE org_id = $1 AND sink_id = $2 ORDER BY id LIMIT $3`, orgID, sinkID, int64(limit))
	return pgx.CollectRows(rows, scanDeadLetter)
}

// Prune deletes events that every sink of their org (enabled or not; no
// progress row means cursor 0) has passed and that are older than
// olderThanMs. An org without sinks has nothing holding its events back.
func (s *Store) Prune(ctx context.Context, olderThanMs uint64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `WITH d AS (DELETE FROM outbox o USING (
			SELECT c.org_id, (SELECT min(coalesce(p.cursor_seq, 0)) FROM cdc_sinks k
				LEFT JOIN sink_progress p ON p.sink_id = k.sink_id WHERE k.org_id = c.org_id) AS passed
			FROM outbox_counters c) x
		WHERE o.org_id = x.org_id AND o.created_at < $1 AND (x.passed IS NULL OR o.seq <= x.passed)
		RETURNING o.org_id),
		g AS (SELECT org_id, count(*) AS n FROM d GROUP BY org_id),
		u AS (UPDATE outbox_counters c SET retained = c.retained - g.n FROM g WHERE c.org_id = g.org_id)
		SELECT coalesce(sum(n), 0)::bigint FROM g`, olderThanMs).Scan(&n)
	return n, err
}

// OutboxDepth is the number of retained outbox rows.
func (s *Store) OutboxDepth(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce(sum(retained), 0)::bigint FROM outbox_counters").Scan(&n)
	return n, err
}
