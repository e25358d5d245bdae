package storetest

import (
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

var orgTests = []subtest{
	{"CreateGetRoundTrip", func(t *testing.T, s store.Store) {
		o := org("acme")
		o.Quotas = model.OrgQuotas{MaxFormations: 1, MaxPeersPerFormation: 2, MaxDocumentsPerFormation: 3,
			MaxCdcSinks: 4, MaxEnrollmentsPerHour: 4294967295}
		mustOK(t, s.CreateOrg(ctx, o), "CreateOrg")
		got, err := s.GetOrg(ctx, "acme")
		mustOK(t, err, "GetOrg")
		mustEqual(t, got, o, "GetOrg")
	}},
	{"CreateDuplicateIsErrExists", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		o := org("acme")
		o.DisplayName = "other"
		mustIs(t, s.CreateOrg(ctx, o), store.ErrExists, "second CreateOrg")
		got, err := s.GetOrg(ctx, "acme")
		mustOK(t, err, "GetOrg")
		mustEqual(t, got.DisplayName, "Org acme", "the first org is untouched")
	}},
	{"MissingIsNotFound", func(t *testing.T, s store.Store) {
		_, err := s.GetOrg(ctx, "nope")
		mustIs(t, err, store.ErrNotFound, "GetOrg")
		mustIs(t, s.UpdateOrg(ctx, org("nope")), store.ErrNotFound, "UpdateOrg")
		mustIs(t, s.DeleteOrg(ctx, "nope"), store.ErrNotFound, "DeleteOrg")
	}},
	{"ListOrderedByID", func(t *testing.T, s store.Store) {
		got, err := s.ListOrgs(ctx)
		mustOK(t, err, "ListOrgs empty")
		mustEqual(t, len(got), 0, "empty store lists no orgs")
		for _, id := range []string{"delta", "alpha", "charlie", "bravo", "a1", "a"} {
			mkOrg(t, s, id)
		}
		got, err = s.ListOrgs(ctx)
		mustOK(t, err, "ListOrgs")
		var ids []string
		for _, o := range got {
			ids = append(ids, o.OrgID)
		}
		mustEqual(t, ids, []string{"a", "a1", "alpha", "bravo", "charlie", "delta"}, "ListOrgs order")
	}},
	{"UpdateRewritesNameAndQuotas", func(t *testing.T, s store.Store) {
		o := mkOrg(t, s, "acme")
		o.DisplayName = "Acme Corp"
		o.Quotas.MaxFormations = 0
		o.Quotas.MaxEnrollmentsPerHour = 7
		mustOK(t, s.UpdateOrg(ctx, o), "UpdateOrg")
		got, err := s.GetOrg(ctx, "acme")
		mustOK(t, err, "GetOrg")
		mustEqual(t, got, o, "GetOrg after update")
	}},
	{"DeleteThenGetIsNotFound", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		mustOK(t, s.DeleteOrg(ctx, "acme"), "DeleteOrg")
		_, err := s.GetOrg(ctx, "acme")
		mustIs(t, err, store.ErrNotFound, "GetOrg after delete")
		mustIs(t, s.DeleteOrg(ctx, "acme"), store.ErrNotFound, "second DeleteOrg")
		_, err = s.GetOrg(ctx, "beta")
		mustOK(t, err, "other org survives")
	}},
	{"Ping", func(t *testing.T, s store.Store) {
		mustOK(t, s.Ping(ctx), "Ping")
	}},
}

