package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"math"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// ReadOutbox returns the org's events after the cursor, ascending.
func (s *Store) ReadOutbox(ctx context.Context, orgID string, after int64, limit int) ([]store.OutboxEvent, error) {
	out := []store.OutboxEvent{}
	if limit <= 0 {
		return out, nil
	}
	rows, err := s.rows(ctx, `SELECT seq, event FROM outbox WHERE org_id = ? AND seq > ? ORDER BY seq LIMIT ?`, orgID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var e store.OutboxEvent
		if err := rows.Scan(&e.Seq, &e.Raw); err != nil {
			return nil, err
		}
		if err := model.UnmarshalEvent(e.Raw, &e.Event); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// LastSeq is the org's highest retained seq (0 when empty).
func (s *Store) LastSeq(ctx context.Context, orgID string) (int64, error) {
	var seq sql.NullInt64
	err := s.row(ctx, `SELECT max(seq) FROM outbox WHERE org_id = ?`, orgID).Scan(&seq)
	return seq.Int64, err
}

// CountAfter counts the org's events after the cursor.
func (s *Store) CountAfter(ctx context.Context, orgID string, after int64) (int64, error) {
	var n int64
	err := s.row(ctx, `SELECT count(*) FROM outbox WHERE org_id = ? AND seq > ?`, orgID, after).Scan(&n)
	return n, err
}

// GetProgress returns a sink's progress; an unknown sink is at cursor 0.
func (s *Store) GetProgress(ctx context.Context, sinkID string) (store.SinkProgress, error) {
	var p store.SinkProgress
	var last int64
	err := s.row(ctx, `SELECT cursor, delivered, dead_lettered, last_error, last_delivered_at FROM sink_progress WHERE sink_id = ?`,
		sinkID).Scan(&p.Cursor, &p.Delivered, &p.DeadLettered, &p.LastError, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return store.SinkProgress{}, nil
	}
	p.LastDeliveredAt = uint64(last)
	return p, err
}

// Advance moves the cursor forward (never back), adds to the counters and
// stores the dead letters in one transaction.
func (s *Store) Advance(ctx context.Context, orgID, sinkID string, seq int64, delivered int64, deadLetters []store.DeadLetter, lastError string, nowMs uint64) error {
	return s.advance(ctx, orgID, sinkID, seq, delivered, 0, deadLetters, lastError, nowMs)
}

// AdvanceReplay is Advance that also marks the sink's un-replayed dead
// letters up to replayedThrough replayed, in the same transaction.
func (s *Store) AdvanceReplay(ctx context.Context, orgID, sinkID string, seq, delivered, replayedThrough int64, deadLetters []store.DeadLetter, lastError string, nowMs uint64) error {
	return s.advance(ctx, orgID, sinkID, seq, delivered, replayedThrough, deadLetters, lastError, nowMs)
}

func (s *Store) advance(ctx context.Context, orgID, sinkID string, seq, delivered, replayedThrough int64, deadLetters []store.DeadLetter, lastError string, nowMs uint64) error {
	raws := make([][]byte, len(deadLetters))
	for i, d := range deadLetters {
		raws[i] = d.RawEvent
		if raws[i] == nil {
			b, err := model.MarshalEvent(d.Event)
			if err != nil {
				return err
			}
			raws[i] = b
		}
	}
	// Sink progress and dead letters are in no writer cache.
	return s.writeOp(ctx, keepEnroll|keepDocs, nil, func(t *txn) error {
		if err := t.orgExists(orgID); err != nil {
			return err
		}
		deliveredAt := int64(0)
		if delivered > 0 {
			deliveredAt = int64(nowMs)
		}
		if _, err := t.exec(`INSERT INTO sink_progress(sink_id, org_id, cursor, delivered, dead_lettered, last_error, last_delivered_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
			ON CONFLICT (sink_id) DO UPDATE SET cursor = max(cursor, excluded.cursor),
				delivered = delivered + excluded.delivered, dead_lettered = dead_lettered + excluded.dead_lettered,
				last_error = excluded.last_error,
				last_delivered_at = CASE WHEN excluded.delivered > 0 THEN excluded.last_delivered_at ELSE last_delivered_at END`,
			sinkID, orgID, seq, delivered, int64(len(deadLetters)), lastError, deliveredAt); err != nil {
			return err
		}
		// Before the inserts, so the letters that failed again stay pending.
		if replayedThrough > 0 {
			if _, err := t.exec(`UPDATE dead_letters SET replayed = 1 WHERE org_id = ? AND sink_id = ? AND replayed = 0 AND id <= ?`,
				orgID, sinkID, replayedThrough); err != nil {
				return err
			}
		}
		for i, d := range deadLetters {
			created := d.CreatedAt
			if created == 0 {
				created = nowMs
			}
			if _, err := t.exec(`INSERT INTO dead_letters(org_id, sink_id, seq, error, attempts, created_at, event)
				VALUES (?,?,?,?,?,?,?)`, orgID, sinkID, d.Seq, d.Error, d.Attempts, int64(created), raws[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetLastError records a delivery error without moving the cursor; the sink
// must exist (ErrNotFound) unless it already has progress.
func (s *Store) SetLastError(ctx context.Context, sinkID, msg string) error {
	return s.writeOp(ctx, keepEnroll|keepDocs, nil, func(t *txn) error {
		n, err := t.affected(`UPDATE sink_progress SET last_error = ? WHERE sink_id = ?`, msg, sinkID)
		if err != nil || n > 0 {
			return err
		}
		n, err = t.affected(`INSERT INTO sink_progress(sink_id, org_id, last_error)
			SELECT sink_id, org_id, ? FROM cdc_sinks WHERE sink_id = ? LIMIT 1`, msg, sinkID)
		if err == nil && n == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

const deadLetterCols = `id, sink_id, seq, error, attempts, created_at, event, replayed`

func scanDeadLetters(rows *sql.Rows) ([]store.DeadLetter, error) {
	defer rows.Close()
	out := []store.DeadLetter{}
	for rows.Next() {
		var d store.DeadLetter
		var created int64
		if err := rows.Scan(&d.ID, &d.SinkID, &d.Seq, &d.Error, &d.Attempts, &created, &d.RawEvent, &d.Replayed); err != nil {
			return nil, err
		}
		d.CreatedAt = uint64(created)
		if err := model.UnmarshalEvent(d.RawEvent, &d.Event); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ListDeadLetters lists a sink's dead letters oldest first; limit <= 0
// returns nothing.
func (s *Store) ListDeadLetters(ctx context.Context, orgID, sinkID string, limit int) ([]store.DeadLetter, error) {
	if limit <= 0 {
		return []store.DeadLetter{}, nil
	}
	rows, err := s.rows(ctx, `SELECT `+deadLetterCols+` FROM dead_letters WHERE org_id = ? AND sink_id = ? ORDER BY id LIMIT ?`,
		orgID, sinkID, limit)
	if err != nil {
		return nil, err
	}
	return scanDeadLetters(rows)
}

// Prune removes, org by org, events older than olderThanMs that every sink
// of the org has passed. It deletes in chunks of pruneChunk rows per org per
// transaction, so draining a large backlog never holds the writer long
// enough to stall enrollments and document writes.
func (s *Store) Prune(ctx context.Context, olderThanMs uint64) (int64, error) {
	var total int64
	for {
		n, more, err := s.pruneOnce(ctx, olderThanMs)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// pruneOnce runs one chunk; more reports that some org may have more to prune.
func (s *Store) pruneOnce(ctx context.Context, olderThanMs uint64) (removed int64, more bool, err error) {
	chunk := int64(s.pruneChunk)
	err = s.write(ctx, func(t *txn) error {
		removed, more = 0, false
		rows, err := t.query(`SELECT o.org_id,
			(SELECT min(coalesce(p.cursor, 0)) FROM cdc_sinks k LEFT JOIN sink_progress p ON p.sink_id = k.sink_id
				WHERE k.org_id = o.org_id)
			FROM orgs o WHERE o.outbox_rows > 0`)
		if err != nil {
			return err
		}
		type bound struct {
			org string
			seq int64
		}
		var bounds []bound
		for rows.Next() {
			var b bound
			var min sql.NullInt64
			if err := rows.Scan(&b.org, &min); err != nil {
				rows.Close()
				return err
			}
			// An org without sinks holds events for nobody.
			b.seq = math.MaxInt64
			if min.Valid {
				b.seq = min.Int64
			}
			bounds = append(bounds, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, b := range bounds {
			// Rows are appended in seq order with the clock of their
			// write, so only the first chunk of the org's passed rows is
			// looked at: filtering all of them by age would walk every
			// retained row on each prune, holding the writer for as long.
			// A row written with an earlier clock than the one before it
			// waits for a later prune. Most prunes find the oldest row too
			// young and stop there.
			var oldest sql.NullInt64
			if err := t.row(`SELECT timestamp_ms FROM outbox WHERE org_id = ? ORDER BY seq LIMIT 1`, b.org).Scan(&oldest); err != nil &&
				!errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if !oldest.Valid || oldest.Int64 >= int64(olderThanMs) {
				continue
			}
			n, err := t.affected(`DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox
				WHERE org_id = ? AND seq <= ? ORDER BY seq LIMIT ?) AND timestamp_ms < ?`, b.org, b.seq, chunk, int64(olderThanMs))
			if err != nil {
				return err
			}
			if n == 0 {
				continue
			}
			if _, err := t.exec(`UPDATE orgs SET outbox_rows = outbox_rows - ? WHERE org_id = ?`, n, b.org); err != nil {
				return err
			}
			removed += n
			more = more || n == chunk
		}
		return nil
	})
	return removed, more, err
}

// OutboxDepth is the number of retained outbox rows, from the per-org counts.
func (s *Store) OutboxDepth(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	err := s.row(ctx, `SELECT sum(outbox_rows) FROM orgs`).Scan(&n)
	return n.Int64, err
}
