// Package gateway assembles a running gateway from its configuration:
// storage, key provider, domain services, CDC pipeline and the HTTP server.
// The binary, the in-process load test and end-to-end tests all start the
// gateway through it, so they exercise the same wiring.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/defenseunicorns/peat-gateway/core/api"
	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/core/docs"
	"github.com/defenseunicorns/peat-gateway/core/enroll"
	"github.com/defenseunicorns/peat-gateway/core/filtering"
	"github.com/defenseunicorns/peat-gateway/core/keys"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/postgres"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// Version is the gateway's version, set at link time by the Makefile.
var Version = "0.1.0-dev"

// Gateway is one running instance.
type Gateway struct {
	Config   config.Config
	Store    store.Store
	Provider keys.Provider
	Tenant   *tenant.Service
	Enroll   *enroll.Service
	Docs     *docs.Service
	Filters  *filtering.Service
	// Dispatcher delivers the outbox to the CDC sinks.
	Dispatcher *cdc.Dispatcher
	sinkF      *sinks.Factory
	locker     *cdc.PGLocker // nil on SQLite
	stopCDC    context.CancelFunc
	Server     *api.Server
	Registry   *prometheus.Registry
	Log        *slog.Logger

	ln net.Listener
}

// Options are what callers may add beyond the environment.
type Options struct {
	Logger *slog.Logger
}

// OpenStore opens the configured backend and applies migrations.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	switch cfg.Backend {
	case "postgres":
		var opts []postgres.Option
		if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
			// pgxpool's default (max(4, CPUs)) starves a gateway whose
			// document committer, per-sink workers and request handlers all
			// need connections at once; pool_max_conns in the URL overrides.
			opts = append(opts, postgres.WithMaxConns(24))
		}
		st, err := postgres.Open(ctx, cfg.DatabaseURL, opts...)
		if err != nil {
			return nil, fmt.Errorf("postgres (PEAT_DATABASE_URL): %w", err)
		}
		return st, nil
	default:
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("PEAT_GATEWAY_DATA_DIR: %w", err)
		}
		st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "gateway.db"))
		if err != nil {
			return nil, fmt.Errorf("sqlite (%s): %w", filepath.Join(cfg.DataDir, "gateway.db"), err)
		}
		return st, nil
	}
}

