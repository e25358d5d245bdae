package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// The enrollment mix drives backend tests that compare batched enrollment
// with one-at-a-time enrollment on identical data.

// SeedEnrollMix gives s two orgs: "a" (rate limit 20, peer limit 12) with an
// active and a suspended formation and four tokens, and "b" with generous
// limits.
func SeedEnrollMix(t testing.TB, s store.Store) {
	t.Helper()
	q := model.DefaultQuotas()
	q.MaxEnrollmentsPerHour, q.MaxPeersPerFormation = 20, 12
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateOrg(ctx, model.Organization{OrgID: "a", DisplayName: "a", Quotas: q, CreatedAt: 1}))
	must(s.CreateOrg(ctx, model.Organization{OrgID: "b", DisplayName: "b", Quotas: model.DefaultQuotas(), CreatedAt: 1}))
	for _, f := range []struct{ org, app string }{{"a", "f1"}, {"a", "f2"}, {"b", "f1"}} {
		must(s.CreateFormation(ctx, model.Formation{OrgID: f.org, AppID: f.app, MeshID: "mesh-" + f.org + f.app,
			EnrollmentPolicy: model.PolicyOpen, Status: model.FormationActive, CreatedAt: 1}, []byte("g")))
	}
	if _, err := s.SetFormationStatus(ctx, "a", "f2", model.FormationSuspended); err != nil {
		t.Fatal(err)
	}
	five, exp := uint32(5), uint64(1)
	for _, tk := range []model.EnrollmentToken{
		{TokenID: "peat_five", OrgID: "a", AppID: "f1", MaxUses: &five},
		{TokenID: "peat_revoked", OrgID: "a", AppID: "f1", Revoked: true},
		{TokenID: "peat_expired", OrgID: "a", AppID: "f1", ExpiresAt: &exp},
		{TokenID: "peat_other", OrgID: "a", AppID: "f2"},
		{TokenID: "peat_b", OrgID: "b", AppID: "f1"},
	} {
		tk.Label, tk.CreatedAt = "t", 1
		must(s.CreateToken(ctx, tk))
	}
}

// RandomEnroll returns the i-th enrollment of a random mix: both orgs, the
// suspended and a missing formation, every token, stale expectations.
func RandomEnroll(r *rand.Rand, i int, now uint64) store.EnrollTx {
	orgs := []string{"a", "a", "a", "b", "nope"}
	org := orgs[r.IntN(len(orgs))]
	app := []string{"f1", "f1", "f1", "f2", "missing"}[r.IntN(5)]
	tx := store.EnrollTx{OrgID: org, AppID: app, NowMs: now + uint64(r.IntN(3)), RateLimit: 20, PeerLimit: 12}
	if org != "a" {
		tx.RateLimit, tx.PeerLimit = model.DefaultQuotas().MaxEnrollmentsPerHour, model.DefaultQuotas().MaxPeersPerFormation
	}
	if r.IntN(3) == 0 {
		tx.TokenID = []string{"peat_five", "peat_revoked", "peat_expired", "peat_other", "peat_b", "peat_unknown"}[r.IntN(6)]
	}
	if r.IntN(4) > 0 {
		tx.Policy, tx.MeshID = model.PolicyOpen, "mesh-"+org+app
		if r.IntN(10) == 0 {
			tx.MeshID = "mesh-old"
		}
	}
	tx.Audit = model.AuditEntry{AuditID: fmt.Sprintf("aud-%d", i), OrgID: org, AppID: app, IdpID: "none",
		Subject: "s", Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}}, TimestampMs: tx.NowMs}
	if r.IntN(3) > 0 {
		serial := fmt.Sprintf("ser-%d", i)
		// Nodes from a small pool, so some enrollments are renewals, and a
		// validity of a minute, so earlier peers expire as the mix goes on.
		node := fmt.Sprintf("node-%d", r.IntN(16))
		tx.Certificate = &model.Certificate{Serial: serial, PeerID: node, NodeID: node, SubjectKey: "key-" + node, Fingerprint: "f",
			Tier: "Endpoint", IssuedAt: tx.NowMs, ExpiresAt: tx.NowMs + 60_000, AuditID: tx.Audit.AuditID, Raw: []byte{1}}
		tx.Audit.Serial = &serial
	}
	return tx
}

// ErrClass names err by the store sentinel it matches, for comparing
// outcomes across runs.
func ErrClass(err error) string {
	for _, e := range []error{store.ErrOrgNotFound, store.ErrFormationNotFound, store.ErrStale, store.ErrSuspended,
		store.ErrRateLimited, store.ErrTokenInvalid, store.ErrQuota, store.ErrExists} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return "ok"
}
