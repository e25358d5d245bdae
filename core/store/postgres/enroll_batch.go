package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	batching "github.com/defenseunicorns/peat-gateway/core/internal/batch"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Batched enrollment.
//
// One enrollment alone is a transaction of two round trips that holds its
// org's row lock throughout, so an org's enrollments run one at a time and
// each pays for its lock, its reads, its writes and a commit.
// Concurrent Enroll calls are therefore queued and a runner takes them in
// batches: one transaction locks every formation (and org) of the batch in
// key order, reads their counters and tokens, decides each enrollment in
// queue order in memory carrying earlier approvals' effects forward, and
// writes all approvals and the counters they move in one statement, sent
// with the COMMIT in a second round trip.
// The outcome is the one the calls would get one after another; where that is
// not certain (a rate limit nearly reached, a minute boundary inside the
// batch) or the batch fails as a whole (a deadlock with another
// transaction), its calls run one by one instead.

// maxEnrollBatch bounds one batch transaction.
//
// One runner takes the batches, one after another. Several were measured
// (also with each org pinned to one runner, so their row locks never meet)
// and did worse: they split the queue into smaller batches, and Postgres's
// cost per batch, not per enrollment, is what bounds the rate.
const maxEnrollBatch = 128

type enrollReq struct {
	ctx  context.Context
	e    store.EnrollTx
	dec  []byte // e.Audit.Decision as JSON
	done chan error
}

// enrollQueue feeds the batch runner.
type enrollQueue struct {
	ch     chan *enrollReq
	mu     sync.RWMutex // guards sends against close
	closed bool
	done   chan struct{}
}

func (s *Store) startEnrollRunner() {
	s.eq = &enrollQueue{ch: make(chan *enrollReq, 4*maxEnrollBatch), done: make(chan struct{})}
	go s.enrollRunner()
}

func (s *Store) stopEnrollRunner() {
	s.eq.mu.Lock()
	if !s.eq.closed {
		s.eq.closed = true
		close(s.eq.ch)
	}
	s.eq.mu.Unlock()
	<-s.eq.done
}

var errStoreClosed = errors.New("postgres: store closed")

// Enroll applies one approved enrollment atomically (store.Enrollment),
// batched with concurrent calls.
func (s *Store) Enroll(ctx context.Context, etx store.EnrollTx) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dec, err := json.Marshal(etx.Audit.Decision)
	if err != nil {
		return err
	}
	r := &enrollReq{ctx: ctx, e: etx, dec: dec, done: make(chan error, 1)}
	s.eq.mu.RLock()
	if s.eq.closed {
		s.eq.mu.RUnlock()
		return errStoreClosed
	}
	s.eq.ch <- r
	s.eq.mu.RUnlock()
	// The result is awaited even if ctx ends meanwhile: the enrollment may
	// already be committed.
	return <-r.done
}

func (s *Store) enrollRunner() {
	defer close(s.eq.done)
	batch := make([]*enrollReq, 0, maxEnrollBatch)
	for r := range s.eq.ch {
		batch = batching.Drain(s.eq.ch, append(batch[:0], r), maxEnrollBatch)
		s.runEnrollBatch(batch)
	}
}

// runEnrollBatch settles every request of batch.
func (s *Store) runEnrollBatch(batch []*enrollReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) > 1 {
		res, err := s.enrollMany(live)
		if err == nil {
			for i, r := range live {
				r.done <- res[i]
			}
			return
		}
	}
	// One request, or a batch that declined or failed as a whole: each on
	// its own, concurrently, as unbatched calls would run.
	var wg sync.WaitGroup
	for _, r := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.done <- s.enrollOne(r.ctx, r.e)
		}()
	}
	wg.Wait()
}

// errDecline makes a batch's calls run one by one.
var errDecline = errors.New("postgres: enrollment batch declined")

type pgFormationCheck struct {
	status, policy, meshID string
	peers                  int64
	rateLimit, peerLimit   int64
}

type pgTokenCheck struct {
	appID     string
	revoked   bool
	expiresAt *int64
	maxUses   *int64
	uses      int64
}

