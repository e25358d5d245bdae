// Package sqlite is the embedded store backend: one SQLite file in WAL mode,
// opened through modernc.org/sqlite (pure Go, no cgo).
//
// All writes go through a single connection, so they are serialised in Go
// rather than by SQLite's lock: no SQLITE_BUSY under load, check-then-write
// transactions are atomic, and the outbox's AUTOINCREMENT seq is commit
// order. Reads use a separate pool of query-only connections that see the
// last committed snapshot and never wait for the writer.
//
// Durability: synchronous=FULL is the default, so a write acknowledged to a
// client (an enrollment, a document change and its outbox row) survives
// power loss, which store-and-forward CDC at the edge relies on. NORMAL in
// WAL mode can lose the last commits on power loss (not on a process crash).
// Measured on the project's shared 2-core VM (ext4 on virtio, other jobs
// running, so expect ±50%), FULL vs NORMAL per call: WriteDocuments of one
// document 3.0–3.9 ms vs 0.23 ms; a batch of 64 documents 10–14 ms vs
// 5–6.5 ms; Enroll 1.8 ms vs 0.7–0.9 ms. The fsync dominates, and one fsync
// covers a whole WriteDocuments batch, so batching document ingest (group
// commit) recovers most of the cost: ~150–210 µs per document in a batch of
// 64 against ~3 ms alone. FULL stays the default for that reason.
//
// Rate limiting: approvals are also counted in per-minute buckets, so the
// sliding-hour check reads at most ~60 bucket rows plus the partial minute
// at the window's edge. With 200,000 approvals in the window an enrollment
// took 1.1 ms with buckets against 30 ms with a plain index range count.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	batching "github.com/defenseunicorns/peat-gateway/core/internal/batch"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store implements store.Store on one SQLite file.
type Store struct {
	w  *sql.DB   // the writer's pool, capped at one connection
	wc *sql.Conn // that connection, held for the store's life
	r  *sql.DB   // read pool

	// wmu serialises write transactions and guards wstmts and closed.
	// Statements are prepared on wc itself: preparing through w while a
	// transaction holds its only connection would wait forever.
	wmu    sync.Mutex
	wstmts map[string]*sql.Stmt
	closed bool
	// peerFull holds, per formation, when an exact peer count last found it
	// full (peers.go).
	peerFull map[[2]string]uint64
	// ratePruned holds, per org, the cutoff minute of the last prune of its
	// rate buckets, so Enroll deletes old buckets once a minute, not per call.
	ratePruned map[string]int64
	// enrollBatches counts the enrollment batches committed (tests).
	enrollBatches int
	// ecache is enrollBatch's view of the rows it checks (see enrollCache),
	// dcache WriteDocuments' view of documents and their counters (docCache).
	ecache     enrollCache
	dcache     docCache
	noDocCache bool // tests: every WriteDocuments reads the rows
	// dataVersion is the writer's last PRAGMA data_version, which moves
	// only when another process commits to the file.
	dataVersion int64

	// ck is the checkpointer's connection.
	ck             *sql.DB
	ckStop, ckDone chan struct{}

	// wq feeds the group committer; wqMu guards sends against Close.
	wq       chan *writeOp
	wqMu     sync.RWMutex
	wqClosed bool
	wqDone   chan struct{}

	rmu    sync.Mutex
	rstmts map[string]*sql.Stmt

	// rateByIndex makes the rate limiter count audit rows instead of
	// summing minute buckets; kept only so benchmarks can compare the two.
	rateByIndex bool
	// pruneChunk bounds the rows Prune deletes per org per transaction.
	pruneChunk int
}

var _ store.Store = (*Store)(nil)

type config struct {
	readers     int
	synchronous string
	busyMs      int
	rateByIndex bool
	pruneChunk  int
}

// Option tunes Open.
type Option func(*config)

// WithReaders sets the size of the read connection pool (default 4).
func WithReaders(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.readers = n
		}
	}
}

// WithSynchronous sets PRAGMA synchronous: "FULL" (default) fsyncs the WAL at
// every commit, so an acknowledged write survives power loss; "NORMAL" only
// survives a process crash and is offered for benchmarks and throwaway data.
func WithSynchronous(mode string) Option {
	return func(c *config) { c.synchronous = strings.ToUpper(mode) }
}

