package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/gateway"
	"github.com/defenseunicorns/peat-gateway/core/keys"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	kekA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	kekB = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
)

// env is a fake process environment for one gateway start.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// backendEnvs gives one environment per storage backend, sharing nothing.
func backendEnvs(t *testing.T) map[string]env {
	return map[string]env{
		"sqlite":   {"PEAT_GATEWAY_DATA_DIR": t.TempDir(), "PEAT_GATEWAY_BIND": "127.0.0.1:0"},
		"postgres": {"PEAT_GATEWAY_DATA_DIR": t.TempDir(), "PEAT_GATEWAY_BIND": "127.0.0.1:0", "PEAT_STORAGE_BACKEND": "postgres", "PEAT_DATABASE_URL": pgtest.URL(t)},
	}
}

func open(t *testing.T, e env) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Load(e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, e.lookup, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func with(e env, kv ...string) env {
	n := env{}
	for k, v := range e {
		n[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		n[kv[i]] = kv[i+1]
	}
	return n
}

// TestGenesisSealedWithKEK: a genesis sealed with one KEK opens after a
// restart with that KEK only; another KEK yields a clear error, never garbage.
func TestGenesisSealedWithKEK(t *testing.T) {
	for name, base := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			e := with(base, "PEAT_KEK", kekA)
			g := open(t, e)
			if _, err := g.Tenant.CreateOrg(ctx, "acme", "Acme"); err != nil {
				t.Fatal(err)
			}
			f, err := g.Tenant.CreateFormation(ctx, "acme", "fleet", model.PolicyOpen)
			if err != nil {
				t.Fatal(err)
			}
			blob, err := g.Store.GetGenesis(ctx, "acme", "fleet")
			if err != nil {
				t.Fatal(err)
			}
			if !keys.IsEnvelope(blob) {
				t.Fatalf("genesis stored unsealed: % x", blob[:8])
			}
			gen, err := g.Tenant.LoadGenesis(ctx, "acme", "fleet")
			if err != nil {
				t.Fatal(err)
			}
			if gen.MeshID() != f.MeshID || gen.Name() != "fleet" {
				t.Fatalf("opened genesis %s/%s, want %s/fleet", gen.MeshID(), gen.Name(), f.MeshID)
			}
			gen.Zeroize()
			g.Shutdown(ctx)

			// Restart with the same KEK: still opens.
			g = open(t, e)
			if gen, err = g.Tenant.LoadGenesis(ctx, "acme", "fleet"); err != nil || gen.MeshID() != f.MeshID {
				t.Fatalf("after restart: %v", err)
			}
			g.Shutdown(ctx)

			// Wrong KEK: a clear error.
			g = open(t, with(base, "PEAT_KEK", kekB))
			_, err = g.Tenant.LoadGenesis(ctx, "acme", "fleet")
			if err == nil || !errors.Is(err, keys.ErrWrongKey) || errs.KindOf(err) != errs.Internal {
				t.Fatalf("wrong KEK: err = %v", err)
			}
			g.Shutdown(ctx)

			// No provider at all: refuses to decode the sealed blob.
			g = open(t, base)
			if _, err = g.Tenant.LoadGenesis(ctx, "acme", "fleet"); err == nil || !strings.Contains(err.Error(), "no key provider") {
				t.Fatalf("no provider: err = %v", err)
			}
			g.Shutdown(ctx)
		})
	}
}

