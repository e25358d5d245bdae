package filtering_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/filtering"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

// mustKind asserts a domain error's kind and that its message contains want.
func mustKind(t *testing.T, err error, kind errs.Kind, want string) {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want a domain error of kind %d", err, err, kind)
	}
	if e.Kind != kind || !strings.Contains(e.Msg, want) {
		t.Fatalf("error kind %d %q, want kind %d containing %q", e.Kind, e.Msg, kind, want)
	}
}

func TestUploadValidation(t *testing.T) {
	redact := goFilter(t, "redact")
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		svc := newService(t, st, func(c *filtering.Config) { c.MaxModuleBytes = 1 << 20 })
		cases := []struct {
			name, rule string
			wasm       []byte
		}{
			{"not wasm", "magic", []byte("#!/bin/sh\necho hi\n")},
			{"empty module", "missing_export", nil},
			{"no gw_process", "missing_export", nil},
			{"command module", "command_module", nil},
			{"forbidden wasi import", "forbidden_import", wat(t, watForbidden)},
			{"host import", "forbidden_import", wat(t, watHostImport)},
			{"too large", "size", redact},
		}
		cases[1].wasm = []byte("\x00asm\x01\x00\x00\x00") // valid header, nothing in it
		cases[2].wasm = wasmtestWat(t, watNoProcess)
		cases[3].wasm = wasmtestWat(t, watCommand)
		for _, tc := range cases {
			_, _, err := svc.Put(ctx, "acme", "f", tc.wasm)
			mustKind(t, err, errs.Invalid, "(rule "+tc.rule+")")
		}
		list, err := svc.List(ctx, "acme")
		if err != nil || len(list) != 0 {
			t.Fatalf("refused modules were stored: %v %v", list, err)
		}
		_, _, err = svc.Put(ctx, "acme", "bad.name", wat(t, watKeep))
		mustKind(t, err, errs.Invalid, "invalid characters")
		_, _, err = svc.Put(ctx, "nope", "f", wat(t, watKeep))
		mustKind(t, err, errs.NotFound, "Organization 'nope' not found")
	})
}

func TestVersionsQuotaDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := mkOrg(t, st, "acme")
		keep, drop := wat(t, watKeep), wat(t, watDropOdd)
		svc := newService(t, st, func(c *filtering.Config) { c.MaxModules, c.MaxOrgBytes = 2, int64(len(keep)+len(drop)+10) })
		m, created, err := svc.Put(ctx, "acme", "f", keep)
		if err != nil || !created || m.Version != 1 || m.SizeBytes != len(keep) || len(m.SHA256) != 64 || m.OrgID != "acme" {
			t.Fatalf("v1: %+v created=%v err=%v", m, created, err)
		}
		m, created, err = svc.Put(ctx, "acme", "f", drop)
		if err != nil || created || m.Version != 2 {
			t.Fatalf("v2: %+v created=%v err=%v", m, created, err)
		}
		got, err := svc.Get(ctx, "acme", "f")
		if err != nil || got.Version != 2 || got.SHA256 != m.SHA256 || got.Wasm != nil {
			t.Fatalf("get: %+v %v", got, err)
		}
		if _, _, err := svc.Put(ctx, "acme", "g", keep); err != nil {
			t.Fatal(err)
		}
		_, _, err = svc.Put(ctx, "acme", "h", keep)
		mustKind(t, err, errs.Quota, "quota")
		_, _, err = svc.Put(ctx, "acme", "g", wat(t, watSpec{Body: strings.Repeat("x", 200)}))
		mustKind(t, err, errs.Quota, "bytes")

		// Bound modules cannot be deleted; the message says where.
		sink, err := ten.CreateSink(ctx, "acme", model.CdcSinkType{Nats: &model.NatsSink{SubjectPrefix: "cdc"}}, []model.FilterRef{{Name: "f"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.SetFormationChain(ctx, "acme", "app", []model.FilterRef{{Name: "g"}, {Name: "f", OnError: "drop"}}); err != nil {
			t.Fatal(err)
		}
		mustKind(t, svc.Delete(ctx, "acme", "f"), errs.Conflict, "sink '"+sink.SinkID+"', formation 'app'")
		mustKind(t, svc.Delete(ctx, "acme", "g"), errs.Conflict, "formation 'app'")
		if err := ten.DeleteSink(ctx, "acme", sink.SinkID); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.SetFormationChain(ctx, "acme", "app", nil); err != nil {
			t.Fatal(err)
		}
		if err := svc.Delete(ctx, "acme", "f"); err != nil {
			t.Fatal(err)
		}
		mustKind(t, svc.Delete(ctx, "acme", "f"), errs.NotFound, "Filter 'f' not found in org 'acme'")
		_, err = svc.Get(ctx, "acme", "f")
		mustKind(t, err, errs.NotFound, "not found")
	})
}

