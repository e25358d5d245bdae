package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// rateWindowMs is the enrollment rate limit's sliding window.
const rateWindowMs = 3_600_000

const certCols = `serial, org_id, app_id, peer_id, node_id, subject_key, fingerprint, tier, permissions,
	issued_at, expires_at, revoked, revoked_at, audit_id, raw`

func scanCert(row pgx.CollectableRow) (model.Certificate, error) {
	var c model.Certificate
	err := row.Scan(&c.Serial, &c.OrgID, &c.AppID, &c.PeerID, &c.NodeID, &c.SubjectKey, &c.Fingerprint, &c.Tier,
		&c.Permissions, &c.IssuedAt, &c.ExpiresAt, &c.Revoked, &c.RevokedAt, &c.AuditID, &c.Raw)
	return c, err
}

// enrollOne applies one approved enrollment in a single transaction of two
// round trips (one pipelined batch opened by BEGIN, then COMMIT).
//
// The batch's first statement locks the org row and the formation row (FOR
// NO KEY UPDATE, org first, the same order DeleteOrg's cascade takes), so
// concurrent enrollments of an org serialise: the approvals counted by the
// rate limiter and the live certificates counted by the peer quota cannot
// change until we commit. The later statements start after the lock is
// granted and so see everything committed before (READ COMMITTED takes a
// snapshot per statement).
//
// Every write is queued unconditionally; the checks are evaluated in the
// contract's order as the results come back, and any failure rolls the
// whole transaction back, undoing the writes.
//
// Counting costs the same however many enrollments came before: approvals
// are summed from per-minute buckets and live certificates read from the
// formation's peer_count (migration 0003), both moved by the same
// transaction that adds the rows. No LIMIT is
// ever negative (the reference passed -1 and PostgreSQL refused every
// enrollment).
func (s *Store) enrollOne(ctx context.Context, etx store.EnrollTx) error {
	audit, err := auditArgs(etx.Audit)
	if err != nil {
		return err
	}
	var since uint64
	if etx.NowMs > rateWindowMs {
		since = etx.NowMs - rateWindowMs
	}
	return s.txn(ctx, func(conn *pgx.Conn) error {
		b := beginBatch()
		b.Queue(`SELECT f.status, f.peer_count, f.enrollment_policy, f.mesh_id, o.max_enrollments_per_hour,
				o.max_peers_per_formation
			FROM orgs o JOIN formations f ON f.org_id = o.org_id
			WHERE o.org_id = $1 AND f.app_id = $2 FOR NO KEY UPDATE OF o, f`, etx.OrgID, etx.AppID)
		// Whole minutes inside the window come from the per-minute buckets
		// (migration 0003); the minute the window starts in is partial. When
		// even counting all of it stays under the limit, or the whole minutes
		// alone reach it, the answer is known; only in between are that
		// minute's audit rows counted (CASE evaluates that branch lazily).
		firstFull := (since + 59_999) / 60_000
		b.Queue(`WITH b AS (SELECT
				coalesce(sum(n) FILTER (WHERE minute >= $2 AND minute <= $3), 0)::bigint AS whole,
				coalesce(sum(n) FILTER (WHERE minute = $2 - 1), 0)::bigint AS edge
				FROM enrollment_rate WHERE org_id = $1 AND minute >= $2 - 1 AND minute <= $3)
			SELECT CASE
				WHEN whole + edge < $4 THEN whole + edge
				WHEN whole >= $4 THEN whole
				ELSE whole + (SELECT count(*) FROM enrollment_audit WHERE org_id = $1 AND approved
					AND timestamp_ms >= $5 AND timestamp_ms < $2 * 60000)
				END FROM b`,
			etx.OrgID, int64(firstFull), int64(etx.NowMs/60_000), int64(etx.RateLimit), int64(since))
		if etx.TokenID != "" {
			// One conditional UPDATE both checks and consumes the token, so
			// two enrollments can never share its last use.
			b.Queue(`UPDATE enrollment_tokens SET uses = uses + 1
				WHERE org_id = $1 AND token_id = $2 AND app_id = $3 AND NOT revoked
				  AND (expires_at IS NULL OR expires_at >= $4)
				  AND (max_uses IS NULL OR uses < max_uses)`,
				etx.OrgID, etx.TokenID, etx.AppID, etx.NowMs)
		}
		c := etx.Certificate
		b.Queue(insertAuditCounted, audit...)
		livePeer := c != nil && !c.Revoked
		if c != nil {
			raw := c.Raw
			if raw == nil {
				raw = []byte{}
			}
			b.Queue("INSERT INTO certificates ("+certCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
				c.Serial, etx.OrgID, etx.AppID, c.PeerID, c.NodeID, c.SubjectKey, c.Fingerprint, c.Tier, c.Permissions,
				c.IssuedAt, c.ExpiresAt, c.Revoked, c.RevokedAt, c.AuditID, raw)
		}
		if livePeer {
			b.Queue(`UPDATE formations SET peer_count = peer_count + 1 WHERE org_id = $1 AND app_id = $2`, etx.OrgID, etx.AppID)
		}
		br, err := sendBegin(ctx, conn, b)
		if err != nil {
			return err
		}
		defer br.Close()

		var status, policy, meshID string
		var peers, rateLimit, peerLimit int64
		if err := br.QueryRow().Scan(&status, &peers, &policy, &meshID, &rateLimit, &peerLimit); err != nil {
			// No row: the formation (or its whole org) is missing. Telling the
			// two apart would need a second pool connection while this one
			// is held, which can starve the pool under load.
			return one(err, store.ErrFormationNotFound)
		}
		if stale(etx, policy, meshID, rateLimit, peerLimit) {
			return store.ErrStale
		}
		if model.FormationStatus(status) == model.FormationSuspended {
			return store.ErrSuspended
		}
		var recent int64
		if err := br.QueryRow().Scan(&recent); err != nil {
			return err
		}
		if recent >= int64(etx.RateLimit) {
			return store.ErrRateLimited
		}
		if etx.TokenID != "" {
			tag, err := br.Exec()
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return store.ErrTokenInvalid
			}
		}
		if _, err := br.Exec(); err != nil {
			return mapErr(err, store.ErrOrgNotFound)
		}
		if c != nil {
			if _, err := br.Exec(); err != nil {
				return mapErr(err, store.ErrFormationNotFound)
			}
		}
		if livePeer {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		// At the bound the exact count decides; a refusal rolls the
		// transaction, and the rows queued above, back.
		if c != nil && peers >= int64(etx.PeerLimit) {
			return s.peerRoom(ctx, conn, etx)
		}
		return nil
	})
}

