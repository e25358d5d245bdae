package storetest

import (
	"fmt"
	"math"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Bench runs the store benchmarks; open returns a fresh, empty store.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	unlimited := func(q *model.OrgQuotas) {
		q.MaxFormations, q.MaxPeersPerFormation, q.MaxDocumentsPerFormation = math.MaxUint32, math.MaxUint32, math.MaxUint32
		q.MaxCdcSinks, q.MaxEnrollmentsPerHour = math.MaxUint32, math.MaxUint32
	}
	b.Run("GetOrg", func(b *testing.B) {
		s := open(b)
		mkOrg(b, s, "acme")
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := s.GetOrg(ctx, "acme"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetOrgParallel", func(b *testing.B) {
		s := open(b)
		mkOrg(b, s, "acme")
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.GetOrg(ctx, "acme"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// CreateFormation fills orgs of 100 formations (quota 100), so the
	// quota check sees realistic counts whatever b.N is; org creation is
	// 1% of the calls.
	b.Run("CreateFormation", func(b *testing.B) {
		s := open(b)
		g := make([]byte, 200) // about a sealed genesis
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			orgID := fmt.Sprintf("org%d", i/100)
			if i%100 == 0 {
				mkOrg(b, s, orgID, func(q *model.OrgQuotas) { q.MaxFormations = 100 })
			}
			if err := s.CreateFormation(ctx, formation(orgID, fmt.Sprintf("app%d", i)), g); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	// Enroll: token consumption, rate-limit check over the org's approvals,
	// peer count, audit append and certificate insert in one transaction.
	// One approval every 10 ms of logical time, so the sliding hour holds up
	// to 360k approvals as b.N grows.
	b.Run("Enroll", func(b *testing.B) {
		s := open(b)
		mkOrg(b, s, "acme", unlimited)
		mkFormation(b, s, "acme", "app1")
		tk := token("acme", "app1", "peat_bench")
		mkToken(b, s, tk)
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			i++
			now := t0 + uint64(i)*10
			tx := enrollTx("acme", "app1", fmt.Sprintf("aud%d", i), now)
			tx.RateLimit, tx.PeerLimit, tx.TokenID = math.MaxUint32, math.MaxUint32, "peat_bench"
			tx.Certificate = cert("acme", "app1", fmt.Sprintf("ser%d", i), now)
			if err := s.Enroll(ctx, tx); err != nil {
				b.Fatal(err)
			}
		}
	})
	// WriteDocuments64: one batch (one transaction, one commit) of 64
	// changed documents out of a working set of 1024.
	b.Run("WriteDocuments64", func(b *testing.B) {
		s := open(b)
		mkOrg(b, s, "acme", unlimited)
		mkFormation(b, s, "acme", "app1")
		ws := make([]store.DocumentWrite, 64)
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			for j := range ws {
				n := i*64 + j
				ws[j] = docWrite("acme", "app1", fmt.Sprintf("doc%d", n%1024),
					fmt.Sprintf(`{"n":%d,"name":"sensor-%d","temp":21.5,"tags":["a","b"]}`, n, n%1024), t0)
				ws[j].DocLimit = math.MaxUint32
			}
			i++
			rs, err := s.WriteDocuments(ctx, ws)
			if err != nil {
				b.Fatal(err)
			}
			if rs[63].Err != nil || !rs[63].Changed {
				b.Fatalf("result %+v", rs[63])
			}
		}
		b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "docs/s")
	})
	b.Run("WriteDocuments1", func(b *testing.B) {
		s := open(b)
		mkOrg(b, s, "acme", unlimited)
		mkFormation(b, s, "acme", "app1")
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			i++
			w := docWrite("acme", "app1", fmt.Sprintf("doc%d", i%1024), fmt.Sprintf(`{"n":%d}`, i), t0)
			if _, err := s.WriteDocuments(ctx, []store.DocumentWrite{w}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadOutbox100", func(b *testing.B) {
		s := open(b)
		mkOrg(b, s, "acme", unlimited)
		mkFormation(b, s, "acme", "app1")
		ws := make([]store.DocumentWrite, 1000)
		for j := range ws {
			ws[j] = docWrite("acme", "app1", fmt.Sprintf("doc%d", j), `{"k":"v"}`, t0)
			ws[j].DocLimit = math.MaxUint32
		}
		if _, err := s.WriteDocuments(ctx, ws); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		i := 0
		for b.Loop() {
			evs, err := s.ReadOutbox(ctx, "acme", int64(i%900), 100)
			if err != nil || len(evs) != 100 {
				b.Fatalf("ReadOutbox: %d events, %v", len(evs), err)
			}
			i++
		}
	})
}
