package sinks

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config holds the process-wide settings of the sink drivers. LoadConfig
// reads it from these environment variables:
//
//	PEAT_CDC_NATS_URL              NATS server URL(s), comma separated; unset = NATS sinks unavailable
//	PEAT_CDC_NATS_CREDS            path of a .creds file (user JWT + NKey seed)
//	PEAT_CDC_NATS_TLS_CA           PEM CA bundle to verify the server (enables TLS)
//	PEAT_CDC_NATS_TLS_CERT/_KEY    PEM client certificate and key (mutual TLS)
//	PEAT_CDC_KAFKA_BROKERS         seed brokers host:port, comma separated; unset = Kafka sinks unavailable
//	PEAT_CDC_KAFKA_SASL_MECHANISM  PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (unset = no SASL)
//	PEAT_CDC_KAFKA_SASL_USERNAME / PEAT_CDC_KAFKA_SASL_PASSWORD
//	PEAT_CDC_KAFKA_TLS             "true" to use TLS with the system roots
//	PEAT_CDC_KAFKA_TLS_CA          PEM CA bundle (implies TLS)
//	PEAT_CDC_KAFKA_TLS_CERT/_KEY   PEM client certificate and key (implies TLS)
//	PEAT_WEBHOOK_ALLOW_PRIVATE     "true" lets webhooks reach loopback/private/link-local targets
//	PEAT_WEBHOOK_TIMEOUT_SECS      per-attempt webhook timeout, default 10
type Config struct {
	NATSURL     string        // PEAT_CDC_NATS_URL
	NATSCreds   string        // PEAT_CDC_NATS_CREDS
	NATSTLS     TLSFiles      // PEAT_CDC_NATS_TLS_*
	NATSAckWait time.Duration // JetStream publish-ack timeout; default 10 s
	NATSWindow  int           // async publishes in flight per connection; default 1024

	KafkaBrokers      []string      // PEAT_CDC_KAFKA_BROKERS
	KafkaSASLMech     string        // PEAT_CDC_KAFKA_SASL_MECHANISM, upper case
	KafkaSASLUser     string        // PEAT_CDC_KAFKA_SASL_USERNAME
	KafkaSASLPassword string        // PEAT_CDC_KAFKA_SASL_PASSWORD
	KafkaTLS          bool          // PEAT_CDC_KAFKA_TLS
	KafkaTLSFiles     TLSFiles      // PEAT_CDC_KAFKA_TLS_*
	KafkaTimeout      time.Duration // record delivery timeout; default 30 s

	WebhookAllowPrivate bool          // PEAT_WEBHOOK_ALLOW_PRIVATE
	WebhookTimeout      time.Duration // PEAT_WEBHOOK_TIMEOUT_SECS; per attempt; default 10 s
	WebhookParallelism  int           // documents delivered concurrently per batch; default 16
}

// TLSFiles names PEM files for a TLS client configuration.
type TLSFiles struct {
	CA   string // CA bundle verifying the server; empty = system roots
	Cert string // client certificate, for mutual TLS
	Key  string // key of Cert
}