var formationTests = []subtest{
	{"CreateGetRoundTrip", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		f := formation("acme", "app1")
		f.EnrollmentPolicy = model.PolicyStrict
		mustOK(t, s.CreateFormation(ctx, f, []byte{0, 1, 2, 0xFF}), "CreateFormation")
		got, err := s.GetFormation(ctx, "acme", "app1")
		mustOK(t, err, "GetFormation")
		mustEqual(t, got, f, "GetFormation")
		g, err := s.GetGenesis(ctx, "acme", "app1")
		mustOK(t, err, "GetGenesis")
		mustEqual(t, g, []byte{0, 1, 2, 0xFF}, "genesis bytes")
	}},
	{"MissingOrgIsErrOrgNotFound", func(t *testing.T, s store.Store) {
		mustIs(t, s.CreateFormation(ctx, formation("nope", "app1"), []byte("g")), store.ErrOrgNotFound, "CreateFormation")
		_, err := s.ListFormations(ctx, "nope")
		mustIs(t, err, store.ErrOrgNotFound, "ListFormations")
	}},
	{"DuplicateIsErrExists", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mustIs(t, s.CreateFormation(ctx, formation("acme", "app1"), []byte("other")), store.ErrExists, "duplicate")
		g, err := s.GetGenesis(ctx, "acme", "app1")
		mustOK(t, err, "GetGenesis")
		mustEqual(t, g, genesisOf("acme", "app1"), "genesis untouched by the refused create")
		// The same app id in another org is a different formation.
		mkOrg(t, s, "beta")
		mkFormation(t, s, "beta", "app1")
	}},
	{"QuotaAtLimit", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme", func(q *model.OrgQuotas) { q.MaxFormations = 2 })
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		mustIs(t, s.CreateFormation(ctx, formation("acme", "app3"), []byte("g")), store.ErrQuota, "third formation")
		// Quota is checked before uniqueness.
		mustIs(t, s.CreateFormation(ctx, formation("acme", "app1"), []byte("g")), store.ErrQuota, "duplicate at quota")
		_, err := s.GetFormation(ctx, "acme", "app3")
		mustIs(t, err, store.ErrNotFound, "refused formation not stored")
		// Freeing a slot admits one more.
		mustOK(t, s.DeleteFormation(ctx, "acme", "app1"), "DeleteFormation")
		mkFormation(t, s, "acme", "app3")
		// Lowering the quota keeps what exists but blocks creation.
		o, _ := s.GetOrg(ctx, "acme")
		o.Quotas.MaxFormations = 1
		mustOK(t, s.UpdateOrg(ctx, o), "UpdateOrg")
		mustIs(t, s.CreateFormation(ctx, formation("acme", "app4"), []byte("g")), store.ErrQuota, "over lowered quota")
		fs, err := s.ListFormations(ctx, "acme")
		mustOK(t, err, "ListFormations")
		mustEqual(t, len(fs), 2, "existing formations kept")
	}},
	{"QuotaZeroBlocks", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme", func(q *model.OrgQuotas) { q.MaxFormations = 0 })
		mustIs(t, s.CreateFormation(ctx, formation("acme", "app1"), []byte("g")), store.ErrQuota, "quota 0")
	}},
	{"ListOrderedByAppID", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		fs, err := s.ListFormations(ctx, "acme")
		mustOK(t, err, "ListFormations empty")
		mustEqual(t, len(fs), 0, "no formations yet")
		for _, a := range []string{"zulu", "app2", "app10", "app1"} {
			mkFormation(t, s, "acme", a)
		}
		mkFormation(t, s, "beta", "aaa")
		fs, err = s.ListFormations(ctx, "acme")
		mustOK(t, err, "ListFormations")
		var ids []string
		for _, f := range fs {
			ids = append(ids, f.AppID)
			mustEqual(t, f.OrgID, "acme", "OrgID of listed formation")
		}
		mustEqual(t, ids, []string{"app1", "app10", "app2", "zulu"}, "ListFormations order")
		refs, err := s.ListFormationRefs(ctx)
		mustOK(t, err, "ListFormationRefs")
		mustEqual(t, refs, []store.FormationRef{ref("acme", "app1"), ref("acme", "app10"), ref("acme", "app2"), ref("acme", "zulu"), ref("beta", "aaa")}, "ListFormationRefs")
	}},
	{"SetStatus", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		f := mkFormation(t, s, "acme", "app1")
		got, err := s.SetFormationStatus(ctx, "acme", "app1", model.FormationSuspended)
		mustOK(t, err, "suspend")
		f.Status = model.FormationSuspended
		mustEqual(t, got, f, "suspended formation returned")
		got, err = s.GetFormation(ctx, "acme", "app1")
		mustOK(t, err, "GetFormation")
		mustEqual(t, got.Status, model.FormationSuspended, "stored status")
		got, err = s.SetFormationStatus(ctx, "acme", "app1", model.FormationActive)
		mustOK(t, err, "resume")
		mustEqual(t, got.Status, model.FormationActive, "resumed")
		_, err = s.SetFormationStatus(ctx, "acme", "nope", model.FormationSuspended)
		mustIs(t, err, store.ErrNotFound, "missing formation")
	}},
	{"ReplaceGenesisCompareAndSwap", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		old := genesisOf("acme", "app1")
		mustOK(t, s.ReplaceGenesis(ctx, "acme", "app1", old, []byte("sealed-v2")), "ReplaceGenesis")
		g, _ := s.GetGenesis(ctx, "acme", "app1")
		mustEqual(t, g, []byte("sealed-v2"), "replaced")
		// A second run with the stale blob must not clobber the new one.
		mustIs(t, s.ReplaceGenesis(ctx, "acme", "app1", old, []byte("sealed-v3")), store.ErrConflict, "stale old")
		g, _ = s.GetGenesis(ctx, "acme", "app1")
		mustEqual(t, g, []byte("sealed-v2"), "unchanged after conflict")
		mustIs(t, s.ReplaceGenesis(ctx, "acme", "nope", old, []byte("x")), store.ErrNotFound, "missing formation")
		_, err := s.GetGenesis(ctx, "acme", "nope")
		mustIs(t, err, store.ErrNotFound, "GetGenesis missing")
	}},
	{"DeleteRemovesPerFormationState", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		for _, app := range []string{"app1", "app2"} {
			mkToken(t, s, token("acme", app, "peat_tok_"+app))
			tx := enrollTx("acme", app, "aud-"+app, t0)
			tx.Certificate = cert("acme", app, "ser-"+app, t0)
			mustOK(t, s.Enroll(ctx, tx), "Enroll %s", app)
			write1(t, s, docWrite("acme", app, "doc1", `{"a":1}`, t0))
			mustOK(t, s.SetFormationFilters(ctx, "acme", app, []model.FilterRef{{Name: "f1"}}), "SetFormationFilters")
		}
		mustOK(t, s.DeleteFormation(ctx, "acme", "app1"), "DeleteFormation")
		mustIs(t, s.DeleteFormation(ctx, "acme", "app1"), store.ErrNotFound, "second delete")
		_, err := s.GetFormation(ctx, "acme", "app1")
		mustIs(t, err, store.ErrNotFound, "GetFormation")
		_, err = s.GetGenesis(ctx, "acme", "app1")
		mustIs(t, err, store.ErrNotFound, "GetGenesis")
		_, err = s.GetToken(ctx, "acme", "peat_tok_app1")
		mustIs(t, err, store.ErrNotFound, "token removed")
		_, err = s.GetCertificate(ctx, "acme", "app1", "ser-app1")
		mustIs(t, err, store.ErrNotFound, "certificate removed")
		_, err = s.GetDocument(ctx, "acme", "app1", "doc1")
		mustIs(t, err, store.ErrNotFound, "document removed")
		// Re-creating the app id starts from nothing: old tokens do not come back.
		f := formation("acme", "app1")
		mustOK(t, s.CreateFormation(ctx, f, []byte("fresh")), "re-create")
		toks, err := s.ListTokens(ctx, "acme", "app1")
		mustOK(t, err, "ListTokens")
		mustEqual(t, len(toks), 0, "tokens after re-create")
		certs, err := s.ListCertificates(ctx, "acme", "app1")
		mustOK(t, err, "ListCertificates")
		mustEqual(t, len(certs), 0, "certificates after re-create")
		docs, err := s.ListDocuments(ctx, "acme", "app1")
		mustOK(t, err, "ListDocuments")
		mustEqual(t, len(docs), 0, "documents after re-create")
		chain, err := s.GetFormationFilters(ctx, "acme", "app1")
		mustOK(t, err, "GetFormationFilters")
		mustEqual(t, len(chain), 0, "filter chain after re-create")
		g, _ := s.GetGenesis(ctx, "acme", "app1")
		mustEqual(t, g, []byte("fresh"), "new genesis")
		r := write1(t, s, docWrite("acme", "app1", "doc1", `{"a":1}`, t0))
		mustEqual(t, r.Version, uint64(1), "document version restarts in a new formation")
		// The sibling formation is untouched.
		_, err = s.GetToken(ctx, "acme", "peat_tok_app2")
		mustOK(t, err, "sibling token")
		_, err = s.GetCertificate(ctx, "acme", "app2", "ser-app2")
		mustOK(t, err, "sibling certificate")
		_, err = s.GetDocument(ctx, "acme", "app2", "doc1")
		mustOK(t, err, "sibling document")
		chain, _ = s.GetFormationFilters(ctx, "acme", "app2")
		mustEqual(t, len(chain), 1, "sibling chain")
	}},
}

