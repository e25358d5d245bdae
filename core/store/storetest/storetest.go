// Package storetest is the conformance suite of the store contract. Every
// backend's tests call Run with a function that opens a fresh, empty store;
// the suite asserts behaviour only through the store.Store interface, so
// both backends are held to one behaviour.
//
// Identifiers in the suite are lowercase ASCII so that byte order and any
// sane collation agree on list ordering.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Run runs the whole conformance suite against the backend.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	groups := []struct {
		name  string
		tests []subtest
	}{
		{"Orgs", orgTests},
		{"Formations", formationTests},
		{"Tokens", tokenTests},
		{"Sinks", sinkTests},
		{"Identity", identityTests},
		{"Cascade", cascadeTests},
		{"Enroll", enrollTests},
		{"Certificates", certificateTests},
		{"Documents", documentTests},
		{"Outbox", outboxTests},
		{"Filters", filterTests},
		{"Concurrency", concurrencyTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, open(t))
				})
			}
		})
	}
}

// RunGroup runs one named group of the suite (e.g. "Orgs"), for backends
// that are only partly implemented or to narrow a failing run.
func RunGroup(t *testing.T, group string, open func(t *testing.T) store.Store) {
	all := map[string][]subtest{
		"Orgs": orgTests, "Formations": formationTests, "Tokens": tokenTests, "Sinks": sinkTests,
		"Identity": identityTests, "Cascade": cascadeTests, "Enroll": enrollTests,
		"Certificates": certificateTests, "Documents": documentTests, "Outbox": outboxTests,
		"Filters": filterTests, "Concurrency": concurrencyTests,
	}
	tests, ok := all[group]
	if !ok {
		t.Fatalf("storetest: unknown group %q", group)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

type subtest struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

var ctx = context.Background()

// mustOK fails the test now on an unexpected error.
func mustOK(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", fmt.Sprintf(what, args...), err)
	}
}

// mustIs fails unless err matches the sentinel.
func mustIs(t testing.TB, err, want error, what string, args ...any) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", fmt.Sprintf(what, args...), err, want)
	}
}

func mustEqual(t testing.TB, got, want any, what string, args ...any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %#v\n want %#v", fmt.Sprintf(what, args...), got, want)
	}
}

func ptr[T any](v T) *T { return &v }

// Base time of the suite's records (2026-01-01), far from 0 so that "an hour
// before" never underflows.
const t0 uint64 = 1_767_225_600_000

func org(id string) model.Organization {
	return model.Organization{OrgID: id, DisplayName: "Org " + id, Quotas: model.DefaultQuotas(), CreatedAt: t0}
}

// mkOrg creates an org with default quotas changed by edit.
func mkOrg(t testing.TB, s store.Store, id string, edit ...func(q *model.OrgQuotas)) model.Organization {
	t.Helper()
	o := org(id)
	for _, e := range edit {
		e(&o.Quotas)
	}
	mustOK(t, s.CreateOrg(ctx, o), "CreateOrg %s", id)
	return o
}

func formation(orgID, appID string) model.Formation {
	return model.Formation{
		OrgID: orgID, AppID: appID, MeshID: "A1B2C3D4",
		EnrollmentPolicy: model.PolicyControlled, Status: model.FormationActive, CreatedAt: t0 + 1,
	}
}

func genesisOf(orgID, appID string) []byte { return []byte("genesis:" + orgID + "/" + appID) }

func mkFormation(t testing.TB, s store.Store, orgID, appID string) model.Formation {
	t.Helper()
	f := formation(orgID, appID)
	mustOK(t, s.CreateFormation(ctx, f, genesisOf(orgID, appID)), "CreateFormation %s/%s", orgID, appID)
	return f
}

func token(orgID, appID, id string) model.EnrollmentToken {
	return model.EnrollmentToken{TokenID: id, OrgID: orgID, AppID: appID, Label: "label " + id, CreatedAt: t0 + 2}
}

func mkToken(t testing.TB, s store.Store, tk model.EnrollmentToken) {
	t.Helper()
	mustOK(t, s.CreateToken(ctx, tk), "CreateToken %s", tk.TokenID)
}

func natsSink(orgID, id string) model.CdcSinkConfig {
	return model.CdcSinkConfig{SinkID: id, OrgID: orgID, Enabled: true, CreatedAt: t0 + 3,
		SinkType: model.CdcSinkType{Nats: &model.NatsSink{SubjectPrefix: "cdc"}}, Filters: []model.FilterRef{}}
}

func approved(orgID, appID, id string, ts uint64) model.AuditEntry {
	return model.AuditEntry{AuditID: id, OrgID: orgID, AppID: appID, IdpID: "none", Subject: "anonymous",
		Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint, Permissions: 1}},
		Reason:   "", TimestampMs: ts}
}

func denied(orgID, appID, id string, ts uint64) model.AuditEntry {
	return model.AuditEntry{AuditID: id, OrgID: orgID, AppID: appID, IdpID: "idp1", Subject: "alice",
		Decision: model.Decision{Denied: &model.Denial{Reason: "no matching rule"}},
		Reason:   "no matching rule", TimestampMs: ts}
}

func cert(orgID, appID, serial string, issued uint64) *model.Certificate {
	return &model.Certificate{Serial: serial, OrgID: orgID, AppID: appID, PeerID: "peer-" + serial,
		NodeID: "node-" + serial, SubjectKey: "key-" + serial, Fingerprint: "fp-" + serial, Tier: "Endpoint",
		Permissions: 3, IssuedAt: issued, ExpiresAt: issued + 86_400_000, AuditID: "audit-" + serial,
		Raw: []byte("raw-" + serial)}
}

// enrollTx is an approved enrollment with generous limits; the test narrows it.
func enrollTx(orgID, appID, auditID string, now uint64) store.EnrollTx {
	return store.EnrollTx{OrgID: orgID, AppID: appID, NowMs: now, RateLimit: 1000, PeerLimit: 100,
		Audit: approved(orgID, appID, auditID, now)}
}

func docWrite(orgID, appID, docID, body string, ts uint64) store.DocumentWrite {
	return store.DocumentWrite{OrgID: orgID, AppID: appID, DocID: docID, ActorID: "tester",
		Body: []byte(body), TimestampMs: ts, DocLimit: 10000}
}

func docDelete(orgID, appID, docID string, ts uint64) store.DocumentWrite {
	return store.DocumentWrite{OrgID: orgID, AppID: appID, DocID: docID, ActorID: "tester",
		Delete: true, TimestampMs: ts, DocLimit: 10000}
}

// write1 runs a one-write batch and returns its result.
func write1(t testing.TB, s store.Store, w store.DocumentWrite) store.DocumentResult {
	t.Helper()
	rs, err := s.WriteDocuments(ctx, []store.DocumentWrite{w})
	mustOK(t, err, "WriteDocuments %s", w.DocID)
	if len(rs) != 1 {
		t.Fatalf("WriteDocuments returned %d results for 1 write", len(rs))
	}
	return rs[0]
}

func ref(orgID, appID string) store.FormationRef {
	return store.FormationRef{OrgID: orgID, AppID: appID}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	mustOK(t, err, "marshal")
	return b
}
