package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// outboxChannel is the LISTEN/NOTIFY channel on which a transaction that
// adds outbox events names their org (once per org: PostgreSQL folds
// identical notifications of one transaction). Notifications are delivered
// at commit, so a woken replica always finds the events.
const outboxChannel = "peat_outbox"

// WatchOutbox calls wake with an org's id whenever any gateway on this
// database commits outbox events for it, until ctx ends. It lets the
// replica that delivers a sink learn of changes accepted by another at
// once, instead of at its next poll. It holds its own connection (not one
// of the pool's) and reconnects after a failure; notifications sent while
// it is reconnecting are lost, which only delays delivery to the workers'
// next poll. Failures are logged to log (nil: not logged).
func (s *Store) WatchOutbox(ctx context.Context, log *slog.Logger, wake func(orgID string)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.watchOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		if log != nil {
			log.Warn("outbox LISTEN connection lost; reconnecting", "error", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Store) watchOnce(ctx context.Context, wake func(string)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+outboxChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		wake(n.Payload)
	}
}
