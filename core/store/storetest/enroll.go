package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

const hour uint64 = 3_600_000

// auditCount is the number of the org's audit entries.
func auditCount(t testing.TB, s store.Store, orgID string) int {
	t.Helper()
	es, err := s.ListAudit(ctx, orgID, nil, 1_000_000)
	mustOK(t, err, "ListAudit")
	return len(es)
}

func tokenUses(t testing.TB, s store.Store, orgID, tokenID string) uint32 {
	t.Helper()
	tk, err := s.GetToken(ctx, orgID, tokenID)
	mustOK(t, err, "GetToken")
	return tk.Uses
}

var enrollTests = []subtest{
	{"ApprovedWritesAuditTokenAndCertificate", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkToken(t, s, token("acme", "app1", "peat_a"))
		tx := enrollTx("acme", "app1", "aud1", t0+100)
		tx.TokenID = "peat_a"
		tx.Audit.Serial = ptr("ser1")
		tx.Certificate = cert("acme", "app1", "ser1", t0+100)
		mustOK(t, s.Enroll(ctx, tx), "Enroll")
		mustEqual(t, tokenUses(t, s, "acme", "peat_a"), uint32(1), "token uses")
		es, _ := s.ListAudit(ctx, "acme", nil, 10)
		mustEqual(t, es, []model.AuditEntry{tx.Audit}, "audit")
		c, err := s.GetCertificate(ctx, "acme", "app1", "ser1")
		mustOK(t, err, "GetCertificate")
		mustEqual(t, c, *tx.Certificate, "certificate")
		// Without token and certificate only the audit entry is written.
		mustOK(t, s.Enroll(ctx, enrollTx("acme", "app1", "aud2", t0+200)), "open enrollment")
		mustEqual(t, auditCount(t, s, "acme"), 2, "audit entries")
		cs, _ := s.ListCertificates(ctx, "acme", "app1")
		mustEqual(t, len(cs), 1, "certificates")
	}},
	{"MissingOrSuspendedFormation", func(t *testing.T, s store.Store) {
		err := s.Enroll(ctx, enrollTx("nope", "app1", "a1", t0))
		if !errors.Is(err, store.ErrOrgNotFound) && !errors.Is(err, store.ErrFormationNotFound) {
			t.Fatalf("Enroll in missing org: %v, want ErrOrgNotFound or ErrFormationNotFound", err)
		}
		mkOrg(t, s, "acme")
		mustIs(t, s.Enroll(ctx, enrollTx("acme", "app1", "a1", t0)), store.ErrFormationNotFound, "missing formation")
		mkFormation(t, s, "acme", "app1")
		mkToken(t, s, token("acme", "app1", "peat_a"))
		_, err = s.SetFormationStatus(ctx, "acme", "app1", model.FormationSuspended)
		mustOK(t, err, "suspend")
		tx := enrollTx("acme", "app1", "a1", t0)
		tx.TokenID = "peat_a"
		tx.Certificate = cert("acme", "app1", "s1", t0)
		mustIs(t, s.Enroll(ctx, tx), store.ErrSuspended, "suspended")
		mustEqual(t, auditCount(t, s, "acme"), 0, "nothing audited while suspended")
		mustEqual(t, tokenUses(t, s, "acme", "peat_a"), uint32(0), "token not consumed while suspended")
		_, err = s.SetFormationStatus(ctx, "acme", "app1", model.FormationActive)
		mustOK(t, err, "resume")
		mustOK(t, s.Enroll(ctx, tx), "after resume")
	}},
	{"RateLimitSlidingHourCountsApprovalsOnly", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		mkFormation(t, s, "beta", "app1")
		now := t0 + 10*hour
		// Outside the window: one millisecond too old.
		mustOK(t, s.AppendAudit(ctx, approved("acme", "app1", "old", now-hour-1)), "old approval")
		// Denials inside the window never count.
		for i := 0; i < 5; i++ {
			mustOK(t, s.AppendAudit(ctx, denied("acme", "app1", fmt.Sprintf("den%d", i), now-10)), "denial")
		}
		// Another org's approvals never count.
		for i := 0; i < 5; i++ {
			mustOK(t, s.Enroll(ctx, enrollTx("beta", "app1", fmt.Sprintf("b%d", i), now)), "beta enroll")
		}
		// Exactly an hour old is inside the window, and other formations of
		// the org count.
		mustOK(t, s.AppendAudit(ctx, approved("acme", "app2", "edge", now-hour)), "edge approval")
		limited := func(id string) store.EnrollTx {
			tx := enrollTx("acme", "app1", id, now)
			tx.RateLimit = 3
			return tx
		}
		mustOK(t, s.Enroll(ctx, limited("e1")), "second approval in window")
		mustOK(t, s.Enroll(ctx, limited("e2")), "third approval in window")
		mkToken(t, s, token("acme", "app1", "peat_a"))
		tx := limited("e3")
		tx.TokenID = "peat_a"
		tx.Certificate = cert("acme", "app1", "s1", now)
		mustIs(t, s.Enroll(ctx, tx), store.ErrRateLimited, "fourth approval")
		mustEqual(t, tokenUses(t, s, "acme", "peat_a"), uint32(0), "rate-limited enrollment consumed no token")
		_, err := s.GetCertificate(ctx, "acme", "app1", "s1")
		mustIs(t, err, store.ErrNotFound, "rate-limited enrollment stored no certificate")
		mustEqual(t, auditCount(t, s, "acme"), 9, "rate-limited enrollment audited nothing")
		// One millisecond later the edge entry has left the window.
		tx.NowMs = now + 1
		mustOK(t, s.Enroll(ctx, tx), "after the window slid")
		// Limit 0 blocks every enrollment.
		tx0 := enrollTx("beta", "app1", "z", now)
		tx0.RateLimit = 0
		mustIs(t, s.Enroll(ctx, tx0), store.ErrRateLimited, "rate limit 0")
	}},
	{"TokenChecks", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		mkFormation(t, s, "beta", "app1")
		exp := token("acme", "app1", "peat_exp")
		exp.ExpiresAt = ptr(t0 + 1000)
		lim := token("acme", "app1", "peat_lim")
		lim.MaxUses = ptr(uint32(2))
		zero := token("acme", "app1", "peat_zero")
		zero.MaxUses = ptr(uint32(0))
		for _, tk := range []model.EnrollmentToken{exp, lim, zero, token("acme", "app1", "peat_rev"),
			token("acme", "app2", "peat_app2"), token("beta", "app1", "peat_beta")} {
			mkToken(t, s, tk)
		}
		_, err := s.RevokeToken(ctx, "acme", "peat_rev")
		mustOK(t, err, "RevokeToken")
		n := 0
		try := func(tokenID string, now uint64) error {
			n++
			tx := enrollTx("acme", "app1", fmt.Sprintf("a%d", n), now)
			tx.TokenID = tokenID
			return s.Enroll(ctx, tx)
		}
		mustOK(t, try("peat_exp", t0+1000), "expires_at == now is still valid")
		mustIs(t, try("peat_exp", t0+1001), store.ErrTokenInvalid, "expired")
		mustEqual(t, tokenUses(t, s, "acme", "peat_exp"), uint32(1), "expired attempt not counted")
		mustOK(t, try("peat_lim", t0), "use 1 of 2")
		mustOK(t, try("peat_lim", t0), "use 2 of 2")
		mustIs(t, try("peat_lim", t0), store.ErrTokenInvalid, "exhausted")
		mustEqual(t, tokenUses(t, s, "acme", "peat_lim"), uint32(2), "uses stop at max_uses")
		mustIs(t, try("peat_zero", t0), store.ErrTokenInvalid, "max_uses 0")
		mustIs(t, try("peat_rev", t0), store.ErrTokenInvalid, "revoked")
		mustIs(t, try("peat_app2", t0), store.ErrTokenInvalid, "token of another formation")
		mustIs(t, try("peat_beta", t0), store.ErrTokenInvalid, "token of another org")
		mustIs(t, try("peat_unknown", t0), store.ErrTokenInvalid, "unknown token")
		mustEqual(t, tokenUses(t, s, "acme", "peat_app2"), uint32(0), "wrong-app token not consumed")
		mustEqual(t, auditCount(t, s, "acme"), 3, "only the approvals are audited")
	}},
	{"PeerQuota", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		withCert := func(app, serial string) store.EnrollTx {
			tx := enrollTx("acme", app, "aud-"+app+serial, t0)
			tx.PeerLimit = 2
			tx.Certificate = cert("acme", app, serial, t0)
			return tx
		}
		mustOK(t, s.Enroll(ctx, withCert("app1", "s1")), "peer 1")
		mustOK(t, s.Enroll(ctx, withCert("app1", "s2")), "peer 2")
		mkToken(t, s, token("acme", "app1", "peat_a"))
		tx := withCert("app1", "s3")
		tx.TokenID = "peat_a"
		mustIs(t, s.Enroll(ctx, tx), store.ErrQuota, "peer 3")
		mustEqual(t, tokenUses(t, s, "acme", "peat_a"), uint32(0), "refused enrollment consumed no token")
		mustEqual(t, auditCount(t, s, "acme"), 2, "refused enrollment audited nothing")
		// Other formations have their own count; enrolling without a
		// certificate is not bounded by peers.
		mustOK(t, s.Enroll(ctx, withCert("app2", "s1")), "other formation")
		noCert := withCert("app1", "x")
		noCert.Certificate = nil
		mustOK(t, s.Enroll(ctx, noCert), "no certificate")
		// Revoked certificates do not count.
		_, err := s.RevokeCertificate(ctx, "acme", "app1", "s1", t0+5)
		mustOK(t, err, "RevokeCertificate")
		mustOK(t, s.Enroll(ctx, tx), "after a revocation")
		zero := withCert("app2", "s9")
		zero.PeerLimit = 0
		mustIs(t, s.Enroll(ctx, zero), store.ErrQuota, "peer limit 0")
	}},
	{"PeerQuotaCountsLiveNodes", func(t *testing.T, s store.Store) {
		// A peer is a member key with a certificate neither revoked nor
		// expired: renewals and expired certificates never lock the
		// formation, and a new key is a new peer whatever its node_id.
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		enroll := func(serial, node string, now, expires uint64) error {
			tx := enrollTx("acme", "app1", "aud-"+serial, now)
			tx.PeerLimit = 2
			c := cert("acme", "app1", serial, now)
			c.NodeID, c.PeerID, c.SubjectKey, c.ExpiresAt = node, node, "key-"+node, expires
			tx.Certificate = c
			return s.Enroll(ctx, tx)
		}
		mustOK(t, enroll("x1", "node-x", t0, t0+5_000), "node x")
		mustOK(t, enroll("y1", "node-y", t0, t0+50_000), "node y")
		mustIs(t, enroll("z1", "node-z", t0+10, t0+100_000), store.ErrQuota, "a third node")
		mustOK(t, enroll("x2", "node-x", t0+1_500, t0+60_000), "node x renews (same key) while its certificate is live")
		newKey := enrollTx("acme", "app1", "aud-x9", t0+2_600)
		newKey.PeerLimit = 2
		newKey.Certificate = cert("acme", "app1", "x9", t0+2_600)
		newKey.Certificate.NodeID, newKey.Certificate.PeerID = "node-x", "node-x"
		mustIs(t, s.Enroll(ctx, newKey), store.ErrQuota, "a new key under a live node_id is a new peer")
		mustIs(t, enroll("z2", "node-z", t0+30_000, t0+100_000), store.ErrQuota, "x and y still live")
		mustOK(t, enroll("z3", "node-z", t0+61_000, t0+200_000), "every earlier certificate expired")
		mustOK(t, enroll("w1", "node-w", t0+61_010, t0+200_000), "second live node")
		mustIs(t, enroll("v1", "node-v", t0+61_020, t0+200_000), store.ErrQuota, "z and w live")
		_, err := s.RevokeCertificate(ctx, "acme", "app1", "w1", t0+61_030)
		mustOK(t, err, "revoke w1")
		mustOK(t, enroll("v2", "node-v", t0+61_040, t0+200_000), "after revoking a live certificate")
		// Revoking an expired certificate frees nothing: z and v are live.
		_, err = s.RevokeCertificate(ctx, "acme", "app1", "x1", t0+62_000)
		mustOK(t, err, "revoke expired x1")
		mustIs(t, enroll("u1", "node-u", t0+63_100, t0+200_000), store.ErrQuota, "z and v live")
		mustEqual(t, auditCount(t, s, "acme"), 6, "only approvals are audited")
	}},
}

