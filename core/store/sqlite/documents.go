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

// deletedPatch is a delete event's patches, as the reference emits it.
var deletedPatch = json.RawMessage(`{"_deleted":true}`)

// WriteDocuments applies the batch in one transaction, so one fsync covers
// every write in it (group commit). A write that fails a check gets its own
// Err and changes nothing; the others still commit.
func (s *Store) WriteDocuments(ctx context.Context, writes []store.DocumentWrite) ([]store.DocumentResult, error) {
	results := make([]store.DocumentResult, len(writes))
	// Top-level key counts depend on the body alone: count them here, in the
	// caller's goroutine, rather than in the single writer's.
	keys := make([]int, len(writes))
	for i, w := range writes {
		if !w.Delete {
			var obj map[string]json.RawMessage
			if json.Unmarshal(w.Body, &obj) == nil {
				keys[i] = len(obj)
			}
		}
	}
	err := s.write(ctx, func(t *txn) error {
		b := &docBatch{t: t, formations: map[[2]string]*formationState{}, orgs: map[string]*orgState{}}
		for i, w := range writes {
			r, err := b.write(w, keys[i])
			if err != nil {
				return err
			}
			results[i] = r
		}
		return b.flush()
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// docBatch caches, for one WriteDocuments transaction, the formation and
// org rows its writes check, and accumulates the counter changes so each
// row is read and updated once per batch rather than once per write. The
// writer lock makes the cached values exact for the transaction's life.
type docBatch struct {
	t          *txn
	formations map[[2]string]*formationState
	orgs       map[string]*orgState
}

type formationState struct {
	found    bool
	active   bool
	docCount int64 // including this batch's changes
	delta    int64
}

type orgState struct {
	outboxRows int64 // including this batch's events
	delta      int64
}

func (b *docBatch) formation(orgID, appID string) (*formationState, *orgState, error) {
	key := [2]string{orgID, appID}
	f, ok := b.formations[key]
	if !ok {
		f = &formationState{}
		var status string
		var docCount, outboxRows int64
		err := b.t.row(`SELECT f.status, f.doc_count, o.outbox_rows FROM formations f JOIN orgs o ON o.org_id = f.org_id
			WHERE f.org_id = ? AND f.app_id = ?`, orgID, appID).Scan(&status, &docCount, &outboxRows)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, nil, err
		default:
			f.found, f.active, f.docCount = true, model.FormationStatus(status) == model.FormationActive, docCount
			if _, seen := b.orgs[orgID]; !seen {
				b.orgs[orgID] = &orgState{outboxRows: outboxRows}
			}
		}
		b.formations[key] = f
	}
	return f, b.orgs[orgID], nil
}

// flush writes the accumulated counter changes.
func (b *docBatch) flush() error {
	for key, f := range b.formations {
		if f.delta != 0 {
			if _, err := b.t.exec(`UPDATE formations SET doc_count = doc_count + ? WHERE org_id = ? AND app_id = ?`, f.delta, key[0], key[1]); err != nil {
				return err
			}
		}
	}
	for orgID, o := range b.orgs {
		if o.delta != 0 {
			if _, err := b.t.exec(`UPDATE orgs SET outbox_rows = outbox_rows + ? WHERE org_id = ?`, o.delta, orgID); err != nil {
				return err
			}
		}
	}
	return nil
}

// write applies one write. A returned error aborts the batch; a refused
// write comes back in the result's Err instead.
func (b *docBatch) write(w store.DocumentWrite, bodyKeys int) (store.DocumentResult, error) {
	t := b.t
	f, o, err := b.formation(w.OrgID, w.AppID)
	if err != nil {
		return store.DocumentResult{}, err
	}
	if !f.found {
		return store.DocumentResult{Err: store.ErrFormationNotFound}, nil
	}
	if !f.active {
		return store.DocumentResult{Err: store.ErrSuspended}, nil
	}

	var body []byte
	var version int64
	var hash string
	exists := true
	err = t.row(`SELECT body, version, change_hash FROM documents WHERE org_id = ? AND app_id = ? AND doc_id = ?`,
		w.OrgID, w.AppID, w.DocID).Scan(&body, &version, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		exists = false
	} else if err != nil {
		return store.DocumentResult{}, err
	}
	live := exists && body != nil

	if w.Delete {
		if !live {
			return store.DocumentResult{Err: store.ErrNotFound}, nil
		}
	} else {
		if live && bytes.Equal(body, w.Body) {
			return store.DocumentResult{Version: uint64(version), ChangeHash: hash}, nil
		}
		if !live && f.docCount >= int64(w.DocLimit) {
			return store.DocumentResult{Err: fmt.Errorf("%w: max_documents_per_formation %d", store.ErrQuota, w.DocLimit)}, nil
		}
	}
	if w.OutboxLimit > 0 && o.outboxRows >= w.OutboxLimit {
		return store.DocumentResult{Err: store.ErrOutboxFull}, nil
	}

	newVersion := uint64(version) + 1
	ev := model.CdcEvent{
		OrgID: w.OrgID, AppID: w.AppID, DocumentID: w.DocID,
		ActorID: w.ActorID, TimestampMs: w.TimestampMs,
	}
	var newBody []byte
	var keys int
	delta := int64(0)
	if w.Delete {
		ev.ChangeHash = model.ChangeHash(w.OrgID, w.AppID, w.DocID, newVersion, nil)
		ev.Patches, ev.Op = deletedPatch, model.OpDelete
		delta = -1
	} else {
		newBody = w.Body
		if newBody == nil {
			newBody = []byte{}
		}
		ev.ChangeHash = model.ChangeHash(w.OrgID, w.AppID, w.DocID, newVersion, w.Body)
		ev.Patches, ev.Op = json.RawMessage(w.Body), model.OpUpsert
		keys = bodyKeys
		if !live {
			delta = 1
		}
	}
	raw, err := model.MarshalEvent(ev)
	if err != nil {
		return store.DocumentResult{Err: fmt.Errorf("document %s: %w", w.DocID, err)}, nil
	}
	if _, err := t.exec(`INSERT INTO documents(org_id, app_id, doc_id, body, key_count, version, change_hash, updated_at)
		VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT (org_id, app_id, doc_id) DO UPDATE SET body = excluded.body, key_count = excluded.key_count,
			version = excluded.version, change_hash = excluded.change_hash, updated_at = excluded.updated_at`,
		w.OrgID, w.AppID, w.DocID, newBody, keys, int64(newVersion), ev.ChangeHash, int64(w.TimestampMs)); err != nil {
		return store.DocumentResult{}, err
	}
	f.docCount += delta
	f.delta += delta
	seq, err := t.insertOutbox(w.OrgID, w.TimestampMs, raw)
	if err != nil {
		return store.DocumentResult{}, err
	}
	o.outboxRows++
	o.delta++
	return store.DocumentResult{Changed: true, Version: newVersion, ChangeHash: ev.ChangeHash, Seq: seq}, nil
}

// insertOutbox inserts one outbox row and returns its seq. seq is the
// table's INTEGER PRIMARY KEY, so it is the rowid the insert reports: an
// Exec and LastInsertId cost less than RETURNING, which goes through Rows.
func (t *txn) insertOutbox(orgID string, tsMs uint64, raw []byte) (int64, error) {
	res, err := t.exec(`INSERT INTO outbox(org_id, timestamp_ms, event) VALUES (?,?,?)`, orgID, int64(tsMs), raw)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// appendOutbox appends one event and keeps the org's row count.
func (t *txn) appendOutbox(orgID string, tsMs uint64, raw []byte) (int64, error) {
	seq, err := t.insertOutbox(orgID, tsMs, raw)
	if err != nil {
		return 0, err
	}
	_, err = t.exec(`UPDATE orgs SET outbox_rows = outbox_rows + 1 WHERE org_id = ?`, orgID)
	return seq, err
}

// GetDocument returns a live document (ErrNotFound, also for a deleted one).
func (s *Store) GetDocument(ctx context.Context, orgID, appID, docID string) (store.Document, error) {
	d := store.Document{OrgID: orgID, AppID: appID, DocID: docID}
	var version, updated int64
	err := s.row(ctx, `SELECT body, version, change_hash, updated_at FROM documents
		WHERE org_id = ? AND app_id = ? AND doc_id = ? AND body IS NOT NULL`, orgID, appID, docID).
		Scan(&d.Body, &version, &d.ChangeHash, &updated)
	d.Version, d.UpdatedAt = uint64(version), uint64(updated)
	return d, notFound(err, store.ErrNotFound)
}

// ListDocuments summarises a formation's live documents by doc_id.
func (s *Store) ListDocuments(ctx context.Context, orgID, appID string) ([]model.DocumentSummary, error) {
	rows, err := s.rows(ctx, `SELECT doc_id, key_count, updated_at, version, change_hash FROM documents
		WHERE org_id = ? AND app_id = ? AND body IS NOT NULL ORDER BY doc_id`, orgID, appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.DocumentSummary{}
	for rows.Next() {
		var d model.DocumentSummary
		var keys, updated, version int64
		if err := rows.Scan(&d.DocID, &keys, &updated, &version, &d.ChangeHash); err != nil {
			return nil, err
		}
		d.KeyCount, d.LastModified, d.Version = uint64(keys), uint64(updated), uint64(version)
		out = append(out, d)
	}
	return out, rows.Err()
}

// AppendEvent appends an event that changes no document (ErrOrgNotFound).
func (s *Store) AppendEvent(ctx context.Context, ev model.CdcEvent) (int64, error) {
	raw, err := model.MarshalEvent(ev)
	if err != nil {
		return 0, err
	}
	var seq int64
	err = s.write(ctx, func(t *txn) error {
		if err := t.orgExists(ev.OrgID); err != nil {
			return err
		}
		seq, err = t.appendOutbox(ev.OrgID, ev.TimestampMs, raw)
		return err
	})
	return seq, err
}