func TestFormationChainValidation(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		svc := newService(t, st, nil)
		if _, _, err := svc.Put(ctx, "acme", "redact", goFilter(t, "redact")); err != nil {
			t.Fatal(err)
		}
		_, err := svc.SetFormationChain(ctx, "acme", "app", []model.FilterRef{{Name: "nope"}})
		mustKind(t, err, errs.Invalid, "Filter 'nope' not found in org 'acme'")
		_, err = svc.SetFormationChain(ctx, "acme", "app", []model.FilterRef{{Name: "redact", OnError: "explode"}})
		mustKind(t, err, errs.Invalid, "on_error")
		// The module's gw_init refuses a config without paths: caught at bind time.
		_, err = svc.SetFormationChain(ctx, "acme", "app", []model.FilterRef{{Name: "redact", Config: []byte(`{"mask":"x"}`)}})
		mustKind(t, err, errs.Invalid, "rejected")
		_, err = svc.SetFormationChain(ctx, "acme", "ghost", []model.FilterRef{})
		mustKind(t, err, errs.NotFound, "Formation 'ghost' not found")
		want := []model.FilterRef{{Name: "redact", Config: []byte(`{"paths":["password"]}`), OnError: "pass"}}
		if _, err := svc.SetFormationChain(ctx, "acme", "app", want); err != nil {
			t.Fatal(err)
		}
		got, err := svc.FormationChain(ctx, "acme", "app")
		if err != nil {
			t.Fatal(err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Fatalf("chain %s, want %s", gj, wj)
		}
	})
}

