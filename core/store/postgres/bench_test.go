package postgres_test

import (
	"fmt"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Benchmarks report per-call latency against the local test cluster
// (fsync off, loopback TCP); they assert nothing about speed.

func BenchmarkGetOrg(b *testing.B) {
	s := open(b)
	mkOrg(b, s, "acme", nil)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.GetOrg(ctx, "acme"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreateFormation(b *testing.B) {
	s := open(b)
	// Formations are spread over orgs of 10 (the default quota), so the
	// quota count stays at its real-world size.
	i := 0
	for ; b.Loop(); i++ {
		orgID := fmt.Sprintf("org%d", i/10)
		if i%10 == 0 {
			b.StopTimer()
			mkOrg(b, s, orgID, nil)
			b.StartTimer()
		}
		if err := s.CreateFormation(ctx, formation(orgID, fmt.Sprintf("f%d", i)), []byte("genesis-bytes")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnroll(b *testing.B) {
	s := open(b)
	mkOrg(b, s, "acme", func(q *model.OrgQuotas) { q.MaxFormations = 1 << 30 })
	mkFormation(b, s, "acme", "app")
	tok := model.EnrollmentToken{TokenID: "peat_tok", OrgID: "acme", AppID: "app", Label: "l", CreatedAt: t0}
	if err := s.CreateToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	app := "app"
	i := 0
	for b.Loop() {
		i++
		if i%100 == 0 {
			// A new formation every 100 enrollments keeps the peer count at
			// a realistic size (max_peers_per_formation defaults to 100).
			b.StopTimer()
			app = fmt.Sprintf("app%d", i)
			mkFormation(b, s, "acme", app)
			b.StartTimer()
		}
		id := fmt.Sprintf("a%d", i)
		// Each enrollment is in a fresh hour and hands out a certificate, so
		// every check and every write of the path runs.
		now := t0 + uint64(i)*3_600_001
		tokenID := ""
		if app == "app" {
			tokenID = "peat_tok"
		}
		err := s.Enroll(ctx, store.EnrollTx{OrgID: "acme", AppID: app, NowMs: now, RateLimit: 1000, PeerLimit: 100,
			TokenID: tokenID,
			Audit: model.AuditEntry{AuditID: id, OrgID: "acme", AppID: app, IdpID: "token", Subject: "token:x",
				Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}}, TimestampMs: now},
			Certificate: &model.Certificate{Serial: id, PeerID: "p", NodeID: "n", SubjectKey: "k", Fingerprint: "f",
				Tier: "Endpoint", IssuedAt: now, ExpiresAt: now + 1, AuditID: id, Raw: make([]byte, 200)}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteDocuments64(b *testing.B) {
	s := open(b)
	mkOrg(b, s, "acme", nil)
	mkFormation(b, s, "acme", "app")
	body := []byte(`{"lat":51.5,"lon":-0.12,"alt":35,"callsign":"falcon-1","status":"ok","ts":1767225600000}`)
	i := 0
	for b.Loop() {
		i++
		batch := make([]store.DocumentWrite, 64)
		for j := range batch {
			// 64 distinct documents, each changed every round.
			batch[j] = store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: fmt.Sprintf("d%d", j), ActorID: "x",
				Body: append(append([]byte{}, body[:len(body)-1]...), fmt.Sprintf(`,"r":%d}`, i)...), TimestampMs: t0,
				DocLimit: 10000}
		}
		rs, err := s.WriteDocuments(ctx, batch)
		if err != nil || rs[63].Err != nil || !rs[63].Changed {
			b.Fatalf("%v %+v", err, rs[63])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/64, "ns/doc")
}
