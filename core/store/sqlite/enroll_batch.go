package sqlite

import (
	"database/sql"
	"fmt"

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

// enrollCache is what enrollBatch knows of the rows it checks, carried from
// one batch to the next so that a steady stream of enrollments reads nothing
// but writes. It is only ever updated with effects that were written, and
// cleared whenever anything else could have changed those rows: any other
// write of this store (including an enrollment run on its own), a rolled
// back savepoint or group, and a commit by another process (data_version).
type enrollCache struct {
	f map[[2]string]*formationCheck // by (org, app)
	t map[[2]string]*tokenCheck     // by (org, token)
	r map[string]*rateCheck         // by org
}

type formationCheck struct {
	org                  bool
	status               sql.NullString // not Valid: no such formation
	policy, meshID       string
	rateLimit, peerLimit int64
	peers                int64
}

type tokenCheck struct {
	found bool
	token model.EnrollmentToken
}

// rateCheck bounds an org's approvals in the window from above for every
// enrollment whose window starts in minute firstFull-1 at or after the clock
// it was read at: entries of the window's edge minute only ever leave it.
type rateCheck struct {
	firstFull int64
	count     int64
}

func (c *enrollCache) clear() {
	c.f, c.t, c.r = nil, nil, nil
}

func (c *enrollCache) init() {
	if c.f == nil {
		c.f, c.t, c.r = map[[2]string]*formationCheck{}, map[[2]string]*tokenCheck{}, map[string]*rateCheck{}
	}
}

// enrollBatch decides and writes ops (all with ctx still live) inside the
// caller's savepoint. It returns per-op results (nil = approved and
// written), or an error if the batch must be rolled back and rerun op by op.
func (t *txn) enrollBatch(ops []*enrollOp) ([]error, error) {
	c := &t.s.ecache
	c.init()
	// One clock per org: the earliest, which sees the most of the window's
	// edge minute. A minute boundary inside the batch moves the window's
	// whole minutes; that is left to the one-by-one path.
	type orgClock struct {
		firstFull int64
		minNow    uint64
	}
	clocks := map[string]*orgClock{}
	for _, o := range ops {
		since := int64(0)
		if o.e.NowMs > hourMs {
			since = int64(o.e.NowMs - hourMs)
		}
		ff := (since + minuteMs - 1) / minuteMs
		oc, ok := clocks[o.e.OrgID]
		if !ok {
			clocks[o.e.OrgID] = &orgClock{firstFull: ff, minNow: o.e.NowMs}
			continue
		}
		if oc.firstFull != ff {
			return nil, errNoBatch
		}
		oc.minNow = min(oc.minNow, o.e.NowMs)
	}

	// Effects of this batch's approvals, applied to the cache once written.
	tokenUses := map[[2]string]int64{}
	peersAdded := map[[2]string]int64{}
	rateAdded := map[string]int64{}
	results := make([]error, len(ops))
	approved := make([]*enrollOp, 0, len(ops))
	for i, o := range ops {
		e := o.e
		fk, tk := [2]string{e.OrgID, e.AppID}, [2]string{e.OrgID, e.TokenID}
		oc := clocks[e.OrgID]
		f, tc, rc := c.f[fk], c.t[tk], c.r[e.OrgID]
		if rc != nil && rc.firstFull != oc.firstFull {
			rc = nil
		}
		if f == nil || (e.TokenID != "" && tc == nil) || (rc == nil && f.active()) {
			since := int64(0)
			if oc.minNow > hourMs {
				since = int64(oc.minNow - hourMs)
			}
			r, err := t.enrollRead(e.OrgID, e.AppID, e.TokenID, since, int64(e.RateLimit))
			if err != nil {
				return nil, err
			}
			// Only what is missing is filled in: a cached entry already
			// carries the effects of earlier batches of this transaction.
			if f == nil {
				f = &formationCheck{org: r.org, status: r.status, policy: r.policy, meshID: r.meshID,
					rateLimit: r.rateLimit, peerLimit: r.peerLimit, peers: r.peers}
				c.f[fk] = f
			}
			if e.TokenID != "" && tc == nil {
				tc = &tokenCheck{found: r.tokenFound, token: r.token}
				c.t[tk] = tc
			}
			if rc == nil && r.status.Valid && model.FormationStatus(r.status.String) == model.FormationActive {
				rc = &rateCheck{firstFull: oc.firstFull, count: r.approvals}
				c.r[e.OrgID] = rc
				if err := t.pruneRate(e.OrgID, oc.firstFull); err != nil {
					return nil, err
				}
			}
			if rc == nil && f.active() {
				return nil, errNoBatch // the cache disagrees with the rows: start over
			}
		}
		if !f.status.Valid {
			if !f.org {
				results[i] = store.ErrOrgNotFound
			} else {
				results[i] = store.ErrFormationNotFound
			}
			continue
		}
		if f.stale(e) {
			results[i] = store.ErrStale
			continue
		}
		if !f.active() {
			results[i] = store.ErrSuspended
			continue
		}
		if rc.count+rateAdded[e.OrgID] >= int64(e.RateLimit) {
			// Near the limit the window's edge decides, and that differs by
			// the millisecond between ops.
			return nil, errNoBatch
		}
		if e.TokenID != "" {
			tok := tc.token
			uses := int64(tok.Uses) + tokenUses[tk]
			switch {
			case !tc.found:
				results[i] = fmt.Errorf("%w: unknown token", store.ErrTokenInvalid)
			case tok.AppID != e.AppID:
				results[i] = fmt.Errorf("%w: token is for another formation", store.ErrTokenInvalid)
			case tok.Revoked:
				results[i] = fmt.Errorf("%w: revoked", store.ErrTokenInvalid)
			case tok.ExpiresAt != nil && e.NowMs > *tok.ExpiresAt:
				results[i] = fmt.Errorf("%w: expired", store.ErrTokenInvalid)
			case tok.MaxUses != nil && uses >= int64(*tok.MaxUses):
				results[i] = fmt.Errorf("%w: exhausted", store.ErrTokenInvalid)
			}
			if results[i] != nil {
				continue
			}
		}
		if e.Certificate != nil && f.peers+peersAdded[fk] >= int64(e.PeerLimit) {
			// At the bound the exact count decides (peerRoom).
			return nil, errNoBatch
		}
		if e.TokenID != "" {
			tokenUses[tk]++
		}
		if e.Certificate != nil && !e.Certificate.Revoked {
			peersAdded[fk]++
		}
		rateAdded[e.OrgID]++
		approved = append(approved, o)
	}
	if err := t.writeEnrollments(approved, tokenUses, peersAdded); err != nil {
		return nil, err
	}
	for k, n := range tokenUses {
		c.t[k].token.Uses += uint32(n)
	}
	for k, n := range peersAdded {
		c.f[k].peers += n
	}
	for org, n := range rateAdded {
		c.r[org].count += n
	}
	return results, nil
}

func (f *formationCheck) active() bool {
	return f != nil && f.status.Valid && model.FormationStatus(f.status.String) == model.FormationActive
}

// stale reports whether e's expectations (store.EnrollTx.Policy) differ from
// the formation and org.
func (f *formationCheck) stale(e store.EnrollTx) bool {
	if e.Policy == "" && e.MeshID == "" {
		return false
	}
	return string(e.Policy) != f.policy || e.MeshID != f.meshID ||
		int64(e.RateLimit) != f.rateLimit || int64(e.PeerLimit) != f.peerLimit
}

// writeEnrollments writes the approved ops and the counters they moved,
// every table with multi-row statements.
func (t *txn) writeEnrollments(ops []*enrollOp, tokenUses, peersAdded map[[2]string]int64) error {
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
	var tokens, rates, peers []any
	for k, n := range tokenUses {
		tokens = append(tokens, k[0], k[1], n)
	}
	for b, n := range buckets {
		rates = append(rates, b.org, b.minute, n)
	}
	for k, n := range peersAdded {
		peers = append(peers, k[0], k[1], n)
	}
	for _, w := range []struct {
		prefix, tuple, suffix string
		cols                  int
		args                  []any
	}{
		{enrollTokensSQL, "(?,?,?)", enrollTokensWhere, 3, tokens},
		{`INSERT INTO enrollment_audit(` + auditCols + `, approved) VALUES `, "(?,?,?,?,?,?,?,?,?,?)", "", 10, audit},
		{`INSERT INTO enrollment_rate(org_id, minute, n) VALUES `, "(?,?,?)",
			` ON CONFLICT (org_id, minute) DO UPDATE SET n = n + excluded.n`, 3, rates},
		{`INSERT INTO certificates(` + certCols + `) VALUES `, "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", "", 15, certs},
		{enrollPeersSQL, "(?,?,?)", enrollPeersWhere, 3, peers},
	} {
		if err := chunks(len(w.args)/w.cols, func(off, n int) error {
			_, err := t.exec(rowsSQL(w.prefix, w.tuple, w.suffix, n), w.args[off*w.cols:(off+n)*w.cols]...)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// Counter updates of a batch: one statement for every token, one for every
// formation, the amounts given as a VALUES list.
const (
	enrollTokensSQL   = `WITH v(org_id, token_id, n) AS (VALUES `
	enrollTokensWhere = `) UPDATE enrollment_tokens SET uses = uses + v.n FROM v
		WHERE enrollment_tokens.org_id = v.org_id AND enrollment_tokens.token_id = v.token_id`
	enrollPeersSQL   = `WITH v(org_id, app_id, n) AS (VALUES `
	enrollPeersWhere = `) UPDATE formations SET peer_count = peer_count + v.n FROM v
		WHERE formations.org_id = v.org_id AND formations.app_id = v.app_id`
)
