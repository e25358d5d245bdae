package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// hourMs is the rate limiter's sliding window.
const hourMs = 3_600_000

// enrollReadSQL reads, in one statement, everything Enroll checks before it
// writes: the org's quotas, the formation's status, policy, mesh_id and peer
// count, the rate limiter's minute buckets and the partial minute at the
// window's start (skipped when the buckets alone reach the limit, or the
// formation cannot enroll), and the token. Every check reads state no
// earlier write of the same Enroll touches, so one read up front sees
// exactly what the checks did one by one.
//
// ?1 org, ?2 app, ?3 token, ?4 first full minute, ?5 since, ?6 first full
// minute in ms, ?7 limit, ?8 'Active'.
const enrollReadSQL = `WITH f AS (SELECT status, peer_count, enrollment_policy, mesh_id FROM formations WHERE org_id = ?1 AND app_id = ?2),
	o AS (SELECT max_enrollments_per_hour AS rl, max_peers_per_formation AS pl FROM orgs WHERE org_id = ?1),
	b AS (SELECT coalesce(sum(n), 0) AS n FROM enrollment_rate WHERE org_id = ?1 AND minute >= ?4
		AND EXISTS (SELECT 1 FROM f WHERE status = ?8))
SELECT o.rl IS NOT NULL, f.status, f.peer_count, b.n,
	CASE WHEN f.status IS NOT ?8 OR b.n >= ?7 THEN 0 ELSE (SELECT count(*) FROM (SELECT 1 FROM enrollment_audit
		WHERE org_id = ?1 AND approved = 1 AND timestamp_ms >= ?5 AND timestamp_ms < ?6 LIMIT ?7)) END,
	t.token_id, t.org_id, t.app_id, t.label, t.max_uses, t.uses, t.expires_at, t.created_at, t.revoked,
	f.enrollment_policy, f.mesh_id, o.rl, o.pl
FROM b LEFT JOIN o LEFT JOIN f LEFT JOIN enrollment_tokens t ON t.org_id = ?1 AND t.token_id = ?3`

// Enroll applies one approved enrollment atomically: formation state, rate
// limit, token consumption, peer quota, audit, certificate.
func (s *Store) Enroll(ctx context.Context, e store.EnrollTx) error {
	eop, fn := s.enrollFn(e)
	// Enrollment writes nothing the documents cache holds.
	return s.writeOp(ctx, keepDocs, eop, fn)
}

