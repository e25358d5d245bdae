package sqlite

import (
	"database/sql"
	"fmt"
	"strings"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Batched enrollment.
//
// Enrollment is the hottest write path, and SQLite has one writer, so the
// writer's CPU per enrollment bounds the whole gateway. Run one at a time,
// an enrollment costs a savepoint, a read of the formation, org, rate
// buckets and token, and five writes. When several enrollments share a
// group, enrollBatch decides them together instead: it reads the state once
// per (org, formation, token), applies the checks in queue order in memory,
// carrying each approval's effect (rate count, token use, peer count) to the
// next, and then writes all approvals with multi-row statements and one
// counter update per org, token and formation. The outcome is exactly what
// running the enrollments one after another would give; whenever that is
// not certain (the rate window's edge, a limit nearly reached, a minute
// boundary inside the batch) it declines and the group falls back to the
// one-at-a-time path.

// enrollOp is the batchable form of one Enroll call.
type enrollOp struct {
	e   store.EnrollTx
	dec []byte // e.Audit.Decision as JSON
}

// errNoBatch makes the committer run the enrollments one at a time.
var errNoBatch = fmt.Errorf("sqlite: enrollment batch declined")

type enrollKey struct{ org, app, token string }

// enrollBatch decides and writes ops (all with ctx still live) inside the
// caller's savepoint. It returns per-op results (nil = approved and
// written), or an error if the batch must be rolled back and rerun op by op.
func (t *txn) enrollBatch(ops []*enrollOp) ([]error, error) {
	type orgState struct {
		firstFull int64
		minNow    uint64
		count     int64 // approvals in the window, by the earliest op's clock
		added     int64
	}
	orgs := map[string]*orgState{}
	for _, o := range ops {
		since := int64(0)
		if o.e.NowMs > hourMs {
			since = int64(o.e.NowMs - hourMs)
		}
		ff := (since + minuteMs - 1) / minuteMs
		st, ok := orgs[o.e.OrgID]
		if !ok {
			orgs[o.e.OrgID] = &orgState{firstFull: ff, minNow: o.e.NowMs}
			continue
		}
		if st.firstFull != ff {
			// A minute boundary inside the batch moves the window's whole
			// minutes; not worth modelling.
			return nil, errNoBatch
		}
		st.minNow = min(st.minNow, o.e.NowMs)
	}

	states := map[enrollKey]*enrollState{}
	tokenUses := map[enrollKey]int64{}  // by (org, "", token)
	peersAdded := map[enrollKey]int64{} // by (org, app, "")
	results := make([]error, len(ops))
	approved := make([]*enrollOp, 0, len(ops))
	for i, o := range ops {
		e := o.e
		k := enrollKey{e.OrgID, e.AppID, e.TokenID}
		r, ok := states[k]
		ost := orgs[e.OrgID]
		if !ok {
			since := int64(0)
			if ost.minNow > hourMs {
				since = int64(ost.minNow - hourMs)
			}
			rs, err := t.enrollRead(e.OrgID, e.AppID, e.TokenID, since, int64(e.RateLimit))
			if err != nil {
				return nil, err
			}
			r = &rs
			states[k] = r
			if r.status.Valid && model.FormationStatus(r.status.String) == model.FormationActive {
				// The earliest clock sees the most of the window's edge
				// minute, so this count bounds every op's from above.
				ost.count = r.approvals
				if err := t.pruneRate(e.OrgID, ost.firstFull); err != nil {
					return nil, err
				}
			}
		}
		if !r.status.Valid {
			if !r.org {
				results[i] = store.ErrOrgNotFound
			} else {
				results[i] = store.ErrFormationNotFound
			}
			continue
		}
		if r.stale(e) {
			results[i] = store.ErrStale
			continue
		}
		if model.FormationStatus(r.status.String) != model.FormationActive {
			results[i] = store.ErrSuspended
			continue
		}
		if ost.count+ost.added >= int64(e.RateLimit) {
			// At the limit the window's edge decides, and that differs by
			// the millisecond between ops.
			return nil, errNoBatch
		}
		if e.TokenID != "" {
			tk := r.token
			uses := int64(tk.Uses) + tokenUses[enrollKey{e.OrgID, "", e.TokenID}]
			switch {
			case !r.tokenFound:
				results[i] = fmt.Errorf("%w: unknown token", store.ErrTokenInvalid)
			case tk.AppID != e.AppID:
				results[i] = fmt.Errorf("%w: token is for another formation", store.ErrTokenInvalid)
			case tk.Revoked:
				results[i] = fmt.Errorf("%w: revoked", store.ErrTokenInvalid)
			case tk.ExpiresAt != nil && e.NowMs > *tk.ExpiresAt:
				results[i] = fmt.Errorf("%w: expired", store.ErrTokenInvalid)
			case tk.MaxUses != nil && uses >= int64(*tk.MaxUses):
				results[i] = fmt.Errorf("%w: exhausted", store.ErrTokenInvalid)
			}
			if results[i] != nil {
				continue
			}
		}
		fk := enrollKey{e.OrgID, e.AppID, ""}
		if e.Certificate != nil && r.peers+peersAdded[fk] >= int64(e.PeerLimit) {
			results[i] = fmt.Errorf("%w: max_peers_per_formation %d", store.ErrQuota, e.PeerLimit)
			continue
		}
		if e.TokenID != "" {
			tokenUses[enrollKey{e.OrgID, "", e.TokenID}]++
		}
		if e.Certificate != nil && !e.Certificate.Revoked {
			peersAdded[fk]++
		}
		ost.added++
		approved = append(approved, o)
	}
	if err := t.writeEnrollments(approved, tokenUses, peersAdded); err != nil {
		return nil, err
	}
	return results, nil
}

// writeEnrollments writes the approved ops and the counters they moved.
func (t *txn) writeEnrollments(ops []*enrollOp, tokenUses, peersAdded map[enrollKey]int64) error {
	for k, n := range tokenUses {
		if _, err := t.exec(`UPDATE enrollment_tokens SET uses = uses + ? WHERE org_id = ? AND token_id = ?`, n, k.org, k.token); err != nil {
			return err
		}
	}
	type bucket struct {
		org    string
		minute int64
	}
	buckets := map[bucket]int64{}
	audit := make([]any, 0, 10*len(ops))
	var certs []any
	for _, o := range ops {
		e, a := o.e, o.e.Audit
		var serial sql.NullString
		if a.Serial != nil {
			serial = sql.NullString{String: *a.Serial, Valid: true}
		}
		// The entry and certificate belong to the enrolling org and
		// formation whatever the caller filled in.
		audit = append(audit, a.AuditID, e.OrgID, a.AppID, a.IdpID, a.Subject, string(o.dec), a.Reason, serial,
			int64(a.TimestampMs), b2i(a.Decision.Approved != nil))
		if a.Decision.Approved != nil {
			buckets[bucket{e.OrgID, int64(a.TimestampMs / minuteMs)}]++
		}
		if c := e.Certificate; c != nil {
			var revokedAt sql.NullInt64
			if c.RevokedAt != nil {
				revokedAt = sql.NullInt64{Int64: int64(*c.RevokedAt), Valid: true}
			}
			certs = append(certs, c.Serial, e.OrgID, e.AppID, c.PeerID, c.NodeID, c.SubjectKey, c.Fingerprint, c.Tier,
				c.Permissions, int64(c.IssuedAt), int64(c.ExpiresAt), b2i(c.Revoked), revokedAt, c.AuditID, c.Raw)
		}
	}
	if err := t.insertRows(`INSERT INTO enrollment_audit(`+auditCols+`, approved) VALUES `, 10, audit); err != nil {
		return err
	}
	for b, n := range buckets {
		if _, err := t.exec(`INSERT INTO enrollment_rate(org_id, minute, n) VALUES (?, ?, ?)
			ON CONFLICT (org_id, minute) DO UPDATE SET n = n + excluded.n`, b.org, b.minute, n); err != nil {
			return err
		}
	}
	if err := t.insertRows(`INSERT INTO certificates(`+certCols+`) VALUES `, 15, certs); err != nil {
		return err
	}
	for k, n := range peersAdded {
		if _, err := t.exec(`UPDATE formations SET peer_count = peer_count + ? WHERE org_id = ? AND app_id = ?`, n, k.org, k.app); err != nil {
			return err
		}
	}
	return nil
}

// insertRows inserts the rows in args (cols values each) with multi-row
// INSERTs of power-of-two sizes up to 64, so a handful of prepared
// statements serve every batch size.
func (t *txn) insertRows(prefix string, cols int, args []any) error {
	for rows := len(args) / cols; rows > 0; {
		n := 64
		for n > rows {
			n /= 2
		}
		if _, err := t.exec(t.s.multiRow(prefix, cols, n), args[:n*cols]...); err != nil {
			return err
		}
		args, rows = args[n*cols:], rows-n
	}
	return nil
}

// multiRow returns prefix followed by n placeholder tuples of cols each,
// built once; the caller holds wmu.
func (s *Store) multiRow(prefix string, cols, n int) string {
	k := multiKey{prefix, n}
	if q, ok := s.multi[k]; ok {
		return q
	}
	tuple := "(" + strings.Repeat("?,", cols-1) + "?)"
	var b strings.Builder
	b.Grow(len(prefix) + n*(len(tuple)+1))
	b.WriteString(prefix)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	s.multi[k] = b.String()
	return s.multi[k]
}

type multiKey struct {
	prefix string
	n      int
}
