package cdc

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SinkLocker hands out the exclusive right to deliver one sink, so that
// several gateway replicas sharing one database never deliver the same sink
// at once, and a replica that dies releases its sinks to the others.
// SQLite is single-process and needs none.
type SinkLocker interface {
	// TryLockSink takes the delivery right for sinkID without waiting.
	// ok is false when another replica holds it.
	TryLockSink(ctx context.Context, sinkID string) (l Lease, ok bool, err error)
}

// Lease is a held delivery right.
type Lease interface {
	// Lost is closed when the right is gone without Release (the session
	// holding it died); the worker must stop delivering.
	Lost() <-chan struct{}
	// Release gives the right up. It is idempotent.
	Release()
}

// PGLocker implements SinkLocker with Postgres session advisory locks, all
// held on one dedicated connection per replica (not a pool connection per
// sink, which would exhaust the pool with many sinks). When that session
// dies, Postgres drops its locks, so another replica's next reconcile takes
// the sinks over; this replica notices within HeartbeatInterval through a
// failed ping, and stops its workers.
//
// There is a window of at most one heartbeat in which both replicas may
// deliver the same sink (at-least-once allows the duplicates; the durable
// cursor only ever moves forward).
type PGLocker struct {
	cfg       *pgx.ConnConfig
	heartbeat time.Duration

	mu     sync.Mutex
	conn   *pgx.Conn
	lost   chan struct{} // closed when conn's session is considered dead
	stop   chan struct{}
	closed bool
}

// NewPGLocker returns a locker that dials its own session with cfg.
func NewPGLocker(cfg *pgx.ConnConfig) *PGLocker {
	return &PGLocker{cfg: cfg, heartbeat: time.Second, stop: make(chan struct{})}
}

// NewPGLockerFromPool returns a locker using the pool's connection settings
// (the postgres store exposes its pool through Pool()).
func NewPGLockerFromPool(p *pgxpool.Pool) *PGLocker {
	return NewPGLocker(p.Config().ConnConfig.Copy())
}

// lockKey maps a sink id to an advisory lock key; the prefix keeps it apart
// from keys other code on the same server might use.
func lockKey(sinkID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("peat-gw-cdc-sink:"))
	h.Write([]byte(sinkID))
	return int64(h.Sum64())
}

var errLockerClosed = errors.New("sink locker closed")

// session returns the live connection, dialing one if needed. Call with mu held.
func (l *PGLocker) session(ctx context.Context) (*pgx.Conn, chan struct{}, error) {
	if l.closed {
		return nil, nil, errLockerClosed
	}
	if l.conn != nil {
		return l.conn, l.lost, nil
	}
	c, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, nil, err
	}
	l.conn, l.lost = c, make(chan struct{})
	go l.watch(c, l.lost)
	return c, l.lost, nil
}

// watch pings the session; on failure every lease of the session is lost.
func (l *PGLocker) watch(c *pgx.Conn, lost chan struct{}) {
	t := time.NewTicker(l.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.conn != c {
			l.mu.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.heartbeat*3)
		err := c.Ping(ctx)
		cancel()
		if err != nil {
			l.dropLocked()
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
}

// dropLocked abandons the current session (its locks go with it).
func (l *PGLocker) dropLocked() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = l.conn.Close(ctx)
	cancel()
	close(l.lost)
	l.conn, l.lost = nil, nil
}

// TryLockSink implements SinkLocker.
func (l *PGLocker) TryLockSink(ctx context.Context, sinkID string) (Lease, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, lost, err := l.session(ctx)
	if err != nil {
		return nil, false, err
	}
	key := lockKey(sinkID)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		// The session state is unknown now; start over with a fresh one.
		l.dropLocked()
		return nil, false, err
	}
	if !ok {
		return nil, false, nil
	}
	return &pgLease{l: l, key: key, lost: lost}, true, nil
}

// Close releases every lock (by ending the session).
func (l *PGLocker) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.stop)
	l.dropLocked()
}

type pgLease struct {
	l    *PGLocker
	key  int64
	lost chan struct{}
	once sync.Once
}

func (p *pgLease) Lost() <-chan struct{} { return p.lost }

func (p *pgLease) Release() {
	p.once.Do(func() {
		p.l.mu.Lock()
		defer p.l.mu.Unlock()
		if p.l.lost != p.lost || p.l.conn == nil {
			return // the session that held it is gone, and the lock with it
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := p.l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", p.key); err != nil {
			p.l.dropLocked()
		}
	})
}
