// Package config reads the gateway's environment once at start-up. Variable
// names and defaults are the Rust reference's (anchor-api.md §7.1) plus the
// new ones for the features it lacked. A bad value stops start-up with an
// error that names the variable.
package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the gateway's settings.
type Config struct {
	Bind    string // PEAT_GATEWAY_BIND
	DataDir string // PEAT_GATEWAY_DATA_DIR
	// Backend is "sqlite" or "postgres" (PEAT_STORAGE_BACKEND).
	Backend     string
	DatabaseURL string // PEAT_DATABASE_URL (or the reference's PEAT_STORAGE_POSTGRES_URL)
	// AdminToken is nil when PEAT_ADMIN_TOKEN is unset (open admin API, dev only).
	AdminToken *string
	UIDir      string // PEAT_UI_DIR: serve the UI from disk instead of the embedded copy
	LogFormat  string // PEAT_LOG_FORMAT: text | json
	LogLevel   string // PEAT_LOG_LEVEL: debug | info | warn | error

	CdcNatsURL         string   // PEAT_CDC_NATS_URL
	CdcKafkaBrokers    []string // PEAT_CDC_KAFKA_BROKERS
	WebhookAllowPriv   bool     // PEAT_WEBHOOK_ALLOW_PRIVATE
	OutboxMaxRows      int64    // PEAT_OUTBOX_MAX_ROWS: undelivered rows before writes get 507
	OutboxRetention    time.Duration
	CdcStartFromNow    bool  // PEAT_CDC_NEW_SINK_FROM=now
	FilterMaxBytes     int   // PEAT_FILTER_MAX_BYTES
	FilterMaxModules   int   // PEAT_FILTER_MAX_MODULES per org
	FilterMaxOrgBytes  int64 // PEAT_FILTER_MAX_ORG_BYTES per org
	OIDCAllowHTTP      bool  // PEAT_OIDC_ALLOW_HTTP (development only)
	ShutdownTimeout    time.Duration
	IngressNatsURL     string // PEAT_INGRESS_NATS_URL
	IngressStream      string // PEAT_INGRESS_STREAM_NAME
	IngressPrefix      string // PEAT_INGRESS_CONSUMER_PREFIX
	IngressMaxDeliver  int    // PEAT_INGRESS_MAX_DELIVER
	IngressAckWaitSecs int    // PEAT_INGRESS_ACK_WAIT_SECS
}

// Lookup reads one environment variable (os.LookupEnv in production).
type Lookup func(string) (string, bool)

// Load reads every setting.
func Load(env Lookup) (Config, error) {
	get := func(k, def string) string {
		if v, ok := env(k); ok {
			return v
		}
		return def
	}
	c := Config{
		Bind:               get("PEAT_GATEWAY_BIND", "0.0.0.0:8080"),
		DataDir:            get("PEAT_GATEWAY_DATA_DIR", "./data"),
		UIDir:              get("PEAT_UI_DIR", ""),
		LogFormat:          strings.ToLower(get("PEAT_LOG_FORMAT", "text")),
		LogLevel:           strings.ToLower(get("PEAT_LOG_LEVEL", "info")),
		CdcNatsURL:         get("PEAT_CDC_NATS_URL", ""),
		IngressNatsURL:     get("PEAT_INGRESS_NATS_URL", ""),
		IngressStream:      get("PEAT_INGRESS_STREAM_NAME", "peat-gw-ctl"),
		IngressPrefix:      get("PEAT_INGRESS_CONSUMER_PREFIX", "peat-gw"),
		IngressMaxDeliver:  lenientInt(get("PEAT_INGRESS_MAX_DELIVER", ""), 5),
		IngressAckWaitSecs: lenientInt(get("PEAT_INGRESS_ACK_WAIT_SECS", ""), 30),
	}
	if v, ok := env("PEAT_ADMIN_TOKEN"); ok {
		c.AdminToken = &v
	}
	switch b := strings.ToLower(strings.TrimSpace(get("PEAT_STORAGE_BACKEND", "sqlite"))); b {
	case "sqlite", "postgres":
		c.Backend = b
	case "redb":
		// A Rust deployment's value: the embedded store here is SQLite.
		c.Backend = "sqlite"
	default:
		return c, fmt.Errorf("PEAT_STORAGE_BACKEND: unknown backend %q (expected sqlite or postgres)", b)
	}
	c.DatabaseURL = get("PEAT_DATABASE_URL", get("PEAT_STORAGE_POSTGRES_URL", "postgres://peat:peat@localhost:5432/peat_gateway"))
	if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		return c, fmt.Errorf("PEAT_GATEWAY_BIND: %q is not host:port: %v", c.Bind, err)
	}
	if c.DataDir == "" {
		return c, fmt.Errorf("PEAT_GATEWAY_DATA_DIR: must not be empty")
	}
	c.DataDir = filepath.Clean(c.DataDir)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, fmt.Errorf("PEAT_LOG_FORMAT: %q (expected text or json)", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return c, fmt.Errorf("PEAT_LOG_LEVEL: %q (expected debug, info, warn or error)", c.LogLevel)
	}
	if v := get("PEAT_CDC_KAFKA_BROKERS", ""); v != "" {
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.CdcKafkaBrokers = append(c.CdcKafkaBrokers, b)
			}
		}
	}
	var err error
	if c.WebhookAllowPriv, err = boolVar(env, "PEAT_WEBHOOK_ALLOW_PRIVATE"); err != nil {
		return c, err
	}
	if c.OIDCAllowHTTP, err = boolVar(env, "PEAT_OIDC_ALLOW_HTTP"); err != nil {
		return c, err
	}
	if c.OutboxMaxRows, err = int64Var(env, "PEAT_OUTBOX_MAX_ROWS", 5_000_000); err != nil {
		return c, err
	}
	if c.OutboxRetention, err = durVar(env, "PEAT_OUTBOX_RETENTION", 7*24*time.Hour); err != nil {
		return c, err
	}
	if c.ShutdownTimeout, err = durVar(env, "PEAT_SHUTDOWN_TIMEOUT", 20*time.Second); err != nil {
		return c, err
	}
	fb, err := int64Var(env, "PEAT_FILTER_MAX_BYTES", 8<<20)
	if err != nil {
		return c, err
	}
	c.FilterMaxBytes = int(fb)
	mm, err := int64Var(env, "PEAT_FILTER_MAX_MODULES", 32)
	if err != nil {
		return c, err
	}
	c.FilterMaxModules = int(mm)
	if c.FilterMaxOrgBytes, err = int64Var(env, "PEAT_FILTER_MAX_ORG_BYTES", 64<<20); err != nil {
		return c, err
	}
	switch v := strings.ToLower(get("PEAT_CDC_NEW_SINK_FROM", "retained")); v {
	case "retained":
	case "now":
		c.CdcStartFromNow = true
	default:
		return c, fmt.Errorf("PEAT_CDC_NEW_SINK_FROM: %q (expected retained or now)", v)
	}
	return c, nil
}

func boolVar(env Lookup, k string) (bool, error) {
	v, ok := env(k)
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean (use true or false)", k, v)
	}
	return b, nil
}

func int64Var(env Lookup, k string, def int64) (int64, error) {
	v, ok := env(k)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a non-negative integer", k, v)
	}
	return n, nil
}

func durVar(env Lookup, k string, def time.Duration) (time.Duration, error) {
	v, ok := env(k)
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: %q is not a duration such as 30s or 168h", k, v)
	}
	return d, nil
}

// lenientInt keeps the reference's behaviour for the ingress settings: an
// unparsable value silently means the default.
func lenientInt(v string, def int) int {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return def
	}
	return n
}
