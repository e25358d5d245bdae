package filtering_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/store/backendtest"

	"github.com/defenseunicorns/peat-gateway/core/filtering"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	ctx   = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// eachBackend runs f on a fresh SQLite and a fresh Postgres store.
func eachBackend(t *testing.T, f func(t *testing.T, st store.Store)) { backendtest.Each(t, f) }

// newService opens a Service closed at cleanup; mod adjusts its Config.
func newService(t testing.TB, st store.Store, mod func(*filtering.Config)) *filtering.Service {
	t.Helper()
	cfg := filtering.Config{Logger: quiet, Refresh: -1}
	if mod != nil {
		mod(&cfg)
	}
	s, err := filtering.New(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(c); err != nil {
			t.Errorf("closing service: %v", err)
		}
	})
	return s
}

// mkOrg creates orgs, each with the formation "app".
func mkOrg(t testing.TB, st store.Store, orgs ...string) *tenant.Service {
	t.Helper()
	ten := tenant.New(st, nil, tenant.Options{AllowPrivateWebhooks: true})
	for _, org := range orgs {
		if _, err := ten.CreateOrg(ctx, org, org); err != nil {
			t.Fatal(err)
		}
		o, err := st.GetOrg(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		o.Quotas.MaxCdcSinks, o.Quotas.MaxDocumentsPerFormation = 50, 1_000_000
		if err := st.UpdateOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		if _, err := ten.CreateFormation(ctx, org, "app", model.PolicyOpen); err != nil {
			t.Fatal(err)
		}
	}
	return ten
}

// events returns n events of org whose timestamp is their index (the WAT
// fixtures decide on it) and whose body carries a password to redact.
func events(org string, from, n int) []model.CdcEvent {
	out := make([]model.CdcEvent, n)
	for i := range out {
		k := from + i
		out[i] = model.CdcEvent{OrgID: org, AppID: "app", DocumentID: fmt.Sprintf("doc-%d", k),
			ChangeHash: fmt.Sprintf("h%06d", k), ActorID: "test", TimestampMs: uint64(k), Op: model.OpUpsert,
			Patches: []byte(fmt.Sprintf(`{"n":%d,"user":"u%d","password":"secret-%d","type":"order"}`, k, k, k))}
	}
	return out
}

// Example filters, built from source by the Go toolchain in the test run.
func goFilter(t testing.TB, name string) []byte {
	return wasmtest.BuildGo(t, "../../filters/examples/"+name)
}

// watSpec is a hand-written gw/v1 test module (see wasmtest.WatModule).
type watSpec = wasmtest.WatModule

func wat(t testing.TB, s watSpec) []byte { return s.Build(t) }

// Behaviour and fault modules.
var (
	watKeep = watSpec{}
	// watTrap100 traps on every event whose timestamp is a multiple of 100.
	watTrap100 = watSpec{Decide: `(if (i64.eqz (i64.rem_u (i64.load offset=8 (local.get $rec)) (i64.const 100)))
	    (then unreachable)) (i32.const 0)`}
	// watSpin loops forever in gw_process.
	watSpin = watSpec{Prologue: `(loop $spin (br $spin))`}
	// watMemBomb grows memory until refused, then traps.
	watMemBomb = watSpec{Prologue: `(block $full (loop $grow
	    (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
	    (br $grow)))
	  unreachable`}
	// watForbidden imports a WASI filesystem call.
	watForbidden = watSpec{Imports: `(import "wasi_snapshot_preview1" "path_open"
	    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))`}
	// watHostImport imports a host function the ABI does not grant.
	watHostImport = watSpec{Imports: `(import "env" "exfiltrate" (func $x (param i32 i32)))`}
	// watDropOdd drops events with an odd timestamp.
	watDropOdd = watSpec{Decide: `(i32.and (i32.wrap_i64 (i64.load offset=8 (local.get $rec))) (i32.const 1))`}
)

// watVersion replaces every body with {"v":n}: a module whose output names
// its version.
func watVersion(n int) watSpec { return watSpec{Body: fmt.Sprintf(`{"v":%d}`, n)} }

const (
	watNoProcess = wasmtest.NoProcessWat
	watCommand   = wasmtest.CommandWat
)
