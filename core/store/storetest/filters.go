package storetest

import (
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

func module(orgID, name, wasm string) store.FilterModule {
	return store.FilterModule{OrgID: orgID, Name: name, SHA256: "sha-" + wasm, SizeBytes: len(wasm), CreatedAt: t0, Wasm: []byte(wasm)}
}

var filterTests = []subtest{
	{"VersionsGetList", func(t *testing.T, s store.Store) {
		_, err := s.PutFilter(ctx, module("nope", "f", "x"), 10, 1000)
		mustIs(t, err, store.ErrOrgNotFound, "missing org")
		mkOrg(t, s, "acme")
		m, err := s.PutFilter(ctx, module("acme", "redact", "v1-bytes"), 10, 1000)
		mustOK(t, err, "PutFilter v1")
		mustEqual(t, m.Version, 1, "first version")
		m2 := module("acme", "redact", "v2-bytes!")
		m2.CreatedAt = t0 + 5
		got, err := s.PutFilter(ctx, m2, 10, 1000)
		mustOK(t, err, "PutFilter v2")
		mustEqual(t, got.Version, 2, "second version")
		_, err = s.PutFilter(ctx, module("acme", "alpha", "a"), 10, 1000)
		mustOK(t, err, "PutFilter alpha")
		g, err := s.GetFilter(ctx, "acme", "redact")
		mustOK(t, err, "GetFilter")
		m2.Version = 2
		mustEqual(t, g, m2, "latest version with bytes")
		list, err := s.ListFilters(ctx, "acme")
		mustOK(t, err, "ListFilters")
		if len(list) != 2 {
			t.Fatalf("ListFilters: %d modules, want 2", len(list))
		}
		mustEqual(t, [2]string{list[0].Name, list[1].Name}, [2]string{"alpha", "redact"}, "ordered by name")
		mustEqual(t, [2]any{list[1].Version, list[1].SizeBytes}, [2]any{2, 9}, "latest version listed")
		mustEqual(t, len(list[1].Wasm), 0, "list carries no bytes")
		_, err = s.GetFilter(ctx, "acme", "nope")
		mustIs(t, err, store.ErrNotFound, "GetFilter missing")
		mustOK(t, s.DeleteFilter(ctx, "acme", "redact"), "DeleteFilter")
		_, err = s.GetFilter(ctx, "acme", "redact")
		mustIs(t, err, store.ErrNotFound, "after delete")
		mustIs(t, s.DeleteFilter(ctx, "acme", "redact"), store.ErrNotFound, "second delete")
		again, err := s.PutFilter(ctx, module("acme", "redact", "v1-bytes"), 10, 1000)
		mustOK(t, err, "PutFilter after delete")
		mustEqual(t, again.Version, 1, "a deleted name starts over")
	}},
	{"Quotas", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkOrg(t, s, "beta")
		_, err := s.PutFilter(ctx, module("acme", "a", "aaaa"), 2, 10)
		mustOK(t, err, "module a")
		_, err = s.PutFilter(ctx, module("acme", "b", "bbbb"), 2, 10)
		mustOK(t, err, "module b")
		_, err = s.PutFilter(ctx, module("acme", "c", "c"), 2, 10)
		mustIs(t, err, store.ErrQuota, "third module name")
		_, err = s.PutFilter(ctx, module("acme", "a", "aaaaaa"), 2, 10)
		mustOK(t, err, "a new version replaces its predecessor in the byte count (6+4 = 10)")
		_, err = s.PutFilter(ctx, module("acme", "b", "bbbbb"), 2, 10)
		mustIs(t, err, store.ErrQuota, "6+5 bytes over 10")
		g, _ := s.GetFilter(ctx, "acme", "b")
		mustEqual(t, g.Version, 1, "refused version not stored")
		_, err = s.PutFilter(ctx, module("beta", "c", "c"), 2, 10)
		mustOK(t, err, "other org has its own quota")
		_, err = s.PutFilter(ctx, module("beta", "d", "d"), 0, 10)
		mustIs(t, err, store.ErrQuota, "max modules 0")
		_, err = s.PutFilter(ctx, module("beta", "c", "cc"), 2, 0)
		mustIs(t, err, store.ErrQuota, "max bytes 0")
	}},
	{"FormationChain", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mkFormation(t, s, "acme", "app1")
		chain, err := s.GetFormationFilters(ctx, "acme", "app1")
		mustOK(t, err, "GetFormationFilters unset")
		mustEqual(t, len(chain), 0, "unset chain")
		want := []model.FilterRef{{Name: "b"}, {Name: "a", Config: []byte(`{"k":[1,2]}`), OnError: "dead_letter"}}
		mustOK(t, s.SetFormationFilters(ctx, "acme", "app1", want), "SetFormationFilters")
		chain, _ = s.GetFormationFilters(ctx, "acme", "app1")
		mustEqual(t, chain, want, "chain round trip, order kept")
		mustOK(t, s.SetFormationFilters(ctx, "acme", "app1", nil), "clear")
		chain, _ = s.GetFormationFilters(ctx, "acme", "app1")
		mustEqual(t, len(chain), 0, "cleared chain")
		mustIs(t, s.SetFormationFilters(ctx, "acme", "nope", want), store.ErrFormationNotFound, "Set on missing formation")
		_, err = s.GetFormationFilters(ctx, "acme", "nope")
		mustIs(t, err, store.ErrFormationNotFound, "Get on missing formation")
	}},
}