// TestCrossOrgIsolation: org beta can neither see, bind, test nor run org
// acme's module, and identical bytes uploaded by both orgs share compiled
// code but not instances or breakers.
func TestCrossOrgIsolation(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := mkOrg(t, st, "acme", "beta")
		svc := newService(t, st, func(c *filtering.Config) { c.Host.BreakerThreshold = 2 })
		trap := wat(t, watSpec{Decide: "unreachable"})
		if _, _, err := svc.Put(ctx, "acme", "secret", trap); err != nil {
			t.Fatal(err)
		}
		_, err := svc.Get(ctx, "beta", "secret")
		mustKind(t, err, errs.NotFound, "Filter 'secret' not found in org 'beta'")
		if l, _ := svc.List(ctx, "beta"); len(l) != 0 {
			t.Fatalf("beta sees %v", l)
		}
		_, err = svc.Test(ctx, "beta", "secret", nil, events("beta", 1, 1))
		mustKind(t, err, errs.NotFound, "not found in org 'beta'")
		_, err = svc.SetFormationChain(ctx, "beta", "app", []model.FilterRef{{Name: "secret"}})
		mustKind(t, err, errs.Invalid, "Filter 'secret' not found in org 'beta'")
		_, err = ten.CreateSink(ctx, "beta", model.CdcSinkType{Nats: &model.NatsSink{SubjectPrefix: "x"}}, []model.FilterRef{{Name: "secret"}})
		mustKind(t, err, errs.Invalid, "not found in org 'beta'")
		mustKind(t, svc.Delete(ctx, "beta", "secret"), errs.NotFound, "not found")
		// A chain naming it (as a stale or forged binding would) cannot run it.
		outs := svc.Apply(ctx, "beta", []model.FilterRef{{Name: "secret"}}, events("beta", 1, 3))
		for i, o := range outs {
			if o.Verdict != cdc.Fail || o.Policy != cdc.DeadLetter || !strings.Contains(o.Err, "not found in org 'beta'") {
				t.Fatalf("outcome %d: %+v", i, o)
			}
		}

		// Same bytes in both orgs: acme's breaker opens, beta's stays closed.
		if _, _, err := svc.Put(ctx, "beta", "secret", trap); err != nil {
			t.Fatal(err)
		}
		chain := []model.FilterRef{{Name: "secret"}}
		svc.Apply(ctx, "acme", chain, events("acme", 0, 10)) // every event traps
		st0 := svc.Status("acme", chain)
		if len(st0) != 1 || st0[0].Bindings[0].Breaker != "open" {
			t.Fatalf("acme status %+v", st0)
		}
		outs = svc.Apply(ctx, "beta", chain, events("beta", 1, 1))
		if outs[0].Verdict != cdc.Fail || strings.Contains(outs[0].Err, "circuit breaker") {
			t.Fatalf("beta's first event must run (and trap) in beta's own pool: %+v", outs[0])
		}
		if b := svc.Status("beta", chain); len(b) != 1 || b[0].Bindings[0].Breaker != "closed" || b[0].Bindings[0].ConsecutiveFailures != 1 {
			t.Fatalf("beta status %+v", b)
		}
	})
}

func TestDryRunExamples(t *testing.T) {
	mods := map[string][]byte{"redact": goFilter(t, "redact"), "drop": goFilter(t, "drop"), "route": goFilter(t, "route")}
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		svc := newService(t, st, nil)
		for name, b := range mods {
			if _, _, err := svc.Put(ctx, "acme", name, b); err != nil {
				t.Fatal(name, err)
			}
		}
		evs := events("acme", 0, 3)
		evs[1].Op = model.OpDelete
		evs[2].Patches = []byte(`{"type":"user","name":"x"}`)

		res, err := svc.Test(ctx, "acme", "redact", []byte(`{"paths":["password"]}`), evs)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Verdict != "replace" || string(res[0].Event.Patches) != `{"n":0,"user":"u0","type":"order"}` {
			t.Fatalf("redact: %+v %s", res[0], res[0].Event.Patches)
		}
		if res[2].Verdict != "keep" || string(res[2].Event.Patches) != string(evs[2].Patches) {
			t.Fatalf("redact keeps bodies without the path: %+v", res[2])
		}

		res, err = svc.Test(ctx, "acme", "drop", []byte(`{"field":"op","equals":"delete"}`), evs)
		if err != nil {
			t.Fatal(err)
		}
		if v := fmt.Sprint(res[0].Verdict, res[1].Verdict, res[2].Verdict); v != "keepdropkeep" {
			t.Fatalf("drop verdicts %v", v)
		}
		if res[1].Event != nil {
			t.Fatalf("a dropped event has no event: %+v", res[1])
		}

		res, err = svc.Test(ctx, "acme", "route", []byte(`{"routes":{"order":"orders","user":"users"}}`), evs)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Route != "orders" || res[2].Route != "users" || res[0].Verdict != "keep" {
			t.Fatalf("route: %+v", res)
		}

		// A config the module refuses is a 400, not a result.
		_, err = svc.Test(ctx, "acme", "redact", []byte(`{}`), evs)
		mustKind(t, err, errs.Invalid, "rejected")
		_, err = svc.Test(ctx, "acme", "nope", nil, evs)
		mustKind(t, err, errs.NotFound, "Filter 'nope' not found")
	})
}

