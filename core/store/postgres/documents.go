package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// deletedPatches is the payload of a delete event (as the reference emits).
var deletedPatches = json.RawMessage(`{"_deleted":true}`)

type formKey struct{ org, app string }
type docKey struct{ org, app, doc string }

type formState struct {
	status   string
	docCount int64
	delta    int64
}

type docState struct {
	body      []byte
	deleted   bool
	version   uint64
	hash      string
	updatedAt uint64
	keyCount  int64
	dirty     bool
}

type orgState struct {
	lastSeq  int64
	start    int64
	retained int64
	limit    int64
}

// WriteDocuments applies the batch in one transaction of two round trips,
// whatever its size: BEGIN with one pipelined read batch (locks,
// formations, current documents, outbox sizes); then one pipelined batch of
// array-parameter (unnest) writes ending in COMMIT.
//
// Outbox order. Each org has one outbox_counters row. A writer locks it
// (FOR UPDATE) before anything else and keeps the lock until commit, then
// allocates seqs from it. A second writer of the org therefore allocates
// only after the first has committed (or rolled back, returning its seqs),
// so seq order is commit order and a reader that sees seq n+1 also sees n:
// its cursor can never pass an event that is still in flight. A BIGSERIAL
// would not give this (seq n+1 can commit before n), and a counter row beats
// pg_advisory_xact_lock + max(seq) because pruning can never make a seq be
// handed out twice.
//
// Lock order (org KEY SHARE, counter, formations, documents) matches what
// DeleteOrg and DeleteFormation cascades take, so they cannot deadlock with
// a writer; orgs and formations are locked in sorted order so that two
// multi-org batches cannot either.
func (s *Store) WriteDocuments(ctx context.Context, writes []store.DocumentWrite) ([]store.DocumentResult, error) {
	results := make([]store.DocumentResult, len(writes))
	if len(writes) == 0 {
		return results, nil
	}
	orgs := map[string]*orgState{}
	forms := map[formKey]*formState{}
	docs := map[docKey]*docState{}
	var docOrder []docKey
	for _, w := range writes {
		o := orgs[w.OrgID]
		if o == nil {
			o = &orgState{}
			orgs[w.OrgID] = o
		}
		if w.OutboxLimit > o.limit {
			o.limit = w.OutboxLimit
		}
		forms[formKey{w.OrgID, w.AppID}] = nil
		k := docKey{w.OrgID, w.AppID, w.DocID}
		if _, ok := docs[k]; !ok {
			docs[k] = nil
			docOrder = append(docOrder, k)
		}
	}
	orgIDs := make([]string, 0, len(orgs))
	for id := range orgs {
		orgIDs = append(orgIDs, id)
	}
	sort.Strings(orgIDs)
	var fOrgs, fApps []string
	for k := range forms {
		fOrgs, fApps = append(fOrgs, k.org), append(fApps, k.app)
	}
	dOrgs, dApps, dIDs := make([]string, len(docOrder)), make([]string, len(docOrder)), make([]string, len(docOrder))
	for i, k := range docOrder {
		dOrgs[i], dApps[i], dIDs[i] = k.org, k.app, k.doc
	}

	err := s.txn(ctx, func(c *pgx.Conn) error {
		b := beginBatch()
		b.Queue("SELECT org_id FROM orgs WHERE org_id = ANY($1) ORDER BY org_id FOR KEY SHARE", orgIDs)
		b.Queue("SELECT org_id, last_seq, retained FROM outbox_counters WHERE org_id = ANY($1) ORDER BY org_id FOR UPDATE", orgIDs)
		b.Queue(`SELECT f.org_id, f.app_id, f.status, f.doc_count FROM formations f
			JOIN unnest($1::text[], $2::text[]) u(o, a) ON f.org_id = u.o AND f.app_id = u.a
			ORDER BY f.org_id, f.app_id FOR NO KEY UPDATE OF f`, fOrgs, fApps)
		b.Queue(`SELECT d.org_id, d.app_id, d.doc_id, d.body, d.deleted, d.version, d.change_hash, d.updated_at, d.key_count
			FROM documents d JOIN unnest($1::text[], $2::text[], $3::text[]) u(o, a, k)
			  ON d.org_id = u.o AND d.app_id = u.a AND d.doc_id = u.k`, dOrgs, dApps, dIDs)
		br, err := sendBegin(ctx, c, b)
		if err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
		err = readRows(br, func(r pgx.Rows) error {
			var id string
			var seq, retained int64
			if err := r.Scan(&id, &seq, &retained); err != nil {
				return err
			}
			// retained is kept in the counter row (migration 0002) so the
			// outbox limit costs the same however large the backlog is.
			orgs[id].lastSeq, orgs[id].start, orgs[id].retained = seq, seq, retained
			return nil
		})
		if err == nil {
			err = readRows(br, func(r pgx.Rows) error {
				var k formKey
				f := &formState{}
				if err := r.Scan(&k.org, &k.app, &f.status, &f.docCount); err != nil {
					return err
				}
				forms[k] = f
				return nil
			})
		}
		if err == nil {
			err = readRows(br, func(r pgx.Rows) error {
				var k docKey
				d := &docState{}
				if err := r.Scan(&k.org, &k.app, &k.doc, &d.body, &d.deleted, &d.version, &d.hash, &d.updatedAt, &d.keyCount); err != nil {
					return err
				}
				docs[k] = d
				return nil
			})
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}

		var ob outboxRows
		for i, w := range writes {
			r, err := apply(w, orgs[w.OrgID], forms[formKey{w.OrgID, w.AppID}], docs, &ob)
			if err != nil {
				return err
			}
			results[i] = r
		}
		if len(ob.orgs) == 0 {
			return nil
		}
		return flush(ctx, c, orgs, forms, docs, docOrder, &ob)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// readRows consumes the next query result of a batch.
func readRows(br pgx.BatchResults, f func(pgx.Rows) error) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

type outboxRows struct {
	orgs    []string
	seqs    []int64
	created []int64
	events  [][]byte
}

// apply decides one write against the in-memory state of the batch (so a
// document written twice in one batch sees its first write), in the
// contract's order of checks. Only a storage-level failure is returned as
// err; a refused write is reported in its result.
func apply(w store.DocumentWrite, o *orgState, f *formState, docs map[docKey]*docState, ob *outboxRows) (store.DocumentResult, error) {
	if f == nil || o == nil {
		return store.DocumentResult{Err: store.ErrFormationNotFound}, nil
	}
	if model.FormationStatus(f.status) == model.FormationSuspended {
		return store.DocumentResult{Err: store.ErrSuspended}, nil
	}
	k := docKey{w.OrgID, w.AppID, w.DocID}
	d := docs[k]
	live := d != nil && !d.deleted
	var version uint64
	if d != nil {
		version = d.version
	}
	patches, op := json.RawMessage(w.Body), model.OpUpsert
	if w.Delete {
		if !live {
			return store.DocumentResult{Err: store.ErrNotFound}, nil
		}
		patches, op = deletedPatches, model.OpDelete
	} else {
		if live && bytes.Equal(d.body, w.Body) {
			return store.DocumentResult{Version: d.version, ChangeHash: d.hash}, nil
		}
		if !live && f.docCount >= int64(w.DocLimit) {
			return store.DocumentResult{Err: store.ErrQuota}, nil
		}
	}
	if w.OutboxLimit > 0 && o.retained >= w.OutboxLimit {
		return store.DocumentResult{Err: store.ErrOutboxFull}, nil
	}
	version++
	var body []byte
	if !w.Delete {
		body = w.Body
	}
	hash := model.ChangeHash(w.OrgID, w.AppID, w.DocID, version, body)
	ev, err := model.MarshalEvent(model.CdcEvent{
		OrgID: w.OrgID, AppID: w.AppID, DocumentID: w.DocID, ChangeHash: hash,
		ActorID: w.ActorID, TimestampMs: w.TimestampMs, Patches: patches, Op: op,
	})
	if err != nil {
		return store.DocumentResult{}, err
	}
	switch {
	case w.Delete:
		f.docCount--
		f.delta--
	case !live:
		f.docCount++
		f.delta++
	}
	if d == nil {
		d = &docState{}
		docs[k] = d
	}
	d.body, d.deleted, d.version, d.hash, d.updatedAt, d.dirty = body, w.Delete, version, hash, w.TimestampMs, true
	d.keyCount = keyCount(body)
	o.lastSeq++
	o.retained++
	ob.orgs = append(ob.orgs, w.OrgID)
	ob.seqs = append(ob.seqs, o.lastSeq)
	ob.created = append(ob.created, int64(w.TimestampMs))
	ob.events = append(ob.events, ev)
	return store.DocumentResult{Changed: true, Version: version, ChangeHash: hash, Seq: o.lastSeq}, nil
}

// keyCount is the number of top-level keys of a JSON object (0 otherwise).
func keyCount(body []byte) int64 { return int64(model.ObjectKeyCount(body)) }

// flush writes the batch's outcome with four array statements and commits,
// all in one pipelined round trip.
func flush(ctx context.Context, c *pgx.Conn, orgs map[string]*orgState, forms map[formKey]*formState,
	docs map[docKey]*docState, docOrder []docKey, ob *outboxRows) error {
	var (
		o, a, id, hash         []string
		body                   [][]byte
		deleted                []bool
		version, updated, keys []int64
	)
	for _, k := range docOrder {
		d := docs[k]
		if d == nil || !d.dirty {
			continue
		}
		o, a, id, hash = append(o, k.org), append(a, k.app), append(id, k.doc), append(hash, d.hash)
		body, deleted = append(body, d.body), append(deleted, d.deleted)
		version, updated, keys = append(version, int64(d.version)), append(updated, int64(d.updatedAt)), append(keys, d.keyCount)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO documents (org_id, app_id, doc_id, body, deleted, version, change_hash, updated_at, key_count)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bool[], $6::int8[], $7::text[], $8::int8[], $9::int8[])
		ON CONFLICT (org_id, app_id, doc_id) DO UPDATE SET body = EXCLUDED.body, deleted = EXCLUDED.deleted,
			version = EXCLUDED.version, change_hash = EXCLUDED.change_hash, updated_at = EXCLUDED.updated_at,
			key_count = EXCLUDED.key_count`,
		o, a, id, body, deleted, version, hash, updated, keys)
	b.Queue(`INSERT INTO outbox (org_id, seq, created_at, event)
		SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bytea[])`,
		ob.orgs, ob.seqs, ob.created, ob.events)
	var cOrgs []string
	var cSeqs []int64
	for id, st := range orgs {
		if st.lastSeq != st.start {
			cOrgs, cSeqs = append(cOrgs, id), append(cSeqs, st.lastSeq)
		}
	}
	b.Queue(`UPDATE outbox_counters c SET retained = c.retained + (u.s - c.last_seq), last_seq = u.s
		FROM unnest($1::text[], $2::int8[]) u(o, s) WHERE c.org_id = u.o`,
		cOrgs, cSeqs)
	var fo, fa []string
	var fd []int64
	for k, f := range forms {
		if f != nil && f.delta != 0 {
			fo, fa, fd = append(fo, k.org), append(fa, k.app), append(fd, f.delta)
		}
	}
	if len(fo) > 0 {
		b.Queue(`UPDATE formations f SET doc_count = f.doc_count + u.d
			FROM unnest($1::text[], $2::text[], $3::int8[]) u(o, a, d) WHERE f.org_id = u.o AND f.app_id = u.a`,
			fo, fa, fd)
	}
	if len(cOrgs) > 0 {
		// Wakes the replicas' delivery workers at commit (WatchOutbox).
		b.Queue(`SELECT pg_notify('`+outboxChannel+`', o) FROM unnest($1::text[]) o`, cOrgs)
	}
	// COMMIT rides in the same round trip.
	b.Queue("COMMIT")
	br := c.SendBatch(ctx, b)
	defer br.Close()
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return err
	}
	if err := committed(tag); err != nil {
		return err
	}
	return br.Close()
}

// GetDocument reads a live document (a tombstone is not found).
func (s *Store) GetDocument(ctx context.Context, orgID, appID, docID string) (store.Document, error) {
	d := store.Document{OrgID: orgID, AppID: appID, DocID: docID}
	err := s.pool.QueryRow(ctx, `SELECT body, version, change_hash, updated_at FROM documents
		WHERE org_id = $1 AND app_id = $2 AND doc_id = $3 AND NOT deleted`, orgID, appID, docID).
		Scan(&d.Body, &d.Version, &d.ChangeHash, &d.UpdatedAt)
	return d, one(err, store.ErrNotFound)
}

// ListDocuments summarises a formation's live documents by doc_id.
func (s *Store) ListDocuments(ctx context.Context, orgID, appID string) ([]model.DocumentSummary, error) {
	rows, _ := s.pool.Query(ctx, `SELECT doc_id, key_count, updated_at, version, change_hash FROM documents
		WHERE org_id = $1 AND app_id = $2 AND NOT deleted ORDER BY doc_id`, orgID, appID)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (model.DocumentSummary, error) {
		var d model.DocumentSummary
		return d, r.Scan(&d.DocID, &d.KeyCount, &d.LastModified, &d.Version, &d.ChangeHash)
	})
}

// AppendEvent appends an event outside any document in one statement: the
// counter row's lock is held until the statement's implicit commit, which
// keeps seq order equal to commit order as in WriteDocuments. The org row is
// key-share locked first (the UPDATE's WHERE needs it before it scans), in
// the order WriteDocuments uses, so a concurrent DeleteOrg cannot deadlock
// with it.
func (s *Store) AppendEvent(ctx context.Context, ev model.CdcEvent) (int64, error) {
	raw, err := model.MarshalEvent(ev)
	if err != nil {
		return 0, err
	}
	var seq int64
	err = s.pool.QueryRow(ctx, `WITH o AS (SELECT org_id FROM orgs WHERE org_id = $1 FOR KEY SHARE),
		c AS (UPDATE outbox_counters SET last_seq = last_seq + 1, retained = retained + 1
			WHERE org_id = (SELECT org_id FROM o) RETURNING last_seq),
		i AS (INSERT INTO outbox (org_id, seq, created_at, event) SELECT $1, last_seq, $2, $3 FROM c RETURNING seq)
		SELECT seq FROM i, (SELECT pg_notify('`+outboxChannel+`', $1)) n`,
		ev.OrgID, ev.TimestampMs, raw).Scan(&seq)
	return seq, one(err, store.ErrOrgNotFound)
}
