package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

func newKafka(t testing.TB, topics ...string) (*kfake.Cluster, *Factory) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	f := NewFactory(Config{KafkaBrokers: c.ListenAddrs(), KafkaTimeout: 5 * time.Second})
	t.Cleanup(func() { f.Close(); c.Close() })
	return c, f
}

// consumeAll reads n records from topic with an independent consumer.
func consumeAll(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topic %s: got %d of %d records", topic, len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	// Nothing beyond the expected records.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	cl.PollFetches(short).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	return out
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func TestKafkaDeliverKeysHeadersOrderAndIsolation(t *testing.T) {
	c, f := newKafka(t, "cdc-alpha", "cdc-bravo")
	da, err := f.New(KindKafka, SinkSpec{OrgID: "alpha", Topic: "cdc-alpha"})
	if err != nil {
		t.Fatal(err)
	}
	db, err := f.New(KindKafka, SinkSpec{OrgID: "bravo", Topic: "cdc-bravo"})
	if err != nil {
		t.Fatal(err)
	}
	var ea, eb []model.CdcEvent
	for n := range 60 {
		ea = append(ea, ev("alpha", "app", fmt.Sprintf("d%d", n%7), n))
		eb = append(eb, ev("bravo", "app", fmt.Sprintf("d%d", n%5), n))
	}
	mustDeliver(t, da, ea)
	mustDeliver(t, db, eb)

	for _, tc := range []struct {
		topic, org string
		sent       []model.CdcEvent
	}{{"cdc-alpha", "alpha", ea}, {"cdc-bravo", "bravo", eb}} {
		recs := consumeAll(t, c.ListenAddrs(), tc.topic, len(tc.sent))
		if len(recs) != len(tc.sent) {
			t.Fatalf("%s: %d records, want %d", tc.topic, len(recs), len(tc.sent))
		}
		byHash := map[string]model.CdcEvent{}
		for _, e := range tc.sent {
			byHash[e.ChangeHash] = e
		}
		last := map[string]uint64{}
		for _, r := range recs {
			var got model.CdcEvent
			if err := jsonUnmarshal(r.Value, &got); err != nil {
				t.Fatal(err)
			}
			want, ok := byHash[header(r, "X-Peat-Change-Hash")]
			if !ok || got.ChangeHash != want.ChangeHash || string(r.Key) != want.DocumentID ||
				header(r, "X-Peat-Org-Id") != tc.org || got.OrgID != tc.org || header(r, "Content-Type") != "application/json" {
				t.Fatalf("%s: unexpected record key=%s headers=%v value=%s", tc.topic, r.Key, r.Headers, r.Value)
			}
			wire, _ := MarshalEvent(&want)
			if string(r.Value) != string(wire) {
				t.Fatalf("value %s, want %s", r.Value, wire)
			}
			if got.TimestampMs <= last[got.DocumentID] {
				t.Fatalf("%s: document %s out of order", tc.topic, got.DocumentID)
			}
			last[got.DocumentID] = got.TimestampMs
		}
	}
	res := da.Deliver(context.Background(), []model.CdcEvent{ev("bravo", "app", "x", 1)})
	if !errors.Is(res[0].Err, ErrOtherOrg) || !res[0].Permanent {
		t.Fatalf("cross-org event: %+v", res[0])
	}
}

func TestKafkaFailuresAreRetryableAndBlockTheDocument(t *testing.T) {
	_, f := newKafka(t, "cdc")
	d, err := f.New(KindKafka, SinkSpec{Topic: "missing-topic"})
	if err != nil {
		t.Fatal(err)
	}
	res := d.Deliver(context.Background(), []model.CdcEvent{ev("o", "a", "x", 1), ev("o", "a", "x", 2)})
	if res[0].Err == nil || res[0].Permanent {
		t.Fatalf("missing topic: %+v", res[0])
	}
	if !errors.Is(res[1].Err, ErrBlocked) {
		t.Fatalf("second event of the document: %+v", res[1])
	}

	bad := ev("o", "a", "y", 1)
	bad.Patches = []byte("{not json")
	d2, _ := f.New(KindKafka, SinkSpec{Topic: "cdc"})
	res = d2.Deliver(context.Background(), []model.CdcEvent{bad, ev("o", "a", "z", 1)})
	if !res[0].Permanent || res[1].Err != nil {
		t.Fatalf("unencodable event: %+v / %+v", res[0], res[1])
	}

	for _, topic := range []string{"", "a b", "..", "x/y"} {
		if _, err := f.New(KindKafka, SinkSpec{Topic: topic}); err == nil {
			t.Errorf("topic %q accepted", topic)
		}
	}
}

func BenchmarkKafkaDeliver256(b *testing.B) {
	_, f := newKafka(b, "cdc")
	d, err := f.New(KindKafka, SinkSpec{Topic: "cdc"})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]model.CdcEvent, 256)
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = ev("acme", "app", fmt.Sprintf("d%d", i), n)
			n++
		}
		for _, r := range d.Deliver(context.Background(), batch) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// SASL settings from the environment reach the broker: SCRAM and PLAIN
// against a kfake cluster that requires them, and a wrong password fails.
func TestKafkaSASLFromEnv(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cdc"), kfake.EnableSASL(),
				kfake.Superuser(mech, "peat", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, tc := range []struct {
				pass string
				ok   bool
			}{{"s3cret", true}, {"wrong", false}} {
				env := map[string]string{
					"PEAT_CDC_KAFKA_BROKERS":        strings.Join(c.ListenAddrs(), ","),
					"PEAT_CDC_KAFKA_SASL_MECHANISM": mech,
					"PEAT_CDC_KAFKA_SASL_USERNAME":  "peat",
					"PEAT_CDC_KAFKA_SASL_PASSWORD":  tc.pass,
				}
				cfg, err := LoadConfig(func(k string) string { return env[k] })
				if err != nil {
					t.Fatal(err)
				}
				cfg.KafkaTimeout = time.Second
				f := NewFactory(cfg)
				d, err := f.New(KindKafka, SinkSpec{Topic: "cdc"})
				if err != nil {
					t.Fatal(err)
				}
				r := d.Deliver(context.Background(), []model.CdcEvent{ev("o", "a", "d", 1)})[0]
				f.Close()
				if (r.Err == nil) != tc.ok || r.Permanent {
					t.Fatalf("password %q: %+v", tc.pass, r)
				}
				if r.Err != nil && strings.Contains(r.Err.Error(), tc.pass) {
					t.Fatalf("error leaks the password: %v", r.Err)
				}
			}
		})
	}
}