// TestApplyPolicies runs a chain through the dispatcher interface: the
// formation's chain then the sink's, with each on_error policy.
func TestApplyPolicies(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		svc := newService(t, st, nil)
		for name, b := range map[string][]byte{"redact": goFilter(t, "redact"), "trap": wat(t, watTrap100), "odd": wat(t, watDropOdd)} {
			if _, _, err := svc.Put(ctx, "acme", name, b); err != nil {
				t.Fatal(err)
			}
		}
		redact := model.FilterRef{Name: "redact", Config: []byte(`{"paths":["password"]}`)}
		evs := events("acme", 0, 301)
		for _, tc := range []struct {
			policy string
			want   func(i int, o cdc.FilterOutcome) bool
		}{
			{"dead_letter", func(i int, o cdc.FilterOutcome) bool {
				if i%100 == 0 {
					return o.Verdict == cdc.Fail && o.Policy == cdc.DeadLetter && strings.Contains(o.Err, "filter 'trap'")
				}
				return o.Verdict == cdc.Replace && !strings.Contains(string(o.Event.Patches), "password")
			}},
			{"drop", func(i int, o cdc.FilterOutcome) bool {
				if i%100 == 0 {
					return o.Verdict == cdc.Fail && o.Policy == cdc.DropEvent
				}
				return o.Verdict == cdc.Replace
			}},
			{"pass", func(i int, o cdc.FilterOutcome) bool {
				// The trap is after redact, so a passed event is still redacted.
				return o.Verdict == cdc.Replace && !strings.Contains(string(o.Event.Patches), "password")
			}},
		} {
			chain := []model.FilterRef{redact, {Name: "trap", OnError: tc.policy}}
			outs := svc.Apply(ctx, "acme", chain, evs)
			if len(outs) != len(evs) {
				t.Fatalf("%s: %d outcomes for %d events", tc.policy, len(outs), len(evs))
			}
			for i, o := range outs {
				if !tc.want(i, o) {
					t.Fatalf("%s: event %d: %+v", tc.policy, i, o)
				}
			}
		}
		outs := svc.Apply(ctx, "acme", []model.FilterRef{{Name: "odd"}}, evs[:10])
		for i, o := range outs {
			if want := map[bool]cdc.Verdict{true: cdc.Drop, false: cdc.Keep}[i%2 == 1]; o.Verdict != want {
				t.Fatalf("odd: event %d: %+v", i, o)
			}
		}
		if outs := svc.Apply(ctx, "acme", nil, evs[:5]); len(outs) != 5 || outs[0].Verdict != cdc.Keep {
			t.Fatalf("empty chain: %+v", outs)
		}
	})
}

// TestRefreshSeesOtherReplica: a version uploaded through one Service (a
// replica) reaches a chain cached by another within the refresh interval.
func TestRefreshSeesOtherReplica(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		a := newService(t, st, nil)
		b := newService(t, st, func(c *filtering.Config) { c.Refresh = 50 * time.Millisecond })
		if _, _, err := a.Put(ctx, "acme", "v", wat(t, watVersion(1))); err != nil {
			t.Fatal(err)
		}
		chain := []model.FilterRef{{Name: "v"}}
		if o := b.Apply(ctx, "acme", chain, events("acme", 0, 1)); string(o[0].Event.Patches) != `{"v":1}` {
			t.Fatalf("before: %+v", o[0])
		}
		if _, _, err := a.Put(ctx, "acme", "v", wat(t, watVersion(2))); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			o := b.Apply(ctx, "acme", chain, events("acme", 0, 1))
			if string(o[0].Event.Patches) == `{"v":2}` {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica b still runs %s", o[0].Event.Patches)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func wasmtestWat(t testing.TB, text string) []byte { return wasmtest.Wat2Wasm(t, text) }