var certificateTests = []subtest{
	{"ListGetRevoke", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		for i, serial := range []string{"c", "a", "b"} {
			tx := enrollTx("acme", "app1", "aud"+serial, t0)
			tx.Certificate = cert("acme", "app1", serial, t0+uint64(10-i))
			mustOK(t, s.Enroll(ctx, tx), "Enroll %s", serial)
		}
		other := enrollTx("acme", "app2", "other", t0)
		other.Certificate = cert("acme", "app2", "z", t0)
		mustOK(t, s.Enroll(ctx, other), "Enroll app2")
		cs, err := s.ListCertificates(ctx, "acme", "app1")
		mustOK(t, err, "ListCertificates")
		var serials []string
		for _, c := range cs {
			serials = append(serials, c.Serial)
		}
		mustEqual(t, serials, []string{"b", "a", "c"}, "issued_at ascending")
		_, err = s.GetCertificate(ctx, "acme", "app1", "z")
		mustIs(t, err, store.ErrNotFound, "certificate of another formation")

		revoked, seq, err := s.ListRevoked(ctx, "acme", "app1")
		mustOK(t, err, "ListRevoked")
		mustEqual(t, len(revoked), 0, "nothing revoked yet")
		mustEqual(t, seq, uint64(0), "initial sequence")

		c, err := s.RevokeCertificate(ctx, "acme", "app1", "a", t0+50)
		mustOK(t, err, "RevokeCertificate")
		want := *cert("acme", "app1", "a", t0+9)
		want.Revoked, want.RevokedAt = true, ptr(t0+50)
		mustEqual(t, c, want, "revoked certificate returned")
		got, _ := s.GetCertificate(ctx, "acme", "app1", "a")
		mustEqual(t, got, want, "revoked certificate stored")
		_, err = s.RevokeCertificate(ctx, "acme", "app1", "a", t0+60)
		mustIs(t, err, store.ErrAlreadyRevoked, "second revoke")
		_, err = s.RevokeCertificate(ctx, "acme", "app1", "nope", t0+60)
		mustIs(t, err, store.ErrNotFound, "revoke missing")
		_, err = s.RevokeCertificate(ctx, "acme", "app1", "c", t0+70)
		mustOK(t, err, "revoke c")

		revoked, seq, err = s.ListRevoked(ctx, "acme", "app1")
		mustOK(t, err, "ListRevoked")
		mustEqual(t, seq, uint64(2), "sequence counts revocations, not failed attempts")
		serials = nil
		for _, c := range revoked {
			serials = append(serials, c.Serial)
			mustEqual(t, c.Revoked, true, "listed certificate is revoked")
		}
		if len(serials) != 2 || !(serials[0] == "a" && serials[1] == "c" || serials[0] == "c" && serials[1] == "a") {
			t.Fatalf("ListRevoked = %v, want a and c", serials)
		}
		_, seq, _ = s.ListRevoked(ctx, "acme", "app2")
		mustEqual(t, seq, uint64(0), "other formation's sequence")
	}},
}
