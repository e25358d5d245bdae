package sqlite

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// BenchmarkEnrollFullWindow measures one enrollment when the sliding hour
// already holds 200,000 approvals (about 55 a second), for the minute
// buckets (default) and for a plain index range count.
func BenchmarkEnrollFullWindow(b *testing.B) {
	for _, mode := range []struct {
		name    string
		byIndex bool
	}{{"Buckets", false}, {"IndexCount", true}} {
		b.Run(mode.name, func(b *testing.B) {
			s := openAt(b, filepath.Join(b.TempDir(), "g.db"), func(c *config) { c.rateByIndex = mode.byIndex })
			defer s.Close()
			q := model.DefaultQuotas()
			q.MaxEnrollmentsPerHour = math.MaxUint32
			if err := s.CreateOrg(bg, model.Organization{OrgID: "acme", Quotas: q}); err != nil {
				b.Fatal(err)
			}
			if err := s.CreateFormation(bg, model.Formation{OrgID: "acme", AppID: "app1", Status: model.FormationActive}, nil); err != nil {
				b.Fatal(err)
			}
			const now = 100 * hourMs
			const prefill = 200_000
			err := s.write(bg, func(tx *txn) error {
				for i := 0; i < prefill; i++ {
					if err := tx.appendAudit(model.AuditEntry{AuditID: fmt.Sprintf("p%d", i), OrgID: "acme", AppID: "app1",
						Decision:    model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}},
						TimestampMs: now - hourMs + uint64(i)*(hourMs/prefill)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				err := s.Enroll(bg, store.EnrollTx{OrgID: "acme", AppID: "app1", NowMs: now + uint64(i), RateLimit: math.MaxUint32,
					Audit: model.AuditEntry{AuditID: fmt.Sprintf("b%d", i), OrgID: "acme", AppID: "app1", TimestampMs: now + uint64(i),
						Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}}}})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
