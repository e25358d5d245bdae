// Package postgres is the store backend shared by several gateway replicas.
//
// Every check-then-write runs in one transaction whose first statement locks
// the row that guards the limit (the org row for per-org quotas, the org's
// outbox counter for document writes), so replicas on one database serialise
// exactly where they must and nowhere else. Reads never lock.
//
// The schema is versioned: the files in migrations/ are applied in order at
// Open, under a session advisory lock, so replicas starting together migrate
// exactly once.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/defenseunicorns/peat-gateway/core/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the pg_advisory_lock key that serialises migrations
// across replicas ("peatmigr" as ASCII, so it is unlikely to collide with a
// key another application chose on a shared server).
const migrationLockKey int64 = 0x706561746d696772

// Store implements store.Store on PostgreSQL.
type Store struct {
	pool  *pgxpool.Pool
	eq    *enrollQueue
	peers peerGuard
}

var _ store.Store = (*Store)(nil)

type config struct {
	maxConns int32
	tune     []func(*pgxpool.Config)
}

// Option adjusts Open.
type Option func(*config)

// WithMaxConns bounds the connection pool (default: pgxpool's, max(4, CPUs)).
func WithMaxConns(n int32) Option { return func(c *config) { c.maxConns = n } }

// WithPoolConfig lets the caller adjust the parsed pool configuration (TLS,
// tracing, timeouts) before the pool is created.
func WithPoolConfig(f func(*pgxpool.Config)) Option {
	return func(c *config) { c.tune = append(c.tune, f) }
}

// Open connects to url (a postgres:// URL or key=value DSN), applies any
// pending migrations and returns the store.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	if cfg.maxConns > 0 {
		pc.MaxConns = cfg.maxConns
	}
	for _, f := range cfg.tune {
		f(pc)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.startEnrollRunner()
	return s, nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close waits for in-flight calls to release their connections, then closes
// the pool.
func (s *Store) Close() error {
	s.stopEnrollRunner()
	s.pool.Close()
	return nil
}

// Pool exposes the pool for components that share the database (leader
// election, SKIP LOCKED work claiming).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("postgres: migration %q is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("postgres: two migrations numbered %d", ms[i].version)
		}
	}
	return ms, nil
}

// migrate applies pending migrations. A session-level advisory lock (not a
// transaction-level one) is held across all of them so that a replica that
// starts while another is migrating waits, then finds nothing left to do.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		conn.Release()
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	err = applyMigrations(ctx, conn.Conn(), ms)
	if _, uerr := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrationLockKey); uerr != nil {
		// The lock is tied to the session: closing it is the sure release.
		_ = conn.Hijack().Close(context.Background())
		return errors.Join(err, fmt.Errorf("postgres: migration unlock: %w", uerr))
	}
	conn.Release()
	return err
}

func applyMigrations(ctx context.Context, conn *pgx.Conn, ms []migration) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("postgres: read schema_migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("postgres: read schema_migrations: %w", err)
	}
	done := map[int]bool{}
	for _, v := range applied {
		done[v] = true
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		// Each file and its bookkeeping row commit together: a crash leaves
		// the schema at a version boundary.
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// Simple protocol so that a file may hold several statements.
			if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.name, err)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration (for diagnostics).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// PostgreSQL error codes the store maps to sentinels.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mapErr turns constraint violations into sentinels; fk is the sentinel a
// foreign-key failure means for this call (the missing parent).
func mapErr(err error, fk error) error {
	switch pgCode(err) {
	case codeUniqueViolation:
		return fmt.Errorf("%w: %v", store.ErrExists, err)
	case codeForeignKeyViolation:
		if fk != nil {
			return fk
		}
	}
	return err
}

// one reports a missing row as notFound.
func one(err error, notFound error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound
	}
	return err
}

// orgExists distinguishes a missing org from a missing child, only on
// error paths so the common path stays one round trip.
func (s *Store) orgExists(ctx context.Context, q querier, orgID string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM orgs WHERE org_id = $1)", orgID).Scan(&ok)
	return ok, err
}

// missingParent returns ErrOrgNotFound when the org is gone, else ErrFormationNotFound.
func (s *Store) missingParent(ctx context.Context, q querier, orgID string) error {
	ok, err := s.orgExists(ctx, q, orgID)
	if err != nil {
		return err
	}
	if !ok {
		return store.ErrOrgNotFound
	}
	return store.ErrFormationNotFound
}

// querier is what pool, conn and tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// listUnderOrg runs an existence check of the org and a listing in one
// round trip (a pipelined batch in one implicit transaction) and returns
// ErrOrgNotFound when the org is missing.
func listUnderOrg[T any](ctx context.Context, s *Store, orgID, sql string, args []any, scan pgx.RowToFunc[T]) ([]T, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT EXISTS (SELECT 1 FROM orgs WHERE org_id = $1)", orgID)
	b.Queue(sql, args...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	var ok bool
	if err := br.QueryRow().Scan(&ok); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, store.ErrOrgNotFound
	}
	return out, br.Close()
}

// txn runs f on one connection inside a transaction and commits it when f
// returns nil. f must open the transaction itself by sending a batch made
// with beginBatch: BEGIN then travels in the same round trip as the first
// statements, so a check-then-write call costs two round trips (that batch
// and COMMIT) instead of three. f may also end the transaction by queuing
// COMMIT in its last batch (see committed). Whatever happens, the
// connection goes back to the pool outside any transaction.
func (s *Store) txn(ctx context.Context, f func(c *pgx.Conn) error) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	c := pc.Conn()
	defer func() {
		if c.PgConn().TxStatus() != 'I' && !c.IsClosed() {
			// An explicit ROLLBACK keeps the connection; refused calls (quota,
			// rate limit) are common and should not cost a reconnect.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, rerr := c.Exec(rctx, "ROLLBACK")
			cancel()
			if rerr != nil {
				_ = pc.Hijack().Close(context.Background())
				return
			}
		}
		pc.Release()
	}()
	if err := f(c); err != nil {
		return err
	}
	if c.PgConn().TxStatus() == 'I' {
		return nil // f committed in its last batch
	}
	tag, err := c.Exec(ctx, "COMMIT")
	if err != nil {
		return err
	}
	return committed(tag)
}

// committed checks a COMMIT's tag: PostgreSQL answers COMMIT to a failed
// transaction with ROLLBACK and no error.
func committed(tag pgconn.CommandTag) error {
	if tag.String() != "COMMIT" {
		return errors.New("postgres: transaction rolled back at commit")
	}
	return nil
}

// beginBatch returns a batch that opens a transaction.
func beginBatch() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	return b
}

// sendBegin sends a beginBatch batch and consumes the BEGIN's result.
func sendBegin(ctx context.Context, c *pgx.Conn, b *pgx.Batch) (pgx.BatchResults, error) {
	br := c.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	return br, nil
}