var tokenTests = []subtest{
	{"CreateGetRoundTrip", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		a := token("acme", "app1", "peat_a")
		a.MaxUses, a.ExpiresAt = ptr(uint32(5)), ptr(t0+1000)
		b := token("acme", "app1", "peat_b")
		mkToken(t, s, a)
		mkToken(t, s, b)
		got, err := s.GetToken(ctx, "acme", "peat_a")
		mustOK(t, err, "GetToken a")
		mustEqual(t, got, a, "token with limits")
		got, err = s.GetToken(ctx, "acme", "peat_b")
		mustOK(t, err, "GetToken b")
		mustEqual(t, got, b, "token without limits")
		_, err = s.GetToken(ctx, "other", "peat_a")
		mustIs(t, err, store.ErrNotFound, "token is scoped to its org")
		mustIs(t, s.CreateToken(ctx, a), store.ErrExists, "duplicate token id")
	}},
	{"CreateChecksParents", func(t *testing.T, s store.Store) {
		mustIs(t, s.CreateToken(ctx, token("nope", "app1", "peat_a")), store.ErrOrgNotFound, "missing org")
		mkOrg(t, s, "acme")
		mustIs(t, s.CreateToken(ctx, token("acme", "app1", "peat_a")), store.ErrFormationNotFound, "missing formation")
	}},
	{"ListByFormationOrdered", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkFormation(t, s, "acme", "app2")
		for _, id := range []string{"peat_c", "peat_a", "peat_b"} {
			mkToken(t, s, token("acme", "app1", id))
		}
		mkToken(t, s, token("acme", "app2", "peat_0"))
		toks, err := s.ListTokens(ctx, "acme", "app1")
		mustOK(t, err, "ListTokens")
		var ids []string
		for _, tk := range toks {
			ids = append(ids, tk.TokenID)
		}
		mustEqual(t, ids, []string{"peat_a", "peat_b", "peat_c"}, "ListTokens app1")
		toks, _ = s.ListTokens(ctx, "acme", "app2")
		mustEqual(t, len(toks), 1, "ListTokens app2")
	}},
	{"RevokeTwice", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkToken(t, s, token("acme", "app1", "peat_a"))
		got, err := s.RevokeToken(ctx, "acme", "peat_a")
		mustOK(t, err, "RevokeToken")
		mustEqual(t, got.Revoked, true, "returned token is revoked")
		mustEqual(t, got.TokenID, "peat_a", "returned token id")
		stored, _ := s.GetToken(ctx, "acme", "peat_a")
		mustEqual(t, stored.Revoked, true, "stored token is revoked")
		_, err = s.RevokeToken(ctx, "acme", "peat_a")
		mustIs(t, err, store.ErrAlreadyRevoked, "second revoke")
		_, err = s.RevokeToken(ctx, "acme", "peat_zz")
		mustIs(t, err, store.ErrNotFound, "revoke missing")
	}},
	{"Delete", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		mkToken(t, s, token("acme", "app1", "peat_a"))
		mustOK(t, s.DeleteToken(ctx, "acme", "peat_a"), "DeleteToken")
		_, err := s.GetToken(ctx, "acme", "peat_a")
		mustIs(t, err, store.ErrNotFound, "after delete")
		mustIs(t, s.DeleteToken(ctx, "acme", "peat_a"), store.ErrNotFound, "second delete")
	}},
}