// WithBusyTimeout sets how long a connection waits on a lock held by another
// process (e.g. a backup tool) before failing; our own writes never contend.
func WithBusyTimeout(ms int) Option {
	return func(c *config) { c.busyMs = ms }
}

// Open opens (creating if needed) the database at path and applies pending
// migrations.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := config{readers: 4, synchronous: "FULL", busyMs: 10000, pruneChunk: 5000}
	for _, o := range opts {
		o(&cfg)
	}
	switch cfg.synchronous {
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("sqlite: unknown synchronous mode %q", cfg.synchronous)
	}
	pragmas := func(extra ...string) string {
		q := url.Values{}
		for _, p := range append([]string{
			"foreign_keys(1)",
			"busy_timeout(" + strconv.Itoa(cfg.busyMs) + ")",
			"journal_mode(WAL)",
			"synchronous(" + cfg.synchronous + ")",
		}, extra...) {
			q.Add("_pragma", p)
		}
		return q.Encode()
	}
	// Writer only: temp_store(MEMORY) keeps the statement journal each group
	// member's SAVEPOINT writes in memory; on disk it cost a write syscall
	// per page (about a fifth of the writer's CPU with many enrollments per
	// group). wal_autocheckpoint(10000) (~40 MB of WAL, default 1000)
	// checkpoints a tenth as often: each checkpoint runs inside some
	// writer's COMMIT and, with synchronous=FULL, fsyncs the database file,
	// and the hot pages every commit rewrites are copied back once per
	// checkpoint, so fewer checkpoints is less work per write (+15–20%
	// end to end for enroll and cdc-accept). Durability is unchanged: a
	// commit is durable once its WAL frames are fsynced.
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas("temp_store(MEMORY)", "wal_autocheckpoint("+strconv.Itoa(4*checkpointPages)+")"))
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	wc, err := w.Conn(ctx)
	if err != nil {
		w.Close()
		return nil, err
	}
	s := &Store{w: w, wc: wc, wstmts: map[string]*sql.Stmt{}, ratePruned: map[string]int64{}, peerFull: map[[2]string]uint64{}, rstmts: map[string]*sql.Stmt{},
		rateByIndex: cfg.rateByIndex, pruneChunk: cfg.pruneChunk,
		wq: make(chan *writeOp, 4*maxGroup), wqDone: make(chan struct{})}
	go s.committer()
	r, err := sql.Open("sqlite", "file:"+path+"?"+pragmas("query_only(1)"))
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(cfg.readers)
	r.SetMaxIdleConns(cfg.readers)
	r.SetConnMaxIdleTime(0)
	s.r = r
	if err := r.PingContext(ctx); err != nil {
		s.Close()
		return nil, err
	}
	ck, err := sql.Open("sqlite", "file:"+path+"?"+pragmas())
	if err != nil {
		s.Close()
		return nil, err
	}
	ck.SetMaxOpenConns(1)
	s.ck, s.ckStop, s.ckDone = ck, make(chan struct{}), make(chan struct{})
	go s.checkpointer()
	return s, nil
}

// checkpointPages bounds the WAL between the checkpointer's rounds: the
// writer's own automatic checkpoint starts at four times that, as a backstop
// should the checkpointer fall behind.
const checkpointPages = 4000

