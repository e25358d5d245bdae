// Package sqlite is the embedded store backend: one SQLite file in WAL mode,
// opened through modernc.org/sqlite (pure Go, no cgo).
//
// All writes go through a single connection, so they are serialised in Go
// rather than by SQLite's lock: no SQLITE_BUSY under load, check-then-write
// transactions are atomic, and the outbox's AUTOINCREMENT seq is commit
// order. Reads use a separate pool of query-only connections that see the
// last committed snapshot and never wait for the writer.
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

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

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

	rmu    sync.Mutex
	rstmts map[string]*sql.Stmt

	// rateByIndex makes the rate limiter count audit rows instead of
	// summing minute buckets; kept only so benchmarks can compare the two.
	rateByIndex bool
}

var _ store.Store = (*Store)(nil)

type config struct {
	readers     int
	synchronous string
	busyMs      int
	rateByIndex bool
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
	cfg := config{readers: 4, synchronous: "FULL", busyMs: 10000}
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
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas())
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
	s := &Store{w: w, wc: wc, wstmts: map[string]*sql.Stmt{}, rstmts: map[string]*sql.Stmt{}, rateByIndex: cfg.rateByIndex}
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
	return s, nil
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
	if st, ok := t.s.wstmts[query]; ok {
		return st, nil
	}
	st, err := t.s.wc.PrepareContext(t.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	t.s.wstmts[query] = st
	return st, nil
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

// write runs fn in one write transaction, committing when it returns nil.
// BEGIN IMMEDIATE takes SQLite's write lock up front, so a transaction that
// reads then writes never finds its snapshot stale (only matters if another
// process opens the file; within this process wmu already serialises).
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return errClosed
	}
	if _, err := s.wc.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if err := fn(&txn{s: s, ctx: ctx}); err != nil {
		// A cancelled ctx must not stop the rollback.
		if _, rerr := s.wc.ExecContext(context.Background(), "ROLLBACK"); rerr != nil {
			return errors.Join(mapErr(err), rerr)
		}
		return mapErr(err)
	}
	if _, err := s.wc.ExecContext(context.Background(), "COMMIT"); err != nil {
		s.wc.ExecContext(context.Background(), "ROLLBACK")
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
