// Command peat-gateway is the Peat mesh control plane: the admin and
// enrollment API, the CDC pipeline and its WebAssembly filters, in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/core/gateway"
	"github.com/defenseunicorns/peat-gateway/core/loadtest"
)

const usage = `peat-gateway — control plane for Peat mesh networks

Usage:
  peat-gateway [serve]                 run the gateway (configured by PEAT_* environment variables)
  peat-gateway version                 print the version
  peat-gateway migrate-keys [--dry-run] seal plaintext genesis records with the configured key provider
  peat-gateway rotate-kek --to-env FILE re-wrap every data key under a new provider or KEK
  peat-gateway loadtest [flags]        drive a gateway and report throughput and latency
  peat-gateway help | --help           this text

Main environment variables (see README.md for all):
  PEAT_GATEWAY_BIND       listen address (default 0.0.0.0:8080)
  PEAT_GATEWAY_DATA_DIR   data directory for SQLite and caches (default ./data)
  PEAT_STORAGE_BACKEND    sqlite (default) or postgres
  PEAT_DATABASE_URL       Postgres URL when PEAT_STORAGE_BACKEND=postgres
  PEAT_ADMIN_TOKEN        bearer token required on the admin API (unset: open, dev only)
  PEAT_KEK / PEAT_KMS_KEY_ARN / PEAT_VAULT_ADDR   envelope encryption of key material
  PEAT_LOG_FORMAT         text (default) or json
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "peat-gateway %s\n", gateway.Version)
		return 0
	case "help", "--help", "-h", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	case "loadtest", "load-test":
		return loadtest.Main(args, stdout, stderr)
	case "migrate-keys":
		return migrateKeys(args, stderr)
	case "rotate-kek":
		return rotateKEK(args, stderr)
	default:
		fmt.Fprintf(stderr, "peat-gateway: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	o := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func serve(stderr io.Writer) int {
	start := time.Now()
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "peat-gateway: configuration error: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	g, err := gateway.New(ctx, cfg, os.LookupEnv, gateway.Options{Logger: log})
	if err != nil {
		log.Error("start-up failed", "error", err)
		return 1
	}
	addr, err := g.Listen("")
	if err != nil {
		log.Error("start-up failed", "error", err)
		_ = g.Shutdown(context.Background())
		return 1
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve() }()
	log.Info("peat-gateway ready", "version", gateway.Version, "url", "http://"+displayAddr(addr.String()),
		"ui", "http://"+displayAddr(addr.String())+"/_/", "backend", cfg.Backend, "startup", time.Since(start).Round(time.Millisecond))

	select {
	case <-ctx.Done():
		log.Info("shutting down: no new connections, finishing in-flight requests", "timeout", cfg.ShutdownTimeout)
	case err := <-serveErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("server stopped", "error", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		log.Error("shutdown incomplete", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// displayAddr turns a wildcard listen address into one a browser can open.
func displayAddr(a string) string {
	for _, w := range []string{"0.0.0.0:", "[::]:"} {
		if len(a) > len(w) && a[:len(w)] == w {
			return "127.0.0.1:" + a[len(w):]
		}
	}
	return a
}

func migrateKeys(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dry := fs.Bool("dry-run", false, "count what would be migrated without writing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return keyCommand(stderr, func(ctx context.Context, cfg config.Config) error {
		return gateway.MigrateKeys(ctx, cfg, os.LookupEnv, *dry, stderr)
	})
}

func rotateKEK(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("rotate-kek", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to-env", "", "file of KEY=VALUE lines naming the new provider (PEAT_KEK, PEAT_KMS_KEY_ARN or PEAT_VAULT_*)")
	dry := fs.Bool("dry-run", false, "count what would be re-wrapped without writing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *to == "" {
		fmt.Fprintln(stderr, "rotate-kek: --to-env FILE is required")
		return 2
	}
	return keyCommand(stderr, func(ctx context.Context, cfg config.Config) error {
		return gateway.RotateKEK(ctx, cfg, os.LookupEnv, *to, *dry, stderr)
	})
}

func keyCommand(stderr io.Writer, f func(context.Context, config.Config) error) int {
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "peat-gateway: configuration error: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := f(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "peat-gateway: %v\n", err)
		return 1
	}
	return 0
}