// enrollFn returns Enroll's write on its own and, unless the store counts
// rates by index, its batchable form.
func (s *Store) enrollFn(e store.EnrollTx) (*enrollOp, func(t *txn) error) {
	// Marshalled here, in the caller's goroutine, not in the single writer's.
	dec, decErr := json.Marshal(e.Audit.Decision)
	var batchable *enrollOp
	if decErr == nil && !s.rateByIndex {
		batchable = &enrollOp{e: e, dec: dec}
	}
	return batchable, func(t *txn) error {
		since := int64(0)
		if e.NowMs > hourMs {
			since = int64(e.NowMs - hourMs)
		}
		limit := int64(e.RateLimit)
		firstFull := (since + minuteMs - 1) / minuteMs

		r, err := t.enrollRead(e.OrgID, e.AppID, e.TokenID, since, limit)
		if err != nil {
			return err
		}
		if !r.status.Valid {
			if !r.org {
				return store.ErrOrgNotFound
			}
			return store.ErrFormationNotFound
		}
		if r.stale(e) {
			return store.ErrStale
		}
		if model.FormationStatus(r.status.String) != model.FormationActive {
			return store.ErrSuspended
		}

		n := r.approvals
		if t.s.rateByIndex {
			if n, err = t.approvalsSince(e.OrgID, since, limit); err != nil {
				return err
			}
		} else if err := t.pruneRate(e.OrgID, firstFull); err != nil {
			return err
		}
		if n >= limit {
			return fmt.Errorf("%w: %d enrollments in the last hour", store.ErrRateLimited, n)
		}

		if e.TokenID != "" {
			tk := r.token
			switch {
			case !r.tokenFound:
				return fmt.Errorf("%w: unknown token", store.ErrTokenInvalid)
			case tk.AppID != e.AppID:
				return fmt.Errorf("%w: token is for another formation", store.ErrTokenInvalid)
			case tk.Revoked:
				return fmt.Errorf("%w: revoked", store.ErrTokenInvalid)
			case tk.ExpiresAt != nil && e.NowMs > *tk.ExpiresAt:
				return fmt.Errorf("%w: expired", store.ErrTokenInvalid)
			case tk.MaxUses != nil && tk.Uses >= *tk.MaxUses:
				return fmt.Errorf("%w: exhausted", store.ErrTokenInvalid)
			}
		}

		if e.Certificate != nil && r.peers >= int64(e.PeerLimit) {
			if err := t.peerRoom(e); err != nil {
				return err
			}
		}
		if e.TokenID != "" {
			if _, err := t.exec(`UPDATE enrollment_tokens SET uses = uses + 1 WHERE org_id = ? AND token_id = ?`, e.OrgID, e.TokenID); err != nil {
				return err
			}
		}

		// The entry is the enrolling org's whatever the caller filled in, so
		// it lands in the rate window it was checked against.
		audit := e.Audit
		audit.OrgID = e.OrgID
		if decErr != nil {
			return decErr
		}
		if err := t.appendAuditJSON(audit, dec); err != nil {
			return err
		}
		if c := e.Certificate; c != nil {
			var revokedAt sql.NullInt64
			if c.RevokedAt != nil {
				revokedAt = sql.NullInt64{Int64: int64(*c.RevokedAt), Valid: true}
			}
			// The certificate belongs to the enrolling formation whatever the
			// caller filled in.
			if _, err := t.exec(`INSERT INTO certificates(`+certCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
				c.Serial, e.OrgID, e.AppID, c.PeerID, c.NodeID, c.SubjectKey, c.Fingerprint, c.Tier, c.Permissions,
				int64(c.IssuedAt), int64(c.ExpiresAt), b2i(c.Revoked), revokedAt, c.AuditID, c.Raw); err != nil {
				return err
			}
			if !c.Revoked {
				if _, err := t.exec(`UPDATE formations SET peer_count = peer_count + 1 WHERE org_id = ? AND app_id = ?`, e.OrgID, e.AppID); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// enrollState is what Enroll checks, read by enrollRead in one statement.
type enrollState struct {
	org        bool
	status     sql.NullString // not Valid: no such formation
	peers      int64
	approvals  int64 // in the window, from the buckets, as approvalsSince counts them
	tokenFound bool
	token      model.EnrollmentToken
	// what store.EnrollTx.Policy and MeshID are checked against
	policy, meshID       string
	rateLimit, peerLimit int64
}

// stale reports whether e's expectations (store.EnrollTx.Policy) differ from
// the rows read.
func (r *enrollState) stale(e store.EnrollTx) bool {
	if e.Policy == "" && e.MeshID == "" {
		return false
	}
	return string(e.Policy) != r.policy || e.MeshID != r.meshID ||
		int64(e.RateLimit) != r.rateLimit || int64(e.PeerLimit) != r.peerLimit
}

// enrollRead runs enrollReadSQL. approvals is only counted for an active
// formation; like approvalsSince it stops counting once it reaches limit.
func (t *txn) enrollRead(orgID, appID, tokenID string, since, limit int64) (enrollState, error) {
	var r enrollState
	firstFull := (since + minuteMs - 1) / minuteMs
	var peers, buckets, edge sql.NullInt64
	var tkID, tkOrg, tkApp, tkLabel, policy, meshID sql.NullString
	var maxUses, uses, expires, created, revoked, rl, pl sql.NullInt64
	if err := t.row(enrollReadSQL, orgID, appID, tokenID, firstFull, since, firstFull*minuteMs, limit,
		string(model.FormationActive)).Scan(&r.org, &r.status, &peers, &buckets, &edge,
		&tkID, &tkOrg, &tkApp, &tkLabel, &maxUses, &uses, &expires, &created, &revoked,
		&policy, &meshID, &rl, &pl); err != nil {
		return r, err
	}
	r.peers = peers.Int64
	r.policy, r.meshID, r.rateLimit, r.peerLimit = policy.String, meshID.String, rl.Int64, pl.Int64
	r.approvals = buckets.Int64
	if r.approvals < limit {
		r.approvals += min(edge.Int64, limit-r.approvals)
	}
	if tkID.Valid {
		r.tokenFound = true
		tk := &r.token
		tk.TokenID, tk.OrgID, tk.AppID, tk.Label = tkID.String, tkOrg.String, tkApp.String, tkLabel.String
		tk.Uses, tk.CreatedAt, tk.Revoked = uint32(uses.Int64), uint64(created.Int64), revoked.Int64 != 0
		if maxUses.Valid {
			v := uint32(maxUses.Int64)
			tk.MaxUses = &v
		}
		if expires.Valid {
			v := uint64(expires.Int64)
			tk.ExpiresAt = &v
		}
	}
	return r, nil
}

// minuteMs is the width of a rate-limit bucket.
const minuteMs = 60_000

// approvalsSince counts the org's approvals with timestamp_ms >= since. Whole
// minutes come from the enrollment_rate buckets; the partial minute at the
// window's start is counted from the audit index, so the result is exact.
// limit lets the index count stop early once the answer is known.
func (t *txn) approvalsSince(orgID string, since, limit int64) (int64, error) {
	if t.s.rateByIndex {
		var n int64
		err := t.row(`SELECT count(*) FROM (SELECT 1 FROM enrollment_audit
			WHERE org_id = ? AND approved = 1 AND timestamp_ms >= ? LIMIT ?)`, orgID, since, limit).Scan(&n)
		return n, err
	}
	firstFull := (since + minuteMs - 1) / minuteMs
	var buckets, edge int64
	if err := t.row(`SELECT coalesce(sum(n), 0) FROM enrollment_rate WHERE org_id = ? AND minute >= ?`,
		orgID, firstFull).Scan(&buckets); err != nil {
		return 0, err
	}
	if buckets >= limit {
		return buckets, nil
	}
	if err := t.row(`SELECT count(*) FROM (SELECT 1 FROM enrollment_audit
		WHERE org_id = ? AND approved = 1 AND timestamp_ms >= ? AND timestamp_ms < ? LIMIT ?)`,
		orgID, since, firstFull*minuteMs, limit-buckets).Scan(&edge); err != nil {
		return 0, err
	}
	if err := t.pruneRate(orgID, firstFull); err != nil {
		return 0, err
	}
	return buckets + edge, nil
}

// pruneRate drops the org's buckets more than two hours older than the
// window starting at minute firstFull: they can never be read again, and
// dropping them keeps the table at about 120 rows per org. It runs at most
// once per org per minute of window (the cutoff only moves by whole
// minutes); the caller holds wmu. A rolled-back prune only leaves a bucket
// that can never be read until the next minute's prune removes it.
func (t *txn) pruneRate(orgID string, firstFull int64) error {
	cut := firstFull - 120
	if last, ok := t.s.ratePruned[orgID]; ok && cut <= last {
		return nil
	}
	if _, err := t.exec(`DELETE FROM enrollment_rate WHERE org_id = ? AND minute < ?`, orgID, cut); err != nil {
		return err
	}
	if len(t.s.ratePruned) >= 4096 {
		clear(t.s.ratePruned)
	}
	t.s.ratePruned[orgID] = cut
	return nil
}

const certCols = `serial, org_id, app_id, peer_id, node_id, subject_public_key, fingerprint, tier, permissions,
	issued_at, expires_at, revoked, revoked_at, audit_id, raw`

func scanCert(sc scanner) (model.Certificate, error) {
	var c model.Certificate
	var issued, expires int64
	var revokedAt sql.NullInt64
	err := sc.Scan(&c.Serial, &c.OrgID, &c.AppID, &c.PeerID, &c.NodeID, &c.SubjectKey, &c.Fingerprint, &c.Tier,
		&c.Permissions, &issued, &expires, &c.Revoked, &revokedAt, &c.AuditID, &c.Raw)
	c.IssuedAt, c.ExpiresAt = uint64(issued), uint64(expires)
	if revokedAt.Valid {
		v := uint64(revokedAt.Int64)
		c.RevokedAt = &v
	}
	return c, err
}

func (s *Store) listCerts(ctx context.Context, query string, args ...any) ([]model.Certificate, error) {
	rows, err := s.rows(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []model.Certificate{}
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListCertificates lists a formation's certificates by issue time.
func (s *Store) ListCertificates(ctx context.Context, orgID, appID string) ([]model.Certificate, error) {
	return s.listCerts(ctx, `SELECT `+certCols+` FROM certificates WHERE org_id = ? AND app_id = ?
		ORDER BY issued_at, serial`, orgID, appID)
}

// GetCertificate returns one certificate (ErrNotFound).
func (s *Store) GetCertificate(ctx context.Context, orgID, appID, serial string) (model.Certificate, error) {
	c, err := scanCert(s.row(ctx, `SELECT `+certCols+` FROM certificates WHERE org_id = ? AND app_id = ? AND serial = ?`,
		orgID, appID, serial))
	return c, notFound(err, store.ErrNotFound)
}

// RevokeCertificate revokes one certificate and bumps the formation's
// revocation sequence in the same transaction.
func (s *Store) RevokeCertificate(ctx context.Context, orgID, appID, serial string, nowMs uint64) (model.Certificate, error) {
	var c model.Certificate
	err := s.write(ctx, func(t *txn) error {
		var err error
		c, err = scanCert(t.row(`SELECT `+certCols+` FROM certificates WHERE org_id = ? AND app_id = ? AND serial = ?`,
			orgID, appID, serial))
		if err != nil {
			return notFound(err, store.ErrNotFound)
		}
		if c.Revoked {
			return store.ErrAlreadyRevoked
		}
		c.Revoked, c.RevokedAt = true, &nowMs
		if _, err := t.exec(`UPDATE certificates SET revoked = 1, revoked_at = ? WHERE org_id = ? AND app_id = ? AND serial = ?`,
			int64(nowMs), orgID, appID, serial); err != nil {
			return err
		}
		// Only a live certificate is in the peer bound for sure (peers.go).
		live := int64(0)
		if c.ExpiresAt == 0 || c.ExpiresAt > nowMs {
			live = 1
		}
		_, err = t.exec(`UPDATE formations SET revocation_seq = revocation_seq + 1, peer_count = peer_count - ?
			WHERE org_id = ? AND app_id = ?`, live, orgID, appID)
		if err == nil {
			delete(t.s.peerFull, [2]string{orgID, appID})
		}
		return err
	})
	return c, err
}

// ListRevoked returns the revoked certificates (by revocation time) and the
// formation's revocation sequence, read from one snapshot.
func (s *Store) ListRevoked(ctx context.Context, orgID, appID string) ([]model.Certificate, uint64, error) {
	// One read transaction so the list and the sequence agree.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT revocation_seq FROM formations WHERE org_id = ? AND app_id = ?`, orgID, appID).Scan(&seq); err != nil {
		return nil, 0, notFound(err, store.ErrFormationNotFound)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+certCols+` FROM certificates WHERE org_id = ? AND app_id = ? AND revoked = 1
		ORDER BY revoked_at, serial`, orgID, appID)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out := []model.Certificate{}
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, c)
	}
	return out, uint64(seq), rows.Err()
}
