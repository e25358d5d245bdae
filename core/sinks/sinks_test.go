package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// ev builds a test event; the change hash is unique per (doc, n).
func ev(org, app, doc string, n int) model.CdcEvent {
	return model.CdcEvent{
		OrgID: org, AppID: app, DocumentID: doc,
		ChangeHash:  fmt.Sprintf("%s-%s-%s-%d", org, app, doc, n),
		ActorID:     "tester",
		TimestampMs: 1700000000000 + uint64(n),
		Patches:     json.RawMessage(fmt.Sprintf(`{"n":%d,"html":"<&>"}`, n)),
		Op:          model.OpUpsert,
	}
}

func TestMarshalEventMatchesReferenceBytes(t *testing.T) {
	e := model.CdcEvent{
		OrgID: "acme", AppID: "logistics", DocumentID: "order-001", ChangeHash: "b3e37298ed46f79d",
		ActorID: "peer-42", TimestampMs: 1700000000000,
		Patches: json.RawMessage(`{ "_actor": "peer-42", "status": "shipped <&>" }`),
	}
	got, err := MarshalEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"org_id":"acme","app_id":"logistics","document_id":"order-001","change_hash":"b3e37298ed46f79d","actor_id":"peer-42","timestamp_ms":1700000000000,"patches":{"_actor":"peer-42","status":"shipped <&>"}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	e.Patches = json.RawMessage(`{bad`)
	if _, err := MarshalEvent(&e); err == nil {
		t.Fatal("malformed patches must not encode")
	}
}

func TestBackoffFullJitterCapped(t *testing.T) {
	base, max := 100*time.Millisecond, 5*time.Second
	for _, tc := range []struct {
		attempt int
		ceil    time.Duration
	}{{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {3, 800 * time.Millisecond}, {6, 5 * time.Second}, {80, 5 * time.Second}} {
		var top time.Duration
		for range 2000 {
			d := Backoff(tc.attempt, base, max)
			if d < 0 || d > tc.ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", tc.attempt, d, tc.ceil)
			}
			top = max2(top, d)
		}
		// Full jitter spreads over the whole range, not just near the cap.
		if top < tc.ceil/2 {
			t.Fatalf("attempt %d: max of 2000 draws %v, want spread up to %v", tc.attempt, top, tc.ceil)
		}
	}
	if Backoff(3, 0, max) != 0 {
		t.Fatal("zero base must give zero delay")
	}
}

func max2(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func TestWavesKeepPerDocumentRounds(t *testing.T) {
	evs := []model.CdcEvent{ev("o", "a", "x", 1), ev("o", "a", "y", 1), ev("o", "a", "x", 2), ev("o", "b", "x", 1), ev("o", "a", "x", 3), ev("o", "a", "y", 2)}
	got := waves(evs)
	want := [][]int{{0, 1, 3}, {2, 5}, {4}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("waves = %v, want %v", got, want)
	}
}

func TestParseSinkType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind string
		spec SinkSpec
		ok   bool
	}{
		{`{"Nats":{"subject_prefix":"cdc"}}`, KindNats, SinkSpec{SubjectPrefix: "cdc"}, true},
		{`{"Kafka":{"topic":"t","extra":1}}`, KindKafka, SinkSpec{Topic: "t"}, true},
		{`{"Webhook":{"url":"https://h/x","secret":"s"}}`, KindWebhook, SinkSpec{URL: "https://h/x", Secret: "s"}, true},
		{`{"Redis":{}}`, "", SinkSpec{}, false},
		{`{"Nats":{},"Kafka":{}}`, "", SinkSpec{}, false},
		{`[]`, "", SinkSpec{}, false},
	} {
		kind, spec, err := ParseSinkType([]byte(tc.in))
		if (err == nil) != tc.ok || kind != tc.kind || spec != tc.spec {
			t.Errorf("%s: got %q %+v %v", tc.in, kind, spec, err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	env := map[string]string{
		"PEAT_CDC_NATS_URL":             " nats://a:4222 ",
		"PEAT_CDC_NATS_CREDS":           "/c.creds",
		"PEAT_CDC_KAFKA_BROKERS":        "k1:9092, k2:9092,,",
		"PEAT_CDC_KAFKA_SASL_MECHANISM": "scram-sha-512",
		"PEAT_CDC_KAFKA_TLS":            "true",
		"PEAT_WEBHOOK_ALLOW_PRIVATE":    "TRUE",
		"PEAT_WEBHOOK_TIMEOUT_SECS":     "3",
	}
	c, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != "nats://a:4222" || c.NATSCreds != "/c.creds" || !reflect.DeepEqual(c.KafkaBrokers, []string{"k1:9092", "k2:9092"}) ||
		c.KafkaSASLMech != "SCRAM-SHA-512" || !c.KafkaTLS || !c.WebhookAllowPrivate || c.WebhookTimeout != 3*time.Second {
		t.Fatalf("unexpected config %+v", c)
	}
	for k, v := range map[string]string{
		"PEAT_CDC_KAFKA_SASL_MECHANISM": "GSSAPI",
		"PEAT_WEBHOOK_ALLOW_PRIVATE":    "maybe",
		"PEAT_WEBHOOK_TIMEOUT_SECS":     "-1",
	} {
		if _, err := LoadConfig(func(n string) string {
			if n == k {
				return v
			}
			return ""
		}); err == nil {
			t.Errorf("%s=%s accepted", k, v)
		}
	}
}

func TestFactoryUnconfiguredBrokers(t *testing.T) {
	f := NewFactory(Config{})
	defer f.Close()
	if _, err := f.New(KindNats, SinkSpec{SubjectPrefix: "cdc"}); !errors.Is(err, ErrNATSNotConfigured) {
		t.Fatalf("nats: %v", err)
	}
	if _, err := f.New(KindKafka, SinkSpec{Topic: "t"}); !errors.Is(err, ErrKafkaNotConfigured) {
		t.Fatalf("kafka: %v", err)
	}
	if _, err := f.New("Redis", SinkSpec{}); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestFactoryValidateDialsNothing(t *testing.T) {
	f := NewFactory(Config{}) // no brokers: Validate must still work
	for _, tc := range []struct {
		kind string
		spec SinkSpec
		ok   bool
	}{
		{KindNats, SinkSpec{SubjectPrefix: "peat.acme"}, true},
		{KindNats, SinkSpec{SubjectPrefix: "x.ctl"}, false},
		{KindNats, SinkSpec{SubjectPrefix: "a..b"}, false},
		{KindKafka, SinkSpec{Topic: "cdc-events"}, true},
		{KindKafka, SinkSpec{Topic: " "}, false},
		{KindWebhook, SinkSpec{URL: "https://hooks.example.com/cdc"}, true},
		{KindWebhook, SinkSpec{URL: "http://10.0.0.1/"}, false},
		{KindWebhook, SinkSpec{URL: "https://h.example/", Secret: "whsec_"}, false},
		{"Redis", SinkSpec{}, false},
	} {
		if err := f.Validate(tc.kind, tc.spec); (err == nil) != tc.ok {
			t.Errorf("%s %+v: %v", tc.kind, tc.spec, err)
		}
	}
}