func (t TLSFiles) set() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// config builds a client tls.Config; the system roots are used when no CA is
// given.
func (t TLSFiles) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("read TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificates", t.CA)
		}
		cfg.RootCAs = pool
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, errors.New("TLS client certificate and key must be set together")
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("load TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// LoadConfig reads Config from the environment through getenv (os.Getenv in
// production).
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		NATSURL:   strings.TrimSpace(getenv("PEAT_CDC_NATS_URL")),
		NATSCreds: getenv("PEAT_CDC_NATS_CREDS"),
		NATSTLS: TLSFiles{
			CA: getenv("PEAT_CDC_NATS_TLS_CA"), Cert: getenv("PEAT_CDC_NATS_TLS_CERT"), Key: getenv("PEAT_CDC_NATS_TLS_KEY"),
		},
		KafkaSASLMech:     strings.ToUpper(strings.TrimSpace(getenv("PEAT_CDC_KAFKA_SASL_MECHANISM"))),
		KafkaSASLUser:     getenv("PEAT_CDC_KAFKA_SASL_USERNAME"),
		KafkaSASLPassword: getenv("PEAT_CDC_KAFKA_SASL_PASSWORD"),
		KafkaTLSFiles: TLSFiles{
			CA: getenv("PEAT_CDC_KAFKA_TLS_CA"), Cert: getenv("PEAT_CDC_KAFKA_TLS_CERT"), Key: getenv("PEAT_CDC_KAFKA_TLS_KEY"),
		},
	}
	for _, b := range strings.Split(getenv("PEAT_CDC_KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
	}
	var err error
	if c.KafkaTLS, err = envBool(getenv, "PEAT_CDC_KAFKA_TLS"); err != nil {
		return Config{}, err
	}
	if c.WebhookAllowPrivate, err = envBool(getenv, "PEAT_WEBHOOK_ALLOW_PRIVATE"); err != nil {
		return Config{}, err
	}
	if v := strings.TrimSpace(getenv("PEAT_WEBHOOK_TIMEOUT_SECS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return Config{}, fmt.Errorf("PEAT_WEBHOOK_TIMEOUT_SECS: want a positive integer, got %q", v)
		}
		c.WebhookTimeout = time.Duration(n) * time.Second
	}
	switch c.KafkaSASLMech {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return Config{}, fmt.Errorf("PEAT_CDC_KAFKA_SASL_MECHANISM: unsupported %q (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)", c.KafkaSASLMech)
	}
	return c, nil
}

func envBool(getenv func(string) string, name string) (bool, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", name, v)
	}
	return b, nil
}

// ErrNATSNotConfigured and ErrKafkaNotConfigured are returned by Factory.New
// for a sink whose broker is not configured; the dispatcher surfaces them
// as the sink's last_error.
var (
	ErrNATSNotConfigured  = errors.New("NATS sink unavailable: PEAT_CDC_NATS_URL is not set")
	ErrKafkaNotConfigured = errors.New("Kafka sink unavailable: PEAT_CDC_KAFKA_BROKERS is not set")
)

// Factory builds drivers and owns the connections they share: one NATS
// connection, one Kafka client and one HTTP client per process, created on
// first use so a gateway without NATS or Kafka sinks never dials them and an
// unreachable broker never stops start-up.
type Factory struct {
	cfg Config

	mu     sync.Mutex
	nats   *natsShared
	kcl    *kgo.Client
	hook   *webhookClient
	closed bool
}

// NewFactory returns a Factory for cfg; it dials nothing yet.
func NewFactory(cfg Config) *Factory {
	if cfg.NATSAckWait <= 0 {
		cfg.NATSAckWait = 10 * time.Second
	}
	if cfg.NATSWindow <= 0 {
		cfg.NATSWindow = 1024
	}
	if cfg.KafkaTimeout <= 0 {
		cfg.KafkaTimeout = 30 * time.Second
	}
	if cfg.WebhookTimeout <= 0 {
		cfg.WebhookTimeout = 10 * time.Second
	}
	if cfg.WebhookParallelism <= 0 {
		cfg.WebhookParallelism = 16
	}
	return &Factory{cfg: cfg}
}

// New builds the driver for a sink of the given kind (KindNats, KindKafka,
// KindWebhook). Configuration errors (an invalid prefix, topic or URL, a
// broker that is not configured) are returned here so they can be shown in
// the sink's status instead of failing every delivery.
func (f *Factory) New(kind string, spec SinkSpec) (Driver, error) {
	switch kind {
	case KindNats:
		sh, err := f.natsConn()
		if err != nil {
			return nil, err
		}
		return newNATSDriver(sh, spec)
	case KindKafka:
		cl, err := f.kafkaClient()
		if err != nil {
			return nil, err
		}
		return newKafkaDriver(cl, spec)
	case KindWebhook:
		return newWebhookDriver(f.webhookClient(), spec)
	}
	return nil, fmt.Errorf("unknown sink kind %q", kind)
}

