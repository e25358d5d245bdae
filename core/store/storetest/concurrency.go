package storetest

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// parallel runs fn(i) for i in [0, n) on n goroutines released together and
// returns the errors by index.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// tally counts nil errors and errors matching want; any other error fails.
func tally(t *testing.T, errs []error, want error) (ok, matched int) {
	t.Helper()
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			matched++
		default:
			t.Fatalf("call %d: unexpected error %v", i, err)
		}
	}
	return ok, matched
}

var concurrencyTests = []subtest{
	{"CreateFormationQuota", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme", func(q *model.OrgQuotas) { q.MaxFormations = 10 })
		errs := parallel(50, func(i int) error {
			return s.CreateFormation(ctx, formation("acme", fmt.Sprintf("app%02d", i)), []byte("g"))
		})
		ok, quota := tally(t, errs, store.ErrQuota)
		mustEqual(t, [2]int{ok, quota}, [2]int{10, 40}, "successes and quota refusals")
		fs, err := s.ListFormations(ctx, "acme")
		mustOK(t, err, "ListFormations")
		mustEqual(t, len(fs), 10, "stored formations")
	}},
	{"CreateOrgSameID", func(t *testing.T, s store.Store) {
		errs := parallel(50, func(i int) error {
			o := org("acme")
			o.DisplayName = fmt.Sprintf("writer %d", i)
			return s.CreateOrg(ctx, o)
		})
		ok, exists := tally(t, errs, store.ErrExists)
		mustEqual(t, [2]int{ok, exists}, [2]int{1, 49}, "successes and ErrExists")
		got, err := s.GetOrg(ctx, "acme")
		mustOK(t, err, "GetOrg")
		winner := -1
		for i, err := range errs {
			if err == nil {
				winner = i
			}
		}
		mustEqual(t, got.DisplayName, fmt.Sprintf("writer %d", winner), "the stored org is the winner's")
	}},
	{"EnrollMaxUses", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		tk := token("acme", "app1", "peat_ten")
		tk.MaxUses = ptr(uint32(10))
		mkToken(t, s, tk)
		errs := parallel(100, func(i int) error {
			tx := enrollTx("acme", "app1", fmt.Sprintf("aud%03d", i), t0)
			tx.TokenID = "peat_ten"
			tx.Certificate = cert("acme", "app1", fmt.Sprintf("ser%03d", i), t0)
			return s.Enroll(ctx, tx)
		})
		ok, invalid := tally(t, errs, store.ErrTokenInvalid)
		mustEqual(t, [2]int{ok, invalid}, [2]int{10, 90}, "successes and ErrTokenInvalid")
		mustEqual(t, tokenUses(t, s, "acme", "peat_ten"), uint32(10), "token uses")
		mustEqual(t, auditCount(t, s, "acme"), 10, "audit entries")
		cs, _ := s.ListCertificates(ctx, "acme", "app1")
		mustEqual(t, len(cs), 10, "certificates")
	}},
	{"EnrollRateLimitAndPeers", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		errs := parallel(40, func(i int) error {
			tx := enrollTx("acme", "app1", fmt.Sprintf("aud%03d", i), t0)
			tx.RateLimit, tx.PeerLimit = 15, 7
			if i%2 == 0 {
				tx.Certificate = cert("acme", "app1", fmt.Sprintf("ser%03d", i), t0)
			}
			return s.Enroll(ctx, tx)
		})
		var ok, limited, quota int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrRateLimited):
				limited++
			case errors.Is(err, store.ErrQuota):
				quota++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		mustEqual(t, ok, 15, "approvals never exceed the rate limit")
		mustEqual(t, auditCount(t, s, "acme"), 15, "audit entries")
		cs, _ := s.ListCertificates(ctx, "acme", "app1")
		if len(cs) > 7 {
			t.Fatalf("%d certificates stored, peer limit 7", len(cs))
		}
	}},
	{"WriteOneDocumentSequentialVersions", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		const writers, each = 10, 10
		results := make([][]store.DocumentResult, writers)
		errs := parallel(writers, func(i int) error {
			for j := 0; j < each; j++ {
				rs, err := s.WriteDocuments(ctx, []store.DocumentWrite{
					docWrite("acme", "app1", "shared", fmt.Sprintf(`{"w":%d,"j":%d}`, i, j), t0)})
				if err != nil {
					return err
				}
				if rs[0].Err != nil {
					return rs[0].Err
				}
				results[i] = append(results[i], rs[0])
			}
			return nil
		})
		for _, err := range errs {
			mustOK(t, err, "writer")
		}
		byVersion := map[uint64]store.DocumentResult{}
		hashes := map[string]bool{}
		for i, rs := range results {
			for j, r := range rs {
				if !r.Changed {
					t.Fatalf("writer %d write %d unchanged", i, j)
				}
				if j > 0 && r.Version <= rs[j-1].Version {
					t.Fatalf("writer %d saw version %d after %d", i, r.Version, rs[j-1].Version)
				}
				if _, dup := byVersion[r.Version]; dup {
					t.Fatalf("version %d assigned twice", r.Version)
				}
				byVersion[r.Version] = r
				if hashes[r.ChangeHash] {
					t.Fatalf("change hash %s repeated", r.ChangeHash)
				}
				hashes[r.ChangeHash] = true
			}
		}
		for v := uint64(1); v <= writers*each; v++ {
			if _, ok := byVersion[v]; !ok {
				t.Fatalf("version %d missing: versions are not sequential", v)
			}
		}
		// Outbox order is version order.
		evs, err := s.ReadOutbox(ctx, "acme", 0, writers*each+1)
		mustOK(t, err, "ReadOutbox")
		mustEqual(t, len(evs), writers*each, "events")
		for i, e := range evs {
			r := byVersion[uint64(i+1)]
			mustEqual(t, [2]any{e.Seq, e.Event.ChangeHash}, [2]any{r.Seq, r.ChangeHash}, "event %d is version %d", i, i+1)
		}
		d, _ := s.GetDocument(ctx, "acme", "app1", "shared")
		mustEqual(t, d.Version, uint64(writers*each), "final version")
	}},
	{"OutboxCommitOrderAcrossOrgs", func(t *testing.T, s store.Store) {
		orgs := []string{"acme", "beta", "gamma"}
		for _, o := range orgs {
			mkOrg(t, s, o)
			mkFormation(t, s, o, "app1")
		}
		const writersPerOrg, batches, batchSize = 3, 15, 4
		type seen struct {
			seqs []int64
			err  error
		}
		stop := make(chan struct{})
		readers := make([]seen, len(orgs))
		var rwg sync.WaitGroup
		// Each reader follows a cursor the way a sink does: if seq n+1 were
		// ever visible before n, the cursor would pass n and n would be lost.
		for k, o := range orgs {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				var cursor int64
				final := false
				for {
					evs, err := s.ReadOutbox(ctx, o, cursor, 50)
					if err != nil {
						readers[k].err = err
						return
					}
					for _, e := range evs {
						if e.Seq <= cursor {
							readers[k].err = fmt.Errorf("seq %d after cursor %d", e.Seq, cursor)
							return
						}
						cursor = e.Seq
						readers[k].seqs = append(readers[k].seqs, e.Seq)
					}
					if len(evs) > 0 {
						continue
					}
					if final {
						return
					}
					select {
					case <-stop:
						final = true // one more pass after the writers are done
					default:
						runtime.Gosched()
					}
				}
			}()
		}
		errs := parallel(len(orgs)*writersPerOrg, func(i int) error {
			o := orgs[i%len(orgs)]
			for b := 0; b < batches; b++ {
				var ws []store.DocumentWrite
				for j := 0; j < batchSize; j++ {
					ws = append(ws, docWrite(o, "app1", fmt.Sprintf("w%d-%d", i, j), fmt.Sprintf(`{"b":%d}`, b), t0))
				}
				rs, err := s.WriteDocuments(ctx, ws)
				if err != nil {
					return err
				}
				for _, r := range rs {
					if r.Err != nil || !r.Changed {
						return fmt.Errorf("write result %+v", r)
					}
				}
			}
			return nil
		})
		close(stop)
		rwg.Wait()
		for _, err := range errs {
			mustOK(t, err, "writer")
		}
		for k, o := range orgs {
			mustOK(t, readers[k].err, "reader %s", o)
			all, err := s.ReadOutbox(ctx, o, 0, 1_000_000)
			mustOK(t, err, "ReadOutbox")
			mustEqual(t, len(all), writersPerOrg*batches*batchSize, "%s events", o)
			mustEqual(t, readers[k].seqs, seqsOf(all), "%s: the following reader saw every event, in order", o)
		}
	}},
}