var sinkTests = []subtest{
	{"CreateGetRoundTrip", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme", func(q *model.OrgQuotas) { q.MaxCdcSinks = 10 })
		n := natsSink("acme", "s1")
		k := model.CdcSinkConfig{SinkID: "s2", OrgID: "acme", Enabled: false, CreatedAt: t0,
			SinkType: model.CdcSinkType{Kafka: &model.KafkaSink{Topic: "events"}},
			Filters:  []model.FilterRef{{Name: "redact", Config: []byte(`{"fields":["ssn"]}`), OnError: "drop"}, {Name: "b"}}}
		w := model.CdcSinkConfig{SinkID: "s3", OrgID: "acme", Enabled: true, CreatedAt: t0,
			SinkType: model.CdcSinkType{Webhook: &model.WebhookSink{URL: "https://example.com/h", Secret: "whsec", HasSecret: true}},
			Filters:  []model.FilterRef{}}
		w2 := model.CdcSinkConfig{SinkID: "s4", OrgID: "acme", Enabled: true, CreatedAt: t0,
			SinkType: model.CdcSinkType{Webhook: &model.WebhookSink{URL: "https://example.com/nosecret"}},
			Filters:  []model.FilterRef{}}
		for _, c := range []model.CdcSinkConfig{n, k, w, w2} {
			mustOK(t, s.CreateSink(ctx, c), "CreateSink %s", c.SinkID)
			got, err := s.GetSink(ctx, "acme", c.SinkID)
			mustOK(t, err, "GetSink %s", c.SinkID)
			mustEqual(t, normSink(got), normSink(c), "sink %s", c.SinkID)
		}
		_, err := s.GetSink(ctx, "acme", "nope")
		mustIs(t, err, store.ErrNotFound, "GetSink missing")
	}},
	{"MissingOrg", func(t *testing.T, s store.Store) {
		mustIs(t, s.CreateSink(ctx, natsSink("nope", "s1")), store.ErrOrgNotFound, "CreateSink")
		_, err := s.ListSinks(ctx, "nope")
		mustIs(t, err, store.ErrOrgNotFound, "ListSinks")
	}},
	{"QuotaCountsDisabledSinks", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme", func(q *model.OrgQuotas) { q.MaxCdcSinks = 2 })
		a := natsSink("acme", "s1")
		a.Enabled = false
		mustOK(t, s.CreateSink(ctx, a), "first (disabled)")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s2")), "second")
		mustIs(t, s.CreateSink(ctx, natsSink("acme", "s3")), store.ErrQuota, "third")
		mustOK(t, s.DeleteSink(ctx, "acme", "s1"), "DeleteSink")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s3")), "after freeing a slot")
		mkOrg(t, s, "zero", func(q *model.OrgQuotas) { q.MaxCdcSinks = 0 })
		mustIs(t, s.CreateSink(ctx, natsSink("zero", "s1")), store.ErrQuota, "quota 0")
	}},
	{"ListOrderedAndListAll", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		for _, id := range []string{"s3", "s1", "s2"} {
			mustOK(t, s.CreateSink(ctx, natsSink("acme", id)), "CreateSink")
		}
		mustOK(t, s.CreateSink(ctx, natsSink("beta", "s0")), "CreateSink beta")
		got, err := s.ListSinks(ctx, "acme")
		mustOK(t, err, "ListSinks")
		var ids []string
		for _, c := range got {
			ids = append(ids, c.SinkID)
		}
		mustEqual(t, ids, []string{"s1", "s2", "s3"}, "ListSinks order")
		all, err := s.ListAllSinks(ctx)
		mustOK(t, err, "ListAllSinks")
		seen := map[string]bool{}
		for _, c := range all {
			seen[c.OrgID+"/"+c.SinkID] = true
		}
		mustEqual(t, seen, map[string]bool{"acme/s1": true, "acme/s2": true, "acme/s3": true, "beta/s0": true}, "ListAllSinks")
	}},
	{"UpdateEnabledAndFilters", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		c := natsSink("acme", "s1")
		mustOK(t, s.CreateSink(ctx, c), "CreateSink")
		c.Enabled = false
		c.Filters = []model.FilterRef{{Name: "f1"}, {Name: "f2", OnError: "pass"}}
		c.SinkType = model.CdcSinkType{Kafka: &model.KafkaSink{Topic: "ignored"}}
		mustOK(t, s.UpdateSink(ctx, c), "UpdateSink")
		got, _ := s.GetSink(ctx, "acme", "s1")
		mustEqual(t, got.Enabled, false, "enabled")
		mustEqual(t, got.Filters, c.Filters, "filters")
		mustEqual(t, got.SinkType.Kind(), "Nats", "the type never changes")
		mustIs(t, s.UpdateSink(ctx, natsSink("acme", "nope")), store.ErrNotFound, "UpdateSink missing")
	}},
	{"Delete", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s1")), "CreateSink")
		mustOK(t, s.DeleteSink(ctx, "acme", "s1"), "DeleteSink")
		_, err := s.GetSink(ctx, "acme", "s1")
		mustIs(t, err, store.ErrNotFound, "after delete")
		mustIs(t, s.DeleteSink(ctx, "acme", "s1"), store.ErrNotFound, "second delete")
	}},
}

// normSink compares sinks on what is persisted: nil and empty filter lists
// are the same, and HasSecret follows from Secret.
func normSink(c model.CdcSinkConfig) model.CdcSinkConfig {
	if c.Filters == nil {
		c.Filters = []model.FilterRef{}
	}
	if w := c.SinkType.Webhook; w != nil {
		cp := *w
		cp.HasSecret = cp.Secret != ""
		c.SinkType.Webhook = &cp
	}
	return c
}