// OpenProvider builds the configured key provider and proves it works, so a
// configured but unreachable KMS or Vault stops start-up. nil means plaintext.
func OpenProvider(ctx context.Context, env config.Lookup) (keys.Provider, error) {
	p, err := keys.FromEnv(ctx, env)
	if err != nil || p == nil {
		return p, err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := keys.Check(cctx, p); err != nil {
		return nil, fmt.Errorf("key provider %s is configured but not usable: %w", p.Name(), err)
	}
	return p, nil
}

// sealer adapts a key provider to the domain's Sealer.
type sealer struct{ p keys.Provider }

func (s sealer) Seal(ctx context.Context, b []byte) ([]byte, error) { return keys.Seal(ctx, s.p, b) }

func (s sealer) Open(ctx context.Context, b []byte) ([]byte, error) {
	if !keys.IsEnvelope(b) {
		return append([]byte(nil), b...), nil
	}
	return keys.Open(ctx, s.p, b)
}

// NewSealer returns the domain sealer for p (nil for plaintext).
func NewSealer(p keys.Provider) tenant.Sealer {
	if p == nil {
		return nil
	}
	return sealer{p}
}

type storeCheck struct{ st store.Store }

func (c storeCheck) Name() string                    { return "storage" }
func (c storeCheck) Check(ctx context.Context) error { return c.st.Ping(ctx) }

// New opens everything the configuration names. Close releases it.
func New(ctx context.Context, cfg config.Config, env config.Lookup, opts Options) (*Gateway, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: "peat_gw_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": Version, "goversion": goVersion(), "backend": cfg.Backend}})
	bi.Set(1)
	reg.MustRegister(bi)

	prov, err := OpenProvider(ctx, env)
	if err != nil {
		return nil, err
	}
	if prov == nil {
		log.Warn("no key provider configured: genesis and IdP secrets are stored in plaintext (set PEAT_KEK, PEAT_KMS_KEY_ARN or PEAT_VAULT_ADDR)")
	} else {
		log.Info("key provider ready", "provider", prov.Name())
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var locker *cdc.PGLocker
	pg, _ := st.(*postgres.Store)
	if pg != nil {
		// Taken before Instrument hides the concrete type: replicas on one
		// database split the sinks with advisory locks.
		locker = cdc.NewPGLockerFromPool(pg.Pool())
	}
	st = store.Instrument(st, reg)
	ten := tenant.New(st, NewSealer(prov), tenant.Options{AllowPrivateWebhooks: cfg.WebhookAllowPriv})
	if cfg.AdminToken == nil {
		log.Warn("PEAT_ADMIN_TOKEN is not set: the admin API is open to anyone who can reach it")
	}
	esvc := enroll.New(ten, enroll.Options{AllowHTTPIssuers: cfg.OIDCAllowHTTP, Logger: log})
	dsvc := docs.New(st, ten, docs.Options{OutboxLimit: cfg.OutboxMaxRows, Registerer: reg, Logger: log})
	fcfg := filtering.ConfigFrom(cfg)
	fcfg.Registerer, fcfg.Logger = reg, log
	fsvc, err := filtering.New(ctx, st, fcfg)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("wasm filter host: %w", err)
	}
	scfg, err := sinks.LoadConfig(func(k string) string { v, _ := env(k); return v })
	if err != nil {
		st.Close()
		return nil, err
	}
	sf := sinks.NewFactory(scfg)
	copts := cdc.Options{StartFromNow: cfg.CdcStartFromNow, Retention: cfg.OutboxRetention, OutboxMaxRows: cfg.OutboxMaxRows,
		Filter: fsvc, Registerer: reg, Logger: log}
	if locker != nil {
		copts.Locker = locker
	}
	disp := cdc.New(st, sf, copts)
	dsvc.SetOnCommit(func(orgs []string) { disp.Notify(orgs...) })
	cctx, stopCDC := context.WithCancel(context.Background())
	disp.Start(cctx)
	if pg != nil {
		// Changes accepted by another replica wake this one's workers.
		go pg.WatchOutbox(cctx, log, func(org string) { disp.Notify(org) })
	}
	g := &Gateway{Config: cfg, Store: st, Provider: prov, Tenant: ten, Enroll: esvc, Docs: dsvc, Filters: fsvc, Registry: reg, Log: log,
		Dispatcher: disp, sinkF: sf, locker: locker, stopCDC: stopCDC}
	g.Server = api.New(api.Config{
		AdminToken:       cfg.AdminToken,
		Version:          Version,
		Tenant:           ten,
		Modules:          []api.Module{api.EnrollModule(esvc), api.DocsModule(dsvc), api.FiltersModule(fsvc), api.DeliveryModule(disp, ten)},
		UI:               uiHandler(cfg, log),
		MaxBody:          cfg.FilterMaxBytes + (1 << 20),
		Registry:         reg,
		Logger:           log,
		Checks:           []api.Checker{storeCheck{st}},
		AllowHTTPIssuers: cfg.OIDCAllowHTTP,
	})
	return g, nil
}

// Listen binds the configured address (or addr when non-empty).
func (g *Gateway) Listen(addr string) (net.Addr, error) {
	if addr == "" {
		addr = g.Config.Bind
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PEAT_GATEWAY_BIND %s: %w", addr, err)
	}
	g.ln = ln
	return ln.Addr(), nil
}

// Serve serves HTTP on the bound listener until Shutdown.
func (g *Gateway) Serve() error {
	if g.ln == nil {
		return errors.New("gateway: Serve before Listen")
	}
	return g.Server.Serve(g.ln)
}

// Shutdown stops accepting, finishes in-flight requests, then closes storage.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var errs []error
	if g.ln != nil {
		if err := g.Server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	// The server has finished its requests; commit what writers queued
	// before the store goes away.
	g.Docs.Close()
	// Undelivered events stay in the outbox; in-flight ones are sent again
	// after the restart.
	g.Dispatcher.Close()
	g.stopCDC()
	g.sinkF.Close()
	if g.locker != nil {
		g.locker.Close()
	}
	g.Enroll.Close()
	if err := g.Filters.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("filters: %w", err))
	}
	if err := g.Store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("storage: %w", err))
	}
	return errors.Join(errs...)
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