// TestMigrateAndRotate seals plaintext records, is safe to re-run, and
// rotates to a new KEK without touching payloads.
func TestMigrateAndRotate(t *testing.T) {
	for name, base := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			g := open(t, base) // plaintext
			if _, err := g.Tenant.CreateOrg(ctx, "acme", "Acme"); err != nil {
				t.Fatal(err)
			}
			var mesh []string
			for _, app := range []string{"a", "b", "c"} {
				f, err := g.Tenant.CreateFormation(ctx, "acme", app, model.PolicyOpen)
				if err != nil {
					t.Fatal(err)
				}
				mesh = append(mesh, f.MeshID)
			}
			if _, err := g.Tenant.CreateIdp(ctx, "acme", tenant.IdpRequest{IssuerURL: "https://kc", ClientID: "gw", ClientSecret: "shh"}); err != nil {
				t.Fatal(err)
			}
			g.Shutdown(ctx)
			cfg, _ := config.Load(base.lookup)

			var out bytes.Buffer
			err := gateway.MigrateKeys(ctx, cfg, base.lookup, false, &out)
			if err == nil || !strings.Contains(err.Error(), "No key provider configured") {
				t.Fatalf("without provider: %v", err)
			}
			ea := with(base, "PEAT_KEK", kekA)
			out.Reset()
			if err := gateway.MigrateKeys(ctx, cfg, ea.lookup, true, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "4 would migrate, 0 already encrypted, 0 missing genesis, 3 total formations") {
				t.Fatalf("dry run: %s", out.String())
			}
			// An interrupted run: seal one record by hand, as a run killed half-way would leave it.
			st := open(t, ea)
			blob, _ := st.Store.GetGenesis(ctx, "acme", "b")
			sealed, _ := keys.Seal(ctx, st.Provider, blob)
			if err := st.Store.ReplaceGenesis(ctx, "acme", "b", blob, sealed); err != nil {
				t.Fatal(err)
			}
			st.Shutdown(ctx)
			out.Reset()
			if err := gateway.MigrateKeys(ctx, cfg, ea.lookup, false, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "3 migrated, 1 already encrypted, 0 missing genesis, 3 total formations") {
				t.Fatalf("migrate: %s", out.String())
			}
			out.Reset()
			if err := gateway.MigrateKeys(ctx, cfg, ea.lookup, false, &out); err != nil || !strings.Contains(out.String(), "0 migrated, 4 already encrypted") {
				t.Fatalf("re-run: %v %s", err, out.String())
			}
			checkOpens(t, ea, mesh)

			// Rotate to KEK B.
			to := filepath.Join(t.TempDir(), "new.env")
			os.WriteFile(to, []byte("# new key\nPEAT_KEK="+kekB+"\n"), 0o600)
			out.Reset()
			if err := gateway.RotateKEK(ctx, cfg, ea.lookup, to, false, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "4 re-wrapped, 0 already under the new key") {
				t.Fatalf("rotate: %s", out.String())
			}
			// Re-running after completion (as after an interruption) finds everything done.
			out.Reset()
			if err := gateway.RotateKEK(ctx, cfg, ea.lookup, to, false, &out); err != nil || !strings.Contains(out.String(), "0 re-wrapped, 4 already under the new key") {
				t.Fatalf("rotate re-run: %v %s", err, out.String())
			}
			eb := with(base, "PEAT_KEK", kekB)
			checkOpens(t, eb, mesh)
			g = open(t, ea)
			if _, err := g.Tenant.LoadGenesis(ctx, "acme", "a"); !errors.Is(err, keys.ErrWrongKey) {
				t.Fatalf("old KEK still opens: %v", err)
			}
			g.Shutdown(ctx)
		})
	}
}

func checkOpens(t *testing.T, e env, mesh []string) {
	t.Helper()
	ctx := context.Background()
	g := open(t, e)
	defer g.Shutdown(ctx)
	for i, app := range []string{"a", "b", "c"} {
		gen, err := g.Tenant.LoadGenesis(ctx, "acme", app)
		if err != nil || gen.MeshID() != mesh[i] {
			t.Fatalf("formation %s: %v", app, err)
		}
	}
	idps, _ := g.Tenant.ListIdps(ctx, "acme")
	if !keys.IsEnvelope(idps[0].ClientSecret) {
		t.Fatal("idp secret not sealed")
	}
	sec, err := g.Tenant.OpenIdpSecret(ctx, idps[0])
	if err != nil || string(sec) != "shh" {
		t.Fatalf("idp secret: %q %v", sec, err)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := map[string]string{
		"PEAT_STORAGE_BACKEND":       "mongo",
		"PEAT_GATEWAY_BIND":          "nonsense",
		"PEAT_LOG_FORMAT":            "xml",
		"PEAT_WEBHOOK_ALLOW_PRIVATE": "maybe",
		"PEAT_OUTBOX_MAX_ROWS":       "-4",
		"PEAT_OUTBOX_RETENTION":      "forever",
	}
	for k, v := range cases {
		_, err := config.Load(env{k: v}.lookup)
		if err == nil || !strings.HasPrefix(err.Error(), k) {
			t.Errorf("%s=%s: err = %v", k, v, err)
		}
	}
	c, err := config.Load(env{}.lookup)
	if err != nil || c.Bind != "0.0.0.0:8080" || c.DataDir != "data" || c.Backend != "sqlite" || c.AdminToken != nil {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, _ = config.Load(env{"PEAT_ADMIN_TOKEN": "", "PEAT_STORAGE_BACKEND": "redb"}.lookup)
	if c.AdminToken == nil || *c.AdminToken != "" || c.Backend != "sqlite" {
		t.Fatalf("empty token must enforce auth; redb means sqlite: %+v", c)
	}
	// A configured key provider that cannot work stops start-up with its name.
	_, err = gateway.New(context.Background(), c, env{"PEAT_KEK": "abc"}.lookup, gateway.Options{})
	if err == nil || !strings.Contains(err.Error(), "PEAT_KEK") {
		t.Fatalf("bad KEK: %v", err)
	}
}