// stale reports whether etx's expectations (store.EnrollTx.Policy) differ
// from the formation and org rows read under their locks.
func stale(etx store.EnrollTx, policy, meshID string, rateLimit, peerLimit int64) bool {
	if etx.Policy == "" && etx.MeshID == "" {
		return false
	}
	return string(etx.Policy) != policy || etx.MeshID != meshID ||
		int64(etx.RateLimit) != rateLimit || int64(etx.PeerLimit) != peerLimit
}

// ListCertificates lists a formation's certificates, oldest first.
func (s *Store) ListCertificates(ctx context.Context, orgID, appID string) ([]model.Certificate, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+certCols+" FROM certificates WHERE org_id = $1 AND app_id = $2 ORDER BY issued_at, serial", orgID, appID)
	return pgx.CollectRows(rows, scanCert)
}

// GetCertificate reads one certificate.
func (s *Store) GetCertificate(ctx context.Context, orgID, appID, serial string) (model.Certificate, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+certCols+" FROM certificates WHERE org_id = $1 AND app_id = $2 AND serial = $3", orgID, appID, serial)
	c, err := pgx.CollectExactlyOneRow(rows, scanCert)
	return c, one(err, store.ErrNotFound)
}

// RevokeCertificate revokes once and bumps the formation's revocation
// sequence in the same statement, so the list number and the list agree.
func (s *Store) RevokeCertificate(ctx context.Context, orgID, appID, serial string, nowMs uint64) (model.Certificate, error) {
	rows, _ := s.pool.Query(ctx, `WITH c AS (
			UPDATE certificates SET revoked = true, revoked_at = $4
			WHERE org_id = $1 AND app_id = $2 AND serial = $3 AND NOT revoked RETURNING `+certCols+`),
		f AS (UPDATE formations SET revocation_seq = revocation_seq + 1,
				-- only a certificate still live is in the peer bound for sure (peers.go)
				peer_count = peer_count - (SELECT CASE WHEN expires_at = 0 OR expires_at > $4 THEN 1 ELSE 0 END FROM c)
			WHERE org_id = $1 AND app_id = $2 AND EXISTS (SELECT 1 FROM c))
		SELECT `+certCols+` FROM c`, orgID, appID, serial, nowMs)
	c, err := pgx.CollectExactlyOneRow(rows, scanCert)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, gerr := s.GetCertificate(ctx, orgID, appID, serial); gerr != nil {
			return c, gerr
		}
		return c, store.ErrAlreadyRevoked
	}
	if err == nil {
		s.peers.set([2]string{orgID, appID}, 0, false) // a slot may be free
	}
	return c, err
}

// ListRevoked returns the revoked certificates and the revocation sequence
// from one snapshot (a single statement).
func (s *Store) ListRevoked(ctx context.Context, orgID, appID string) ([]model.Certificate, uint64, error) {
	rows, _ := s.pool.Query(ctx, `SELECT f.revocation_seq, c.serial, c.org_id, c.app_id, c.peer_id, c.node_id,
			c.subject_key, c.fingerprint, c.tier, c.permissions, c.issued_at, c.expires_at, c.revoked, c.revoked_at,
			c.audit_id, c.raw
		FROM formations f
		LEFT JOIN certificates c ON c.org_id = f.org_id AND c.app_id = f.app_id AND c.revoked
		WHERE f.org_id = $1 AND f.app_id = $2 ORDER BY c.issued_at, c.serial`, orgID, appID)
	defer rows.Close()
	var seq uint64
	found := false
	certs := []model.Certificate{}
	for rows.Next() {
		found = true
		var serial *string
		var c model.Certificate
		var orgCol, appCol, peer, node, key, fp, tier, audit *string
		var perms *uint8
		var issued, expires *uint64
		var revoked *bool
		if err := rows.Scan(&seq, &serial, &orgCol, &appCol, &peer, &node, &key, &fp, &tier, &perms, &issued, &expires,
			&revoked, &c.RevokedAt, &audit, &c.Raw); err != nil {
			return nil, 0, err
		}
		if serial == nil {
			continue // formation without revoked certificates
		}
		c.Serial, c.OrgID, c.AppID, c.PeerID, c.NodeID = *serial, *orgCol, *appCol, *peer, *node
		c.SubjectKey, c.Fingerprint, c.Tier, c.Permissions = *key, *fp, *tier, *perms
		c.IssuedAt, c.ExpiresAt, c.Revoked, c.AuditID = *issued, *expires, *revoked, *audit
		certs = append(certs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, 0, store.ErrFormationNotFound
	}
	return certs, seq, nil
}
