package postgres

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/storetest"
)

// TestEnrollBatchMatchesOneByOne runs the same random enrollments as
// batches (enrollMany) on one database and one at a time (enrollOne) on
// another: every result and every row written must be the same.
func TestEnrollBatchMatchesOneByOne(t *testing.T) {
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(ctx, pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		storetest.SeedEnrollMix(t, s)
		return s
	}
	batched, single := open(), open()
	r := rand.New(rand.NewPCG(3, 4))
	now := uint64(10 * rateWindowMs)
	decided := 0
	for g, i := 0, 0; g < 12; g++ {
		n := 2 + r.IntN(40)
		var reqs []*enrollReq
		var want []string
		for k := 0; k < n; k++ {
			tx := storetest.RandomEnroll(r, i, now)
			i++
			reqs = append(reqs, &enrollReq{ctx: ctx, e: tx, dec: []byte(`{"Approved":{"tier":"Endpoint","permissions":0}}`)})
			want = append(want, storetest.ErrClass(single.enrollOne(ctx, tx)))
		}
		res, err := batched.enrollMany(reqs)
		if err == errDecline {
			for _, rq := range reqs {
				res = append(res, batched.enrollOne(ctx, rq.e))
			}
		} else if err != nil {
			t.Fatalf("group %d: %v", g, err)
		} else {
			decided++
		}
		for k := range reqs {
			if got := storetest.ErrClass(res[k]); got != want[k] {
				t.Fatalf("group %d op %d: batched %q, one by one %q", g, k, got, want[k])
			}
		}
		now += 7_000
	}
	if decided == 0 {
		t.Fatal("no group was decided by enrollMany")
	}
	snap := func(s *Store) string {
		var out string
		for _, q := range []string{
			`SELECT coalesce(string_agg(org_id || '/' || token_id || '=' || uses, ' ' ORDER BY org_id, token_id), '') FROM enrollment_tokens`,
			`SELECT coalesce(string_agg(org_id || '/' || app_id || '=' || peer_count, ' ' ORDER BY org_id, app_id), '') FROM formations`,
			`SELECT coalesce(string_agg(org_id || '@' || minute || '=' || n, ' ' ORDER BY org_id, minute), '') FROM enrollment_rate`,
			`SELECT coalesce(string_agg(audit_id || ':' || coalesce(certificate_serial, '-'), ' ' ORDER BY audit_id), '') FROM enrollment_audit`,
			`SELECT coalesce(string_agg(serial || ':' || app_id, ' ' ORDER BY serial), '') FROM certificates`,
		} {
			var v string
			if err := s.pool.QueryRow(ctx, q).Scan(&v); err != nil {
				t.Fatal(err)
			}
			out += v + "\n"
		}
		return out
	}
	if a, b := snap(batched), snap(single); a != b {
		t.Fatalf("state differs:\nbatched:\n%s\none by one:\n%s", a, b)
	}
}
