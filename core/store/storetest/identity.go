package storetest

import (
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

func idp(orgID, id string) model.IdpConfig {
	return model.IdpConfig{IdpID: id, OrgID: orgID, IssuerURL: "https://issuer.example/" + id, ClientID: "client-" + id,
		ClientSecret: []byte("sealed-" + id), Enabled: true, CreatedAt: t0}
}

func rule(orgID, id string) model.PolicyRule {
	return model.PolicyRule{RuleID: id, OrgID: orgID, ClaimKey: "groups", ClaimValue: "ops", Tier: model.TierInfrastructure,
		Permissions: 7, Priority: 10, Effect: model.EffectAllow, RequiredClaims: map[string]string{"email_verified": "true"}}
}

var identityTests = []subtest{
	{"IdpRoundTripAndOrder", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		for _, id := range []string{"idp3", "idp1", "idp2"} {
			mustOK(t, s.CreateIdp(ctx, idp("acme", id)), "CreateIdp %s", id)
		}
		got, err := s.GetIdp(ctx, "acme", "idp1")
		mustOK(t, err, "GetIdp")
		mustEqual(t, got, idp("acme", "idp1"), "GetIdp")
		list, err := s.ListIdps(ctx, "acme")
		mustOK(t, err, "ListIdps")
		var ids []string
		for _, i := range list {
			ids = append(ids, i.IdpID)
		}
		mustEqual(t, ids, []string{"idp1", "idp2", "idp3"}, "ListIdps order")
		mustIs(t, s.CreateIdp(ctx, idp("acme", "idp1")), store.ErrExists, "duplicate idp")
		_, err = s.GetIdp(ctx, "acme", "nope")
		mustIs(t, err, store.ErrNotFound, "GetIdp missing")
	}},
	{"IdpMissingOrg", func(t *testing.T, s store.Store) {
		mustIs(t, s.CreateIdp(ctx, idp("nope", "idp1")), store.ErrOrgNotFound, "CreateIdp")
		_, err := s.ListIdps(ctx, "nope")
		mustIs(t, err, store.ErrOrgNotFound, "ListIdps")
	}},
	{"IdpEnableAndSecretAndDelete", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mustOK(t, s.CreateIdp(ctx, idp("acme", "idp1")), "CreateIdp")
		got, err := s.SetIdpEnabled(ctx, "acme", "idp1", false)
		mustOK(t, err, "SetIdpEnabled")
		want := idp("acme", "idp1")
		want.Enabled = false
		mustEqual(t, got, want, "returned idp")
		got, _ = s.GetIdp(ctx, "acme", "idp1")
		mustEqual(t, got.Enabled, false, "stored enabled")
		_, err = s.SetIdpEnabled(ctx, "acme", "nope", true)
		mustIs(t, err, store.ErrNotFound, "SetIdpEnabled missing")

		mustOK(t, s.ReplaceIdpSecret(ctx, "acme", "idp1", []byte("sealed-idp1"), []byte("resealed")), "ReplaceIdpSecret")
		got, _ = s.GetIdp(ctx, "acme", "idp1")
		mustEqual(t, got.ClientSecret, []byte("resealed"), "secret replaced")
		mustIs(t, s.ReplaceIdpSecret(ctx, "acme", "idp1", []byte("sealed-idp1"), []byte("x")), store.ErrConflict, "stale old secret")
		got, _ = s.GetIdp(ctx, "acme", "idp1")
		mustEqual(t, got.ClientSecret, []byte("resealed"), "secret unchanged after conflict")
		mustIs(t, s.ReplaceIdpSecret(ctx, "acme", "nope", nil, []byte("x")), store.ErrNotFound, "ReplaceIdpSecret missing")

		mustOK(t, s.DeleteIdp(ctx, "acme", "idp1"), "DeleteIdp")
		_, err = s.GetIdp(ctx, "acme", "idp1")
		mustIs(t, err, store.ErrNotFound, "after delete")
		mustIs(t, s.DeleteIdp(ctx, "acme", "idp1"), store.ErrNotFound, "second delete")
	}},
	{"PolicyRules", func(t *testing.T, s store.Store) {
		mustIs(t, s.CreatePolicyRule(ctx, rule("nope", "r1")), store.ErrOrgNotFound, "missing org")
		_, err := s.ListPolicyRules(ctx, "nope")
		mustIs(t, err, store.ErrOrgNotFound, "ListPolicyRules missing org")
		mkOrg(t, s, "acme")
		r2 := rule("acme", "r2")
		r2.Effect, r2.Tier, r2.RequiredClaims = model.EffectDeny, model.TierEndpoint, nil
		mustOK(t, s.CreatePolicyRule(ctx, r2), "CreatePolicyRule r2")
		mustOK(t, s.CreatePolicyRule(ctx, rule("acme", "r1")), "CreatePolicyRule r1")
		mustIs(t, s.CreatePolicyRule(ctx, rule("acme", "r1")), store.ErrExists, "duplicate rule")
		list, err := s.ListPolicyRules(ctx, "acme")
		mustOK(t, err, "ListPolicyRules")
		if len(list) != 2 {
			t.Fatalf("ListPolicyRules: %d rules, want 2", len(list))
		}
		mustEqual(t, list[0], rule("acme", "r1"), "first rule")
		if len(list[1].RequiredClaims) != 0 {
			t.Fatalf("r2 required claims = %v, want none", list[1].RequiredClaims)
		}
		list[1].RequiredClaims = nil
		mustEqual(t, list[1], r2, "second rule")
		mustOK(t, s.DeletePolicyRule(ctx, "acme", "r1"), "DeletePolicyRule")
		mustIs(t, s.DeletePolicyRule(ctx, "acme", "r1"), store.ErrNotFound, "second delete")
		list, _ = s.ListPolicyRules(ctx, "acme")
		mustEqual(t, len(list), 1, "rules after delete")
	}},
	{"AuditNewestFirstFilterLimit", func(t *testing.T, s store.Store) {
		mustIs(t, s.AppendAudit(ctx, approved("nope", "app1", "a1", t0)), store.ErrOrgNotFound, "missing org")
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		// Appended out of time order; equal timestamps order by audit_id desc.
		entries := []model.AuditEntry{
			approved("acme", "app1", "a2", t0+20),
			denied("acme", "app2", "a1", t0+10),
			approved("acme", "app1", "a3", t0+20),
			approved("acme", "app2", "a0", t0+30),
			approved("beta", "app1", "b1", t0+40),
		}
		entries[2].Serial = ptr("serial-3")
		for _, e := range entries {
			mustOK(t, s.AppendAudit(ctx, e), "AppendAudit %s", e.AuditID)
		}
		ids := func(es []model.AuditEntry) []string {
			var out []string
			for _, e := range es {
				out = append(out, e.AuditID)
			}
			return out
		}
		all, err := s.ListAudit(ctx, "acme", nil, 100)
		mustOK(t, err, "ListAudit")
		mustEqual(t, ids(all), []string{"a0", "a3", "a2", "a1"}, "newest first, ties by audit_id desc")
		mustEqual(t, all[1], entries[2], "entry round trip (approved, with serial)")
		mustEqual(t, all[3], entries[1], "entry round trip (denied)")
		got, _ := s.ListAudit(ctx, "acme", ptr("app1"), 100)
		mustEqual(t, ids(got), []string{"a3", "a2"}, "app filter")
		got, _ = s.ListAudit(ctx, "acme", nil, 2)
		mustEqual(t, ids(got), []string{"a0", "a3"}, "limit 2")
		got, _ = s.ListAudit(ctx, "acme", ptr("app2"), 1)
		mustEqual(t, ids(got), []string{"a0"}, "app filter with limit")
		got, err = s.ListAudit(ctx, "acme", nil, 0)
		mustOK(t, err, "ListAudit limit 0")
		mustEqual(t, len(got), 0, "limit 0 returns nothing")
		got, _ = s.ListAudit(ctx, "acme", ptr("nope"), 10)
		mustEqual(t, len(got), 0, "unknown app")
	}},
}

