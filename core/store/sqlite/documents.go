package sqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// deletedPatch is a delete event's patches, as the reference emits it.
var deletedPatch = json.RawMessage(`{"_deleted":true}`)

// WriteDocuments applies the batch in one transaction, so one fsync covers
// every write in it (group commit). A write that fails a check gets its own
// Err and changes nothing; the others still commit.
//
// The single writer's time bounds the ingest rate, so the batch runs a
// handful of statements rather than three per write: the current state of
// every document in one read, then the outbox rows and the new document
// states as multi-row INSERTs (see chunks). Everything that does not depend
// on the stored state (key counts, the event's JSON around its change_hash)
// is prepared beforehand in the caller's goroutine.
func (s *Store) WriteDocuments(ctx context.Context, writes []store.DocumentWrite) ([]store.DocumentResult, error) {
	results := make([]store.DocumentResult, len(writes))
	if len(writes) == 0 {
		return results, nil
	}
	preps := make([]docPrep, len(writes))
	for i := range writes {
		preps[i] = prepareDoc(&writes[i])
	}
	// fn keeps the enrollment cache (it writes nothing enrollment checks)
	// and maintains the documents cache itself.
	err := s.writeOp(ctx, keepEnroll|keepDocs, nil, func(t *txn) error {
		// fn may run again (a broken group is retried op by op): start
		// from nothing each time.
		clear(results)
		if t.s.noDocCache {
			t.s.dcache.clear()
		}
		b := &docBatch{t: t, formations: map[[2]string]*formationState{}, orgs: map[string]*orgState{}}
		if err := b.run(writes, preps, results); err != nil {
			t.s.dcache.clear()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// docPrep is what a write needs that does not depend on the stored state.
type docPrep struct {
	keys int
	// head and tail are the event's JSON before and after the change_hash
	// string's contents, so the event is head + hash + tail.
	head, tail []byte
	err        error
}

// changeHashField is where MarshalEvent puts an empty change_hash. Nothing
// before it can contain `,"` (strings escape their quotes), so the first
// match is the field itself.
var changeHashField = []byte(`,"change_hash":"`)

func prepareDoc(w *store.DocumentWrite) docPrep {
	ev := model.CdcEvent{OrgID: w.OrgID, AppID: w.AppID, DocumentID: w.DocID, ActorID: w.ActorID, TimestampMs: w.TimestampMs}
	var p docPrep
	if w.Delete {
		ev.Patches, ev.Op = deletedPatch, model.OpDelete
	} else {
		ev.Patches, ev.Op = json.RawMessage(w.Body), model.OpUpsert
		p.keys = model.ObjectKeyCount(w.Body)
	}
	raw, err := model.MarshalEvent(ev)
	if err != nil {
		p.err = fmt.Errorf("document %s: %w", w.DocID, err)
		return p
	}
	i := bytes.Index(raw, changeHashField)
	if i < 0 || !bytes.HasPrefix(raw[i+len(changeHashField):], []byte(`"`)) {
		p.err = fmt.Errorf("document %s: unexpected event encoding", w.DocID)
		return p
	}
	i += len(changeHashField)
	p.head, p.tail = raw[:i:i], raw[i:]
	return p
}

// event is the write's event with its change hash.
func (p *docPrep) event(hash string) []byte {
	b := make([]byte, 0, len(p.head)+len(hash)+len(p.tail))
	b = append(b, p.head...)
	b = append(b, hash...)
	return append(b, p.tail...)
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

// docKey names a document.
type docKey struct{ org, app, doc string }

// docState is a document's state as the batch has left it so far.
type docState struct {
	exists  bool   // a row exists (live or a tombstone)
	body    []byte // nil for a tombstone
	version int64
	hash    string
	// set by the batch's changes
	dirty   bool
	keys    int
	updated int64
}

// formation returns the cached state of a formation and its org; load must
// have read it.
func (b *docBatch) formation(orgID, appID string) (*formationState, *orgState) {
	f := b.formations[[2]string{orgID, appID}]
	return f, b.orgs[orgID]
}

const loadFormationsSQL = `SELECT f.org_id, f.app_id, f.status, f.doc_count, o.outbox_rows
	FROM formations f JOIN orgs o ON o.org_id = f.org_id WHERE (f.org_id, f.app_id) IN (VALUES `

// loadFormations reads the formations the writes name, with their orgs'
// outbox counts, in one statement per chunk.
func (b *docBatch) loadFormations(writes []store.DocumentWrite) error {
	c := &b.t.s.dcache
	var keys [][2]string
	for i := range writes {
		k := [2]string{writes[i].OrgID, writes[i].AppID}
		if _, ok := b.formations[k]; !ok {
			cf, fok := c.forms[k]
			co, ook := c.orgs[k[0]]
			if fok && ook {
				b.formations[k] = &formationState{found: true, active: cf.active, docCount: cf.docCount}
				if _, seen := b.orgs[k[0]]; !seen {
					b.orgs[k[0]] = &orgState{outboxRows: co}
				}
				continue
			}
			b.formations[k] = &formationState{}
			keys = append(keys, k)
		}
	}
	return chunks(len(keys), func(off, n int) error {
		args := make([]any, 0, 2*n)
		for _, k := range keys[off : off+n] {
			args = append(args, k[0], k[1])
		}
		rows, err := b.t.query(rowsSQL(loadFormationsSQL, "(?,?)", ")", n), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k [2]string
			var status string
			var docCount, outboxRows int64
			if err := rows.Scan(&k[0], &k[1], &status, &docCount, &outboxRows); err != nil {
				return err
			}
			f := b.formations[k]
			if f == nil {
				continue
			}
			f.found, f.active, f.docCount = true, model.FormationStatus(status) == model.FormationActive, docCount
			if _, seen := b.orgs[k[0]]; !seen {
				b.orgs[k[0]] = &orgState{outboxRows: outboxRows}
			}
		}
		return rows.Err()
	})
}

const (
	flushFormationsSQL = `UPDATE formations SET doc_count = doc_count + v.column3 FROM (VALUES `
	flushFormationsEnd = `) AS v WHERE formations.org_id = v.column1 AND formations.app_id = v.column2`
	flushOrgsSQL       = `UPDATE orgs SET outbox_rows = outbox_rows + v.column2 FROM (VALUES `
	flushOrgsEnd       = `) AS v WHERE orgs.org_id = v.column1`
)

// flush writes the accumulated counter changes.
func (b *docBatch) flush() error {
	var fargs []any
	for key, f := range b.formations {
		if f.delta != 0 {
			fargs = append(fargs, key[0], key[1], f.delta)
		}
	}
	if err := chunks(len(fargs)/3, func(off, n int) error {
		_, err := b.t.exec(rowsSQL(flushFormationsSQL, "(?,?,?)", flushFormationsEnd, n), fargs[3*off:3*(off+n)]...)
		return err
	}); err != nil {
		return err
	}
	var oargs []any
	for orgID, o := range b.orgs {
		if o.delta != 0 {
			oargs = append(oargs, orgID, o.delta)
		}
	}
	return chunks(len(oargs)/2, func(off, n int) error {
		_, err := b.t.exec(rowsSQL(flushOrgsSQL, "(?,?)", flushOrgsEnd, n), oargs[2*off:2*(off+n)]...)
		return err
	})
}

// outboxRow is one event of the batch, in write order.
type outboxRow struct {
	i     int // index of its write
	org   string
	ts    int64
	event []byte
}

// run applies the writes and fills results. A returned error aborts the
// batch; a refused write gets its result's Err instead.
func (b *docBatch) run(writes []store.DocumentWrite, preps []docPrep, results []store.DocumentResult) error {
	// Which writes reach the document checks, and their documents.
	if err := b.loadFormations(writes); err != nil {
		return err
	}
	docs := make(map[docKey]*docState, len(writes))
	var order []docKey // documents in first-touch order
	for i := range writes {
		w := &writes[i]
		f, _ := b.formation(w.OrgID, w.AppID)
		if !f.found || !f.active {
			continue
		}
		k := docKey{w.OrgID, w.AppID, w.DocID}
		if _, ok := docs[k]; !ok {
			docs[k] = &docState{}
			order = append(order, k)
		}
	}
	if err := b.load(order, docs); err != nil {
		return err
	}

	var rows []outboxRow
	for i := range writes {
		w := &writes[i]
		f, o := b.formation(w.OrgID, w.AppID)
		if !f.found {
			results[i] = store.DocumentResult{Err: store.ErrFormationNotFound}
			continue
		}
		if !f.active {
			results[i] = store.DocumentResult{Err: store.ErrSuspended}
			continue
		}
		d := docs[docKey{w.OrgID, w.AppID, w.DocID}]
		live := d.exists && d.body != nil
		if w.Delete {
			if !live {
				results[i] = store.DocumentResult{Err: store.ErrNotFound}
				continue
			}
		} else {
			if live && bytes.Equal(d.body, w.Body) {
				results[i] = store.DocumentResult{Version: uint64(d.version), ChangeHash: d.hash}
				continue
			}
			if !live && f.docCount >= int64(w.DocLimit) {
				results[i] = store.DocumentResult{Err: fmt.Errorf("%w: max_documents_per_formation %d", store.ErrQuota, w.DocLimit)}
				continue
			}
		}
		if w.OutboxLimit > 0 && o.outboxRows >= w.OutboxLimit {
			results[i] = store.DocumentResult{Err: store.ErrOutboxFull}
			continue
		}
		p := &preps[i]
		if p.err != nil {
			results[i] = store.DocumentResult{Err: p.err}
			continue
		}

		newVersion := uint64(d.version) + 1
		delta := int64(0)
		var hash string
		if w.Delete {
			hash = model.ChangeHash(w.OrgID, w.AppID, w.DocID, newVersion, nil)
			d.body, d.keys = nil, 0
			delta = -1
		} else {
			hash = model.ChangeHash(w.OrgID, w.AppID, w.DocID, newVersion, w.Body)
			d.body = w.Body
			if d.body == nil {
				d.body = []byte{}
			}
			d.keys = p.keys
			if !live {
				delta = 1
			}
		}
		d.exists, d.dirty, d.version, d.hash, d.updated = true, true, int64(newVersion), hash, int64(w.TimestampMs)
		f.docCount += delta
		f.delta += delta
		o.outboxRows++
		o.delta++
		rows = append(rows, outboxRow{i: i, org: w.OrgID, ts: int64(w.TimestampMs), event: p.event(hash)})
		results[i] = store.DocumentResult{Changed: true, Version: newVersion, ChangeHash: hash}
	}
	if err := b.insertOutbox(rows, results); err != nil {
		return err
	}
	if err := b.saveDocs(order, docs); err != nil {
		return err
	}
	if err := b.flush(); err != nil {
		return err
	}
	b.remember(order, docs)
	return nil
}

// docCache keeps, across groups, the state WriteDocuments reads before it
// writes: documents (their body, version and change hash) and the counters
// of their formations and orgs. A steady stream of changes to known
// documents then reads nothing. It holds only state its own writes left or
// read, and is cleared whenever anything else could have changed those rows
// (see writeOp.keeps): any other write of this store, a rollback, a commit
// by another process. Bounded: past maxCachedDocs documents or
// maxCachedBytes of bodies it starts over.
type docCache struct {
	docs  map[docKey]cachedDoc
	forms map[[2]string]cachedFormation // found formations only
	orgs  map[string]int64              // outbox_rows
	bytes int
}

type cachedDoc struct {
	body    []byte // nil for a tombstone
	version int64
	hash    string
}

type cachedFormation struct {
	active   bool
	docCount int64
}

const (
	maxCachedDocs  = 200_000
	maxCachedBytes = 64 << 20
)

func (c *docCache) clear() {
	c.docs, c.forms, c.orgs, c.bytes = nil, nil, nil, 0
}

// remember stores what a successful batch read and left; the caller holds
// wmu, and a later rollback clears the cache.
func (b *docBatch) remember(order []docKey, docs map[docKey]*docState) {
	c := &b.t.s.dcache
	if c.docs == nil || len(c.docs)+len(order) > maxCachedDocs || c.bytes > maxCachedBytes {
		c.docs, c.forms, c.orgs, c.bytes = map[docKey]cachedDoc{}, map[[2]string]cachedFormation{}, map[string]int64{}, 0
	}
	for k, f := range b.formations {
		if f.found {
			c.forms[k] = cachedFormation{active: f.active, docCount: f.docCount}
		}
	}
	for org, o := range b.orgs {
		c.orgs[org] = o.outboxRows
	}
	for _, k := range order {
		d := docs[k]
		if !d.exists {
			continue // never stored: nothing to remember
		}
		old, had := c.docs[k]
		body := d.body
		if d.dirty && body != nil {
			// The caller owns the write's body; keep a copy.
			body = bytes.Clone(body)
		}
		if had {
			c.bytes -= len(old.body)
		}
		c.bytes += len(body)
		c.docs[k] = cachedDoc{body: body, version: d.version, hash: d.hash}
	}
}

// chunks splits n rows into runs whose sizes are powers of two up to
// maxChunk, largest first, so a few prepared statements per kind serve
// every batch size.
func chunks(n int, fn func(off, size int) error) error {
	off := 0
	for size := maxChunk; size > 0; size /= 2 {
		for n-off >= size {
			if err := fn(off, size); err != nil {
				return err
			}
			off += size
		}
	}
	return nil
}

const maxChunk = 64

// multiRowSQL caches the statements of each kind and chunk size.
var multiRowSQL sync.Map // string -> string

// rowsSQL is prefix + n copies of tuple joined by commas + suffix.
func rowsSQL(prefix, tuple, suffix string, n int) string {
	key := prefix + "\x00" + strconv.Itoa(n)
	if q, ok := multiRowSQL.Load(key); ok {
		return q.(string)
	}
	var sb strings.Builder
	sb.WriteString(prefix)
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(tuple)
	}
	sb.WriteString(suffix)
	q := sb.String()
	multiRowSQL.Store(key, q)
	return q
}

const (
	loadDocsSQL = `SELECT org_id, app_id, doc_id, body, version, change_hash FROM documents
		WHERE (org_id, app_id, doc_id) IN (VALUES `
	insertOutboxSQL  = `INSERT INTO outbox(org_id, timestamp_ms, event) VALUES `
	saveDocsSQL      = `INSERT INTO documents(org_id, app_id, doc_id, body, key_count, version, change_hash, updated_at) VALUES `
	saveDocsConflict = ` ON CONFLICT (org_id, app_id, doc_id) DO UPDATE SET body = excluded.body, key_count = excluded.key_count,
			version = excluded.version, change_hash = excluded.change_hash, updated_at = excluded.updated_at`
)

// load reads the stored state of the documents in keys, from the cache
// where it has them.
func (b *docBatch) load(all []docKey, docs map[docKey]*docState) error {
	c := &b.t.s.dcache
	keys := all[:0:0]
	for _, k := range all {
		if cd, ok := c.docs[k]; ok {
			d := docs[k]
			d.exists, d.body, d.version, d.hash = true, cd.body, cd.version, cd.hash
			continue
		}
		keys = append(keys, k)
	}
	return chunks(len(keys), func(off, n int) error {
		args := make([]any, 0, 3*n)
		for _, k := range keys[off : off+n] {
			args = append(args, k.org, k.app, k.doc)
		}
		rows, err := b.t.query(rowsSQL(loadDocsSQL, "(?,?,?)", ")", n), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k docKey
			var body []byte
			var version int64
			var hash string
			if err := rows.Scan(&k.org, &k.app, &k.doc, &body, &version, &hash); err != nil {
				return err
			}
			if d := docs[k]; d != nil {
				d.exists, d.body, d.version, d.hash = true, body, version, hash
			}
		}
		return rows.Err()
	})
}

// insertOutbox appends the batch's events in write order and sets each
// change's Seq. seq is the table's AUTOINCREMENT rowid: the rows of one
// INSERT take consecutive values (each is one more than the largest ever,
// and this connection is the only writer), so a chunk's last rowid gives
// every row's seq.
func (b *docBatch) insertOutbox(rows []outboxRow, results []store.DocumentResult) error {
	return chunks(len(rows), func(off, n int) error {
		args := make([]any, 0, 3*n)
		for _, r := range rows[off : off+n] {
			args = append(args, r.org, r.ts, r.event)
		}
		res, err := b.t.exec(rowsSQL(insertOutboxSQL, "(?,?,?)", "", n), args...)
		if err != nil {
			return err
		}
		last, err := res.LastInsertId()
		if err != nil {
			return err
		}
		for j, r := range rows[off : off+n] {
			results[r.i].Seq = last - int64(n-1-j)
		}
		return nil
	})
}

// saveDocs writes the final state of every document the batch changed.
func (b *docBatch) saveDocs(order []docKey, docs map[docKey]*docState) error {
	dirty := order[:0:0]
	for _, k := range order {
		if docs[k].dirty {
			dirty = append(dirty, k)
		}
	}
	return chunks(len(dirty), func(off, n int) error {
		args := make([]any, 0, 8*n)
		for _, k := range dirty[off : off+n] {
			d := docs[k]
			args = append(args, k.org, k.app, k.doc, d.body, d.keys, d.version, d.hash, d.updated)
		}
		_, err := b.t.exec(rowsSQL(saveDocsSQL, "(?,?,?,?,?,?,?,?)", saveDocsConflict, n), args...)
		return err
	})
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