// enrollMany decides and writes reqs in one transaction and returns each
// one's result, or an error (errDecline, a deadlock, a lost connection)
// after which nothing of the batch is committed.
func (s *Store) enrollMany(reqs []*enrollReq) ([]error, error) {
	var since uint64
	minNow := reqs[0].e.NowMs
	for _, r := range reqs {
		minNow = min(minNow, r.e.NowMs)
	}
	if minNow > rateWindowMs {
		since = minNow - rateWindowMs
	}
	firstFull := int64((since + 59_999) / 60_000)
	var maxNow uint64
	for _, r := range reqs {
		maxNow = max(maxNow, r.e.NowMs)
		s := uint64(0)
		if r.e.NowMs > rateWindowMs {
			s = r.e.NowMs - rateWindowMs
		}
		if int64((s+59_999)/60_000) != firstFull {
			return nil, errDecline
		}
	}

	var fOrgs, fApps, tOrgs, tIDs []string
	orgSeen, fSeen, tSeen := map[string]bool{}, map[[2]string]bool{}, map[[2]string]bool{}
	var orgs []string
	for _, r := range reqs {
		e := r.e
		if k := [2]string{e.OrgID, e.AppID}; !fSeen[k] {
			fSeen[k] = true
			fOrgs, fApps = append(fOrgs, e.OrgID), append(fApps, e.AppID)
		}
		if !orgSeen[e.OrgID] {
			orgSeen[e.OrgID] = true
			orgs = append(orgs, e.OrgID)
		}
		if e.TokenID != "" {
			if k := [2]string{e.OrgID, e.TokenID}; !tSeen[k] {
				tSeen[k] = true
				tOrgs, tIDs = append(tOrgs, e.OrgID), append(tIDs, e.TokenID)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]error, len(reqs))
	err := s.txn(ctx, func(conn *pgx.Conn) error {
		b := beginBatch()
		// Rows are locked in the order the sort returns them, so two batches
		// (or a batch and a single enrollment) never lock in opposite orders.
		b.Queue(`SELECT o.org_id, f.app_id, f.status, f.peer_count, f.enrollment_policy, f.mesh_id,
				o.max_enrollments_per_hour, o.max_peers_per_formation
			FROM unnest($1::text[], $2::text[]) AS k(org_id, app_id)
			JOIN orgs o ON o.org_id = k.org_id JOIN formations f ON f.org_id = k.org_id AND f.app_id = k.app_id
			ORDER BY o.org_id, f.app_id FOR NO KEY UPDATE OF o, f`, fOrgs, fApps)
		// Whole minutes of the window plus all of the minute it starts in:
		// an upper bound of every request's count (the edge minute's rows
		// only leave the window as the clock moves).
		b.Queue(`SELECT org_id, coalesce(sum(n), 0)::bigint FROM enrollment_rate
			WHERE org_id = ANY($1::text[]) AND minute >= $2 AND minute <= $3 GROUP BY org_id`,
			orgs, firstFull-1, int64(maxNow/60_000))
		if len(tIDs) > 0 {
			// No row lock: a token's uses only move under its org's lock,
			// held above, and a revocation or deletion that commits while
			// this batch runs simply orders after it.
			b.Queue(`SELECT t.org_id, t.token_id, t.app_id, t.revoked, t.expires_at, t.max_uses, t.uses
				FROM unnest($1::text[], $2::text[]) AS k(org_id, token_id)
				JOIN enrollment_tokens t ON t.org_id = k.org_id AND t.token_id = k.token_id`, tOrgs, tIDs)
		}
		br, err := sendBegin(ctx, conn, b)
		if err != nil {
			return err
		}
		forms := map[[2]string]*pgFormationCheck{}
		rows, _ := br.Query()
		for rows.Next() {
			var org, app string
			f := &pgFormationCheck{}
			if err := rows.Scan(&org, &app, &f.status, &f.peers, &f.policy, &f.meshID, &f.rateLimit, &f.peerLimit); err != nil {
				rows.Close()
				br.Close()
				return err
			}
			forms[[2]string{org, app}] = f
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
		rates := map[string]int64{}
		rows, _ = br.Query()
		for rows.Next() {
			var org string
			var n int64
			if err := rows.Scan(&org, &n); err != nil {
				rows.Close()
				br.Close()
				return err
			}
			rates[org] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			br.Close()
			return err
		}
		tokens := map[[2]string]*pgTokenCheck{}
		if len(tIDs) > 0 {
			rows, _ = br.Query()
			for rows.Next() {
				var org, id string
				t := &pgTokenCheck{}
				if err := rows.Scan(&org, &id, &t.appID, &t.revoked, &t.expiresAt, &t.maxUses, &t.uses); err != nil {
					rows.Close()
					br.Close()
					return err
				}
				tokens[[2]string{org, id}] = t
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				br.Close()
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}

		// Decide in queue order.
		tokenUses := map[[2]string]int64{}
		peersAdded := map[[2]string]int64{}
		rateAdded := map[string]int64{}
		var approved []*enrollReq
		for i, r := range reqs {
			e := r.e
			fk := [2]string{e.OrgID, e.AppID}
			f := forms[fk]
			switch {
			case f == nil:
				results[i] = store.ErrFormationNotFound
				continue
			case stale(e, f.policy, f.meshID, f.rateLimit, f.peerLimit):
				results[i] = store.ErrStale
				continue
			case model.FormationStatus(f.status) == model.FormationSuspended:
				results[i] = store.ErrSuspended
				continue
			}
			if rates[e.OrgID]+rateAdded[e.OrgID] >= int64(e.RateLimit) {
				return errDecline // near the limit the exact window decides
			}
			if e.TokenID != "" {
				tk := [2]string{e.OrgID, e.TokenID}
				t := tokens[tk]
				if t == nil || t.appID != e.AppID || t.revoked || (t.expiresAt != nil && int64(e.NowMs) > *t.expiresAt) ||
					(t.maxUses != nil && t.uses+tokenUses[tk] >= *t.maxUses) {
					results[i] = store.ErrTokenInvalid
					continue
				}
			}
			if e.Certificate != nil && f.peers+peersAdded[fk] >= int64(e.PeerLimit) {
				return errDecline // at the bound the exact count decides (peerRoom)
			}
			if e.TokenID != "" {
				tokenUses[[2]string{e.OrgID, e.TokenID}]++
			}
			if e.Certificate != nil && !e.Certificate.Revoked {
				peersAdded[fk]++
			}
			rateAdded[e.OrgID]++
			approved = append(approved, r)
		}

		wb := &pgx.Batch{}
		if len(approved) > 0 {
			wb.Queue(enrollWriteSQL, enrollWriteArgs(approved, tokenUses, peersAdded)...)
		}
		wb.Queue("COMMIT")
		wr := conn.SendBatch(ctx, wb)
		for i := 0; i < wb.Len(); i++ {
			tag, err := wr.Exec()
			if err != nil {
				wr.Close()
				return err
			}
			if i == wb.Len()-1 {
				if err := committed(tag); err != nil {
					wr.Close()
					return err
				}
			}
		}
		return wr.Close()
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// enrollWriteSQL writes a batch's approvals in one statement: audit rows,
// certificates, and the counters they move (token uses, the rate limiter's
// minute buckets, formations' peer counts, migration 0003). Data-modifying
// CTEs all run whether or not the query reads them; empty arrays write
// nothing.
const enrollWriteSQL = `WITH
	a AS (INSERT INTO enrollment_audit (audit_id, org_id, app_id, idp_id, subject, decision, reason,
			certificate_serial, timestamp_ms, approved)
		SELECT a, o, p, i, s, d::json, r, c, t, v
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::bigint[], $10::bool[]) AS u(a, o, p, i, s, d, r, c, t, v)),
	c AS (INSERT INTO certificates (` + certCols + `)
		SELECT * FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
			$18::text[], $19::smallint[], $20::bigint[], $21::bigint[], $22::bool[], $23::bigint[], $24::text[], $25::bytea[])),
	t AS (UPDATE enrollment_tokens t SET uses = t.uses + u.n
		FROM unnest($26::text[], $27::text[], $28::bigint[]) AS u(org_id, token_id, n)
		WHERE t.org_id = u.org_id AND t.token_id = u.token_id),
	r AS (INSERT INTO enrollment_rate (org_id, minute, n)
		SELECT * FROM unnest($29::text[], $30::bigint[], $31::bigint[])
		ON CONFLICT (org_id, minute) DO UPDATE SET n = enrollment_rate.n + excluded.n)
UPDATE formations f SET peer_count = f.peer_count + u.n
	FROM unnest($32::text[], $33::text[], $34::bigint[]) AS u(org_id, app_id, n)
	WHERE f.org_id = u.org_id AND f.app_id = u.app_id`

// enrollWriteArgs returns enrollWriteSQL's arguments for the approved requests.
func enrollWriteArgs(rs []*enrollReq, tokenUses, peersAdded map[[2]string]int64) []any {
	n := len(rs)
	ids, orgs, apps, idps, subjects, decisions, reasons := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	auditSerials, ts, approved := make([]*string, n), make([]int64, n), make([]bool, n)
	var serials, cOrgs, cApps, peers, nodes, keys, fps, tiers, audits []string
	var perms []int16
	var issued, expires []int64
	var revoked []bool
	var revokedAt []*int64
	var raws [][]byte
	type bucket struct {
		org    string
		minute int64
	}
	buckets := map[bucket]int64{}
	for i, r := range rs {
		a := r.e.Audit
		// The entry and the certificate are the enrolling org's and
		// formation's whatever the caller filled in.
		ids[i], orgs[i], apps[i], idps[i], subjects[i] = a.AuditID, r.e.OrgID, a.AppID, a.IdpID, a.Subject
		decisions[i], reasons[i], auditSerials[i] = string(r.dec), a.Reason, a.Serial
		ts[i], approved[i] = int64(a.TimestampMs), a.Decision.Approved != nil
		if approved[i] {
			buckets[bucket{r.e.OrgID, int64(a.TimestampMs / 60_000)}]++
		}
		c := r.e.Certificate
		if c == nil {
			continue
		}
		var ra *int64
		if c.RevokedAt != nil {
			v := int64(*c.RevokedAt)
			ra = &v
		}
		raw := c.Raw
		if raw == nil {
			raw = []byte{}
		}
		serials, cOrgs, cApps = append(serials, c.Serial), append(cOrgs, r.e.OrgID), append(cApps, r.e.AppID)
		peers, nodes, keys, fps = append(peers, c.PeerID), append(nodes, c.NodeID), append(keys, c.SubjectKey), append(fps, c.Fingerprint)
		tiers, perms = append(tiers, c.Tier), append(perms, int16(c.Permissions))
		issued, expires = append(issued, int64(c.IssuedAt)), append(expires, int64(c.ExpiresAt))
		revoked, revokedAt, audits, raws = append(revoked, c.Revoked), append(revokedAt, ra), append(audits, c.AuditID), append(raws, raw)
	}
	tOrgs, tIDs, tNs := []string{}, []string{}, []int64{}
	for k, n := range tokenUses {
		tOrgs, tIDs, tNs = append(tOrgs, k[0]), append(tIDs, k[1]), append(tNs, n)
	}
	bOrgs, bMinutes, bNs := []string{}, []int64{}, []int64{}
	for k, n := range buckets {
		bOrgs, bMinutes, bNs = append(bOrgs, k.org), append(bMinutes, k.minute), append(bNs, n)
	}
	pOrgs, pApps, pNs := []string{}, []string{}, []int64{}
	for k, n := range peersAdded {
		pOrgs, pApps, pNs = append(pOrgs, k[0]), append(pApps, k[1]), append(pNs, n)
	}
	return []any{ids, orgs, apps, idps, subjects, decisions, reasons, auditSerials, ts, approved,
		serials, cOrgs, cApps, peers, nodes, keys, fps, tiers, perms, issued, expires, revoked, revokedAt, audits, raws,
		tOrgs, tIDs, tNs, bOrgs, bMinutes, bNs, pOrgs, pApps, pNs}
}