// checkpointer runs PASSIVE checkpoints from its own connection, so the
// writer never stops to copy the WAL into the database file and fsync it
// (tens of milliseconds for a few thousand pages, during which every queued
// write would wait). PASSIVE never blocks the writer or readers; frames a
// reader still needs are left for the next round.
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.ckStop:
			return
		case <-t.C:
		}
		// A checkpoint with nothing to copy is a cheap no-op; one that fails
		// leaves the frames to the next round or, at worst, to the writer's
		// backstop, with nothing lost either way.
		var busy, log, done int64
		_ = s.ck.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done)
	}
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own transaction with its record.
func migrate(ctx context.Context, w *sql.DB) error {
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')))`); err != nil {
		return fmt.Errorf("sqlite: schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("sqlite: migration %s is not named NNNN_name.sql", base)
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil {
			tx.Rollback()
			return err
		}
		if n > 0 {
			tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name) VALUES (?, ?)`, v, base); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", base, err)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	return int(v.Int64), err
}

// Ping checks the writer and the read pool answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.wc.PingContext(ctx); err != nil {
		return err
	}
	return s.r.PingContext(ctx)
}

// Close waits for the write in progress, then closes statements and pools;
// database/sql lets in-flight reads finish before the read pool closes.
func (s *Store) Close() error {
	s.wqMu.Lock()
	if !s.wqClosed {
		s.wqClosed = true
		close(s.wq)
	}
	s.wqMu.Unlock()
	<-s.wqDone
	if s.ckStop != nil {
		close(s.ckStop)
		<-s.ckDone
		s.ck.Close()
		s.ckStop = nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for k, st := range s.wstmts {
		errs = append(errs, st.Close())
		delete(s.wstmts, k)
	}
	s.rmu.Lock()
	for k, st := range s.rstmts {
		errs = append(errs, st.Close())
		delete(s.rstmts, k)
	}
	s.rmu.Unlock()
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.wc.Close(), s.w.Close())
	return errors.Join(errs...)
}

// rstmt returns the cached read statement for query, preparing it once;
// database/sql re-prepares it transparently on each pool connection.
func (s *Store) rstmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if st, ok := s.rstmts[query]; ok {
		return st, nil
	}
	st, err := s.r.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	s.rstmts[query] = st
	return st, nil
}

// rows runs a read-only query on the read pool.
func (s *Store) rows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.rstmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// row runs a single-row query on the read pool.
func (s *Store) row(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.rstmt(ctx, query)
	if err != nil {
		// sql.Row carries no constructor for an error; run unprepared so the
		// error surfaces at Scan.
		return s.r.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// txn is a write transaction on the writer connection; the caller holds wmu.
type txn struct {
	s   *Store
	ctx context.Context
}

// st returns the writer's cached statement for query, prepared once on the
// writer connection and reused by every later transaction.
func (t *txn) st(query string) (*sql.Stmt, error) {
	return t.s.wst(t.ctx, query)
}

// wst returns the writer's cached statement for query; the caller holds wmu.
func (s *Store) wst(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.wstmts[query]; ok {
		return st, nil
	}
	st, err := s.wc.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	s.wstmts[query] = st
	return st, nil
}

// ctl runs a transaction-control statement (BEGIN, SAVEPOINT, ...) on the
// writer through a cached prepared statement, so the committer does not
// parse it again for every group member; the caller holds wmu.
func (s *Store) ctl(query string) error {
	st, err := s.wst(context.Background(), query)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(context.Background())
	return err
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	st, err := t.st(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(t.ctx, args...)
}

// affected runs exec and returns the number of rows changed.
func (t *txn) affected(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *txn) query(query string, args ...any) (*sql.Rows, error) {
	st, err := t.st(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(t.ctx, args...)
}

func (t *txn) row(query string, args ...any) *sql.Row {
	st, err := t.st(query)
	if err != nil {
		return t.s.wc.QueryRowContext(t.ctx, query, args...)
	}
	return st.QueryRowContext(t.ctx, args...)
}

// exists reports whether query returns a row.
func (t *txn) exists(query string, args ...any) (bool, error) {
	var one int
	err := t.row(query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// errClosed is returned by writes after Close.
var errClosed = errors.New("sqlite: store closed")

// write runs fn in a write transaction and returns once that transaction is
// committed (durably, with synchronous=FULL) or fn's changes are rolled back.
//
// Writes are group-committed: concurrent callers queue, and one committer
// runs up to maxGroup of them in a single transaction, each inside its own
// SAVEPOINT so a failing fn undoes only its own changes. One fsync then
// covers the whole group, which is what lets a single SQLite writer keep up
// with thousands of enrollments or formation creates a second. Callers see
// exactly the semantics of one transaction each: fns run one after another
// in queue order and every later fn sees the earlier ones' writes.
//
// fn runs with a context that ignores cancellation: cancelling a statement
// interrupts SQLite, which rolls back the whole transaction and with it the
// other callers' work. A caller cancelled before its turn is skipped; one
// cancelled while its fn runs has its savepoint rolled back.
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	return s.writeOp(ctx, 0, nil, fn)
}

// writeOp is write for a fn that leaves the caches in keeps valid, with an
// optional batchable form of fn (see enrollBatch).
func (s *Store) writeOp(ctx context.Context, keeps uint8, eop *enrollOp, fn func(t *txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), enroll: eop, keeps: keeps}
	s.wqMu.RLock()
	if s.wqClosed {
		s.wqMu.RUnlock()
		return errClosed
	}
	s.wq <- op
	s.wqMu.RUnlock()
	return <-op.done
}

// maxGroup bounds how many writes share one transaction, so one group never
// holds the writer for long.
const maxGroup = 256

type writeOp struct {
	ctx  context.Context
	fn   func(t *txn) error
	done chan error
	err  error
	// enroll, when set, lets consecutive enrollments of a group be decided
	// and written together (enrollBatch); fn is the same write on its own.
	enroll *enrollOp
	// keeps names the writer caches fn leaves valid (keepEnroll,
	// keepDocs); every other cache is dropped before fn runs.
	keeps uint8
}

// Writer caches a write may leave valid (writeOp.keeps).
const (
	keepEnroll uint8 = 1 << iota // enrollCache
	keepDocs                     // docCache
)

// invalidate drops the caches a write does not keep; the caller holds wmu.
func (s *Store) invalidate(keeps uint8) {
	if keeps&keepEnroll == 0 {
		s.ecache.clear()
	}
	if keeps&keepDocs == 0 {
		s.dcache.clear()
	}
}

// clearCaches drops every writer cache: after a rollback they may hold
// effects that were undone. The caller holds wmu.
func (s *Store) clearCaches() { s.invalidate(0) }

// committer drains the write queue until it is closed.
func (s *Store) committer() {
	defer close(s.wqDone)
	batch := make([]*writeOp, 0, maxGroup)
	for op := range s.wq {
		batch = batching.Drain(s.wq, append(batch[:0], op), maxGroup)
		s.commitGroup(batch)
		for _, o := range batch {
			o.done <- o.err
		}
	}
}

// commitGroup runs one group; every op's err is set on return.
func (s *Store) commitGroup(batch []*writeOp) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		for _, o := range batch {
			o.err = errClosed
		}
		return
	}
	if len(batch) == 1 && batch[0].enroll == nil {
		batch[0].err = s.runOne(batch[0])
		return
	}
	if err := s.ctl("BEGIN IMMEDIATE"); err != nil {
		for _, o := range batch {
			o.err = err
		}
		return
	}
	// Holding the write lock, so nobody can commit between the check and
	// this group's reads.
	s.checkExternalWrites()
	ran, oneByOne := 0, 0
	for i := 0; i < len(batch); i++ {
		o := batch[i]
		if err := o.ctx.Err(); err != nil {
			o.err = err
			continue
		}
		if o.enroll != nil && i >= oneByOne {
			j := i + 1
			for j < len(batch) && batch[j].enroll != nil {
				j++
			}
			switch ok, fatal := s.runEnrollBatch(batch[i:j]); {
			case fatal:
				s.abortGroup(batch)
				return
			case ok:
				i = j - 1
				continue
			}
			// Declined: the run's ops go one by one below.
			oneByOne = j
		}
		if err := s.ctl("SAVEPOINT g"); err != nil {
			s.abortGroup(batch)
			return
		}
		s.invalidate(o.keeps)
		err := o.fn(&txn{s: s, ctx: context.WithoutCancel(o.ctx)})
		if err == nil && o.ctx.Err() != nil {
			err = o.ctx.Err()
		}
		if err != nil {
			o.err = mapErr(err)
			s.clearCaches()
			if rerr := s.ctl("ROLLBACK TO g"); rerr != nil {
				// SQLite already rolled the whole transaction back (an I/O
				// error, say): nothing of the group survives, so retry the
				// others one by one.
				s.abortGroup(batch)
				return
			}
		} else {
			ran++
		}
		if err := s.ctl("RELEASE g"); err != nil {
			s.abortGroup(batch)
			return
		}
	}
	if err := s.ctl("COMMIT"); err != nil {
		s.ctl("ROLLBACK")
		s.clearCaches()
		for _, o := range batch {
			if o.err == nil {
				o.err = mapErr(err)
			}
		}
	}
}

// runEnrollBatch runs consecutive enrollment ops through enrollBatch inside
// one savepoint, setting each op's err. ok is false when the batch was
// declined or failed and rolled back (the ops are then untouched, to be run
// one by one); fatal when the group transaction itself is gone.
func (s *Store) runEnrollBatch(ops []*writeOp) (ok, fatal bool) {
	live := make([]*writeOp, 0, len(ops))
	eops := make([]*enrollOp, 0, len(ops))
	for _, o := range ops {
		if err := o.ctx.Err(); err != nil {
			// Skipped, as a cancelled op is before its turn. One cancelled
			// later is committed with the rest and reported as such.
			o.err = err
			continue
		}
		live = append(live, o)
		eops = append(eops, o.enroll)
	}
	if err := s.ctl("SAVEPOINT g"); err != nil {
		return false, true
	}
	res, err := (&txn{s: s, ctx: context.Background()}).enrollBatch(eops)
	if err != nil {
		s.clearCaches()
		if s.ctl("ROLLBACK TO g") != nil || s.ctl("RELEASE g") != nil {
			return false, true
		}
		return false, false
	}
	if err := s.ctl("RELEASE g"); err != nil {
		return false, true
	}
	s.enrollBatches++
	for i, o := range live {
		o.err = res[i]
	}
	return true, false
}

// abortGroup rolls back a broken group transaction and reruns each op that
// had not failed on its own, in its own transaction, so one fault cannot
// fail its neighbours.
func (s *Store) abortGroup(batch []*writeOp) {
	s.ctl("ROLLBACK")
	s.clearCaches()
	for _, o := range batch {
		if o.err == nil {
			o.err = s.runOne(o)
		}
	}
}

// checkExternalWrites drops the writer caches if another process wrote
// to the database since the last group; the caller holds wmu.
func (s *Store) checkExternalWrites() {
	var v int64
	st, err := s.wst(context.Background(), "PRAGMA data_version")
	if err == nil {
		err = st.QueryRowContext(context.Background()).Scan(&v)
	}
	if err != nil || v != s.dataVersion {
		s.clearCaches()
		s.dataVersion = v
	}
}

// runOne runs a single op in its own transaction.
func (s *Store) runOne(o *writeOp) error {
	if err := o.ctx.Err(); err != nil {
		return err
	}
	if err := s.ctl("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	s.checkExternalWrites()
	s.invalidate(o.keeps)
	err := o.fn(&txn{s: s, ctx: context.WithoutCancel(o.ctx)})
	if err == nil && o.ctx.Err() != nil {
		err = o.ctx.Err()
	}
	if err != nil {
		s.clearCaches()
		if rerr := s.ctl("ROLLBACK"); rerr != nil {
			return errors.Join(mapErr(err), rerr)
		}
		return mapErr(err)
	}
	if err := s.ctl("COMMIT"); err != nil {
		s.ctl("ROLLBACK")
		s.clearCaches()
		return mapErr(err)
	}
	return nil
}

// mapErr turns constraint violations that slipped past explicit checks into
// the contract's sentinels.
func mapErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("%w: %v", store.ErrExists, err)
		}
	}
	return err
}

// orgExists is the common first check of every per-org create.
func (t *txn) orgExists(orgID string) error {
	ok, err := t.exists(`SELECT 1 FROM orgs WHERE org_id = ?`, orgID)
	if err != nil {
		return err
	}
	if !ok {
		return store.ErrOrgNotFound
	}
	return nil
}

// orgExistsRead is orgExists on the read pool, for listings.
func (s *Store) orgExistsRead(ctx context.Context, orgID string) error {
	var one int
	err := s.row(ctx, `SELECT 1 FROM orgs WHERE org_id = ?`, orgID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrOrgNotFound
	}
	return err
}

// notFound maps sql.ErrNoRows to the given sentinel.
func notFound(err, sentinel error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return sentinel
	}
	return err
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