// cascadeTests populate two orgs with every kind of record, delete one and
// check nothing of it survives while the other is intact.
var cascadeTests = []subtest{
	{"DeleteOrgRemovesEverything", func(t *testing.T, s store.Store) {
		populate := func(o string) {
			mkOrg(t, s, o)
			mkFormation(t, s, o, "app1")
			mkToken(t, s, token(o, "app1", "peat_"+o))
			mustOK(t, s.CreateSink(ctx, natsSink(o, "sink-"+o)), "CreateSink")
			mustOK(t, s.CreateIdp(ctx, idp(o, "idp-"+o)), "CreateIdp")
			mustOK(t, s.CreatePolicyRule(ctx, rule(o, "rule-"+o)), "CreatePolicyRule")
			mustOK(t, s.AppendAudit(ctx, denied(o, "app1", "den-"+o, t0)), "AppendAudit")
			tx := enrollTx(o, "app1", "aud-"+o, t0)
			tx.TokenID = "peat_" + o
			tx.Certificate = cert(o, "app1", "ser-"+o, t0)
			mustOK(t, s.Enroll(ctx, tx), "Enroll")
			r := write1(t, s, docWrite(o, "app1", "doc1", `{"k":"v"}`, t0))
			mustOK(t, r.Err, "document write")
			mustOK(t, s.Advance(ctx, o, "sink-"+o, r.Seq, 1,
				[]store.DeadLetter{{SinkID: "sink-" + o, Seq: r.Seq, Error: "boom", Attempts: 3, Event: model.CdcEvent{OrgID: o}}}, "", t0), "Advance")
			_, err := s.AppendEvent(ctx, model.CdcEvent{OrgID: o, AppID: "app1", DocumentID: "t", Op: model.OpTest, TimestampMs: t0})
			mustOK(t, err, "AppendEvent")
			_, err = s.PutFilter(ctx, store.FilterModule{OrgID: o, Name: "f1", SHA256: "ab", Wasm: []byte("wasm"), CreatedAt: t0}, 10, 1<<20)
			mustOK(t, err, "PutFilter")
			mustOK(t, s.SetFormationFilters(ctx, o, "app1", []model.FilterRef{{Name: "f1"}}), "SetFormationFilters")
		}
		populate("acme")
		populate("beta")
		depthBefore, err := s.OutboxDepth(ctx)
		mustOK(t, err, "OutboxDepth")
		mustEqual(t, depthBefore, int64(4), "outbox depth of two orgs")

		mustOK(t, s.DeleteOrg(ctx, "acme"), "DeleteOrg")
		checkGone := func(label string) {
			_, err := s.GetFormation(ctx, "acme", "app1")
			mustIs(t, err, store.ErrNotFound, "%s formation", label)
			_, err = s.GetGenesis(ctx, "acme", "app1")
			mustIs(t, err, store.ErrNotFound, "%s genesis", label)
			_, err = s.GetToken(ctx, "acme", "peat_acme")
			mustIs(t, err, store.ErrNotFound, "%s token", label)
			_, err = s.GetSink(ctx, "acme", "sink-acme")
			mustIs(t, err, store.ErrNotFound, "%s sink", label)
			_, err = s.GetIdp(ctx, "acme", "idp-acme")
			mustIs(t, err, store.ErrNotFound, "%s idp", label)
			au, err := s.ListAudit(ctx, "acme", nil, 100)
			mustOK(t, err, "ListAudit")
			mustEqual(t, len(au), 0, "%s audit", label)
			_, err = s.GetCertificate(ctx, "acme", "app1", "ser-acme")
			mustIs(t, err, store.ErrNotFound, "%s certificate", label)
			_, err = s.GetDocument(ctx, "acme", "app1", "doc1")
			mustIs(t, err, store.ErrNotFound, "%s document", label)
			ev, err := s.ReadOutbox(ctx, "acme", 0, 100)
			mustOK(t, err, "ReadOutbox")
			mustEqual(t, len(ev), 0, "%s outbox", label)
			n, _ := s.CountAfter(ctx, "acme", 0)
			mustEqual(t, n, int64(0), "%s CountAfter", label)
			last, _ := s.LastSeq(ctx, "acme")
			mustEqual(t, last, int64(0), "%s LastSeq", label)
			p, err := s.GetProgress(ctx, "sink-acme")
			mustOK(t, err, "GetProgress")
			mustEqual(t, p, store.SinkProgress{}, "%s sink progress", label)
			dl, _ := s.ListDeadLetters(ctx, "acme", "sink-acme", 100)
			mustEqual(t, len(dl), 0, "%s dead letters", label)
			_, err = s.GetFilter(ctx, "acme", "f1")
			mustIs(t, err, store.ErrNotFound, "%s filter", label)
		}
		checkGone("deleted org")
		_, err = s.GetOrg(ctx, "acme")
		mustIs(t, err, store.ErrNotFound, "org")
		refs, _ := s.ListFormationRefs(ctx)
		mustEqual(t, refs, []store.FormationRef{ref("beta", "app1")}, "formation refs")
		all, _ := s.ListAllSinks(ctx)
		mustEqual(t, len(all), 1, "all sinks")
		depth, _ := s.OutboxDepth(ctx)
		mustEqual(t, depth, int64(2), "outbox depth after delete")

		// The other org is intact.
		_, err = s.GetToken(ctx, "beta", "peat_beta")
		mustOK(t, err, "beta token")
		tk, _ := s.GetToken(ctx, "beta", "peat_beta")
		mustEqual(t, tk.Uses, uint32(1), "beta token uses")
		_, err = s.GetCertificate(ctx, "beta", "app1", "ser-beta")
		mustOK(t, err, "beta certificate")
		au, _ := s.ListAudit(ctx, "beta", nil, 100)
		mustEqual(t, len(au), 2, "beta audit")
		ev, _ := s.ReadOutbox(ctx, "beta", 0, 100)
		mustEqual(t, len(ev), 2, "beta outbox")
		p, _ := s.GetProgress(ctx, "sink-beta")
		mustEqual(t, p.Delivered, int64(1), "beta progress")
		dl, _ := s.ListDeadLetters(ctx, "beta", "sink-beta", 100)
		mustEqual(t, len(dl), 1, "beta dead letters")
		_, err = s.GetFilter(ctx, "beta", "f1")
		mustOK(t, err, "beta filter")

		// Re-creating the org starts from nothing.
		mkOrg(t, s, "acme")
		checkGone("re-created org")
		fs, _ := s.ListFormations(ctx, "acme")
		mustEqual(t, len(fs), 0, "formations")
		ss, _ := s.ListSinks(ctx, "acme")
		mustEqual(t, len(ss), 0, "sinks")
		is, _ := s.ListIdps(ctx, "acme")
		mustEqual(t, len(is), 0, "idps")
		rs, _ := s.ListPolicyRules(ctx, "acme")
		mustEqual(t, len(rs), 0, "rules")
		fl, _ := s.ListFilters(ctx, "acme")
		mustEqual(t, len(fl), 0, "filters")
		mkFormation(t, s, "acme", "app1")
		_, err = s.GetToken(ctx, "acme", "peat_acme")
		mustIs(t, err, store.ErrNotFound, "old token does not come back")
		r := write1(t, s, docWrite("acme", "app1", "doc1", `{"k":"v"}`, t0))
		mustEqual(t, r.Version, uint64(1), "document history restarts")
	}},
}