// Validate checks a sink's configuration as New would, without dialing
// anything, so the API can refuse a bad sink at creation (400) instead of
// storing a sink that can never deliver.
func (f *Factory) Validate(kind string, spec SinkSpec) error {
	switch kind {
	case KindNats:
		return validPrefix(strings.TrimSpace(spec.SubjectPrefix))
	case KindKafka:
		return validTopic(strings.TrimSpace(spec.Topic))
	case KindWebhook:
		_, err := parseWebhookSpec(spec, f.cfg.WebhookAllowPrivate)
		return err
	}
	return fmt.Errorf("unknown sink kind %q", kind)
}

// Close closes the shared connections; drivers built by f stop working.
func (f *Factory) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.nats != nil {
		f.nats.nc.Close()
		f.nats = nil
	}
	if f.kcl != nil {
		f.kcl.Close()
		f.kcl = nil
	}
	if f.hook != nil {
		f.hook.client.CloseIdleConnections()
		f.hook = nil
	}
	return nil
}

var errFactoryClosed = errors.New("sink factory closed")

func (f *Factory) natsConn() (*natsShared, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errFactoryClosed
	}
	if f.nats != nil {
		return f.nats, nil
	}
	if f.cfg.NATSURL == "" {
		return nil, ErrNATSNotConfigured
	}
	opts := []nats.Option{
		nats.Name("peat-gateway-cdc"),
		// Never give up: the outbox keeps events while the broker is away,
		// and the connection must come back on its own.
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(natsReconnectDelay),
		// Start even if the broker is down (the reference refused to start).
		nats.RetryOnFailedConnect(true),
		// Publishes are only attempted while connected (see Deliver), so a
		// reconnect buffer would only delay failures.
		nats.ReconnectBufSize(-1),
	}
	if f.cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(f.cfg.NATSCreds))
	}
	if f.cfg.NATSTLS.set() {
		tc, err := f.cfg.NATSTLS.config()
		if err != nil {
			return nil, fmt.Errorf("PEAT_CDC_NATS_TLS: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(f.cfg.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS connect: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(f.cfg.NATSWindow),
		jetstream.WithPublishAsyncTimeout(f.cfg.NATSAckWait),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("JetStream context: %w", err)
	}
	f.nats = &natsShared{nc: nc, js: js, streams: newStreamCache()}
	return f.nats, nil
}

// natsReconnectDelay backs off exponentially (with jitter) up to 30 s so a
// long broker outage does not turn into a reconnect storm.
func natsReconnectDelay(attempts int) time.Duration {
	return 250*time.Millisecond + Backoff(attempts, 250*time.Millisecond, 30*time.Second)
}

func (f *Factory) kafkaClient() (*kgo.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errFactoryClosed
	}
	if f.kcl != nil {
		return f.kcl, nil
	}
	if len(f.cfg.KafkaBrokers) == 0 {
		return nil, ErrKafkaNotConfigured
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(f.cfg.KafkaBrokers...),
		kgo.ClientID("peat-gateway-cdc"),
		// Idempotent writes are kgo's default and require acks=all; both
		// are spelled out because delivery guarantees rest on them.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(f.cfg.KafkaTimeout),
		kgo.ProducerLinger(0),
	}
	switch f.cfg.KafkaSASLMech {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: f.cfg.KafkaSASLUser, Pass: f.cfg.KafkaSASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: f.cfg.KafkaSASLUser, Pass: f.cfg.KafkaSASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: f.cfg.KafkaSASLUser, Pass: f.cfg.KafkaSASLPassword}.AsSha512Mechanism()))
	}
	if f.cfg.KafkaTLS || f.cfg.KafkaTLSFiles.set() {
		tc, err := f.cfg.KafkaTLSFiles.config()
		if err != nil {
			return nil, fmt.Errorf("PEAT_CDC_KAFKA_TLS: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("Kafka client: %w", err)
	}
	f.kcl = cl
	return cl, nil
}

func (f *Factory) webhookClient() *webhookClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hook == nil {
		f.hook = newWebhookClient(f.cfg.WebhookAllowPrivate, f.cfg.WebhookTimeout, f.cfg.WebhookParallelism)
	}
	return f.hook
}
