package postgres

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/store"
)

// The peer quota, as in the SQLite store (see its peers.go): a peer is a
// member key with a live certificate; peer_count is an upper bound kept in O(1)
// (+1 per certificate issued, -1 per certificate revoked while live), and
// at the limit peerRoom counts exactly, lets a renewing node through and
// sets the bound back to the live certificates.

// peerFullFor is how long a full exact count refuses without counting
// again, so a flood of enrollments into a full formation costs no scans.
const peerFullFor = 1000 // ms

// peerGuard remembers, per formation, when an exact count last found it full.
type peerGuard struct {
	mu   sync.Mutex
	full map[[2]string]uint64
}

func (g *peerGuard) refuses(k [2]string, now uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	at, ok := g.full[k]
	return ok && now >= at && now-at < peerFullFor
}

func (g *peerGuard) set(k [2]string, now uint64, full bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.full == nil {
		g.full = map[[2]string]uint64{}
	}
	if full {
		g.full[k] = now
	} else {
		delete(g.full, k)
	}
}

// peerRoom decides an enrollment whose formation is at its peer limit by
// peer_count. It runs inside the enrollment's transaction, after the new
// certificate's row was inserted (so that row is left out of the count)
// and with the formation row locked.
func (s *Store) peerRoom(ctx context.Context, conn *pgx.Conn, etx store.EnrollTx) error {
	refused := fmt.Errorf("%w: formation '%s' has reached its peer quota (%d)", store.ErrQuota, etx.AppID, etx.PeerLimit)
	k := [2]string{etx.OrgID, etx.AppID}
	if s.peers.refuses(k, etx.NowMs) {
		return refused
	}
	c := etx.Certificate
	var live, peers int64
	var renewing bool
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT subject_key), coalesce(bool_or(subject_key = $3), false)
		FROM certificates WHERE org_id = $1 AND app_id = $2 AND serial <> $4 AND NOT revoked
			AND (expires_at = 0 OR expires_at > $5)`,
		etx.OrgID, etx.AppID, c.SubjectKey, c.Serial, int64(etx.NowMs)).Scan(&live, &peers, &renewing); err != nil {
		return err
	}
	if !renewing && peers >= int64(etx.PeerLimit) {
		s.peers.set(k, etx.NowMs, true)
		return refused
	}
	s.peers.set(k, etx.NowMs, false)
	if !c.Revoked {
		live++
	}
	_, err := conn.Exec(ctx, `UPDATE formations SET peer_count = $3 WHERE org_id = $1 AND app_id = $2`, etx.OrgID, etx.AppID, live)
	return err
}
