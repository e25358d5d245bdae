package cdc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// A NATS sink whose broker is down while 1,000 changes are committed gets
// all of them, in per-document order, once the broker comes up; nothing is
// dead-lettered for the outage.
func TestNATSDownThenUp(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "log")
		port := reservePort(t)
		ns := &natsServer{dir: t.TempDir(), port: port}
		t.Cleanup(ns.stop)
		f := sinks.NewFactory(sinks.Config{NATSURL: ns.url()})
		t.Cleanup(func() { f.Close() })
		sink := mkSink(t, ten, "acme", natsSink("cdc"))
		d := startDispatcher(t, st, f, fastOpts())

		writeChanges(t, st, d, "acme", changes("log", 50, 20))
		time.Sleep(300 * time.Millisecond) // several delivery attempts against the dead broker
		s := status(t, d, "acme", sink.SinkID)
		if s.Delivered != 0 || s.Pending != 1000 || s.DeadLettered != 0 || s.LastError == nil {
			t.Fatalf("while down: %+v", s)
		}

		ns.start(t)
		eventually(t, 60*time.Second, "1000 events in JetStream", func() bool {
			return streamCount(t, ns.url(), "acme", "cdc") >= 1000 && status(t, d, "acme", sink.SinkID).Pending == 0
		})
		got := streamEvents(t, ns.url(), "acme", "cdc")
		checkOrder(t, got, "acme", "log", 50, 20)
		s = status(t, d, "acme", sink.SinkID)
		if s.Delivered < 1000 || s.DeadLettered != 0 || s.LastError != nil || s.LastDeliveredAt == nil {
			t.Fatalf("after recovery: %+v", s)
		}
	})
}

// Restarting the broker in the middle of a stream of writes loses nothing.
func TestNATSRestartMidStream(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "log")
		ns := startNATS(t)
		f := sinks.NewFactory(sinks.Config{NATSURL: ns.url()})
		t.Cleanup(func() { f.Close() })
		mkSink(t, ten, "acme", natsSink("cdc"))
		d := startDispatcher(t, st, f, fastOpts())

		all := changes("log", 40, 30)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(all); i += 100 {
				writeChanges(t, st, d, "acme", all[i:min(i+100, len(all))])
				time.Sleep(20 * time.Millisecond)
			}
		}()
		eventually(t, 30*time.Second, "first deliveries", func() bool { return streamCount(t, ns.url(), "acme", "cdc") > 100 })
		ns.stop()
		time.Sleep(200 * time.Millisecond)
		ns.start(t)
		wg.Wait()
		eventually(t, 60*time.Second, "all 1200 events", func() bool { return uniqStream(t, ns.url()) >= len(all) })
		checkOrder(t, streamEvents(t, ns.url(), "acme", "cdc"), "acme", "log", 40, 30)
	})
}

func uniqStream(t *testing.T, url string) int {
	if streamCount(t, url, "acme", "cdc") <= 0 {
		return 0
	}
	return uniq(streamEvents(t, url, "acme", "cdc"))
}

// A webhook answering 500 forever dead-letters every event after its retry
// budget while NATS and Kafka sinks of the same org deliver everything;
// once the webhook recovers, replay delivers the dead letters in order.
func TestWebhookDeadLetterReplay(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "log")
		ns := startNATS(t)
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cdc-topic"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kc.Close)
		f := sinks.NewFactory(sinks.Config{NATSURL: ns.url(), KafkaBrokers: kc.ListenAddrs(), WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		rcv := newReceiver(t)
		rcv.status.Store(500)
		hook := mkSink(t, ten, "acme", webhookSink(rcv.srv.URL+"/hook"))
		mkSink(t, ten, "acme", natsSink("cdc"))
		mkSink(t, ten, "acme", kafkaSink("cdc-topic"))
		o := fastOpts()
		o.RetryBudget = map[string]int{sinks.KindWebhook: 3}
		logs := &lockedBuffer{}
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		d := startDispatcher(t, st, f, o)

		writeChanges(t, st, d, "acme", changes("log", 10, 5))
		eventually(t, 30*time.Second, "NATS delivery", func() bool { return streamCount(t, ns.url(), "acme", "cdc") == 50 })
		checkOrder(t, streamEvents(t, ns.url(), "acme", "cdc"), "acme", "log", 10, 5)
		checkOrder(t, kafkaEvents(t, kc.ListenAddrs(), "cdc-topic", 50), "acme", "log", 10, 5)

		eventually(t, 30*time.Second, "webhook dead letters", func() bool {
			s := status(t, d, "acme", hook.SinkID)
			return s.Pending == 0 && s.DeadLettered == 50
		})
		s := status(t, d, "acme", hook.SinkID)
		if s.Delivered != 0 || s.LastError == nil {
			t.Fatalf("webhook status %+v", s)
		}
		dls, err := d.DeadLetters(context.Background(), "acme", hook.SinkID, 1000)
		if err != nil || len(dls) != 50 {
			t.Fatalf("dead letters: %d %v", len(dls), err)
		}
		// The first change of each document used the budget; the later
		// ones were held behind it and never attempted.
		tried := 0
		for _, dl := range dls {
			if dl.Attempts == 3 {
				tried++
			} else if dl.Attempts != 0 {
				t.Fatalf("dead letter with %d attempts: %+v", dl.Attempts, dl)
			}
		}
		if tried < 10 || tried > 50 {
			t.Fatalf("%d dead letters used the budget", tried)
		}
		// Failures are logged, but not once per attempt.
		failures := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="sink delivery failed"`) && strings.Contains(l, "sink_id="+hook.SinkID) {
				failures++
			}
		}
		if failures == 0 || !strings.Contains(logs.String(), "dead_lettered=") || int64(failures) >= rcv.hits.Load() {
			t.Fatalf("%d failure log lines for %d webhook attempts:\n%s", failures, rcv.hits.Load(), logs.String())
		}
		if n := rcv.hits.Load(); n < 30 {
			t.Fatalf("webhook saw %d requests, want at least 10 docs × 3 attempts", n)
		}

		// Changes made while the documents are held also wait for replay.
		writeChanges(t, st, d, "acme", []change{{"log", "doc-000", 6}})
		eventually(t, 10*time.Second, "held change", func() bool { return status(t, d, "acme", hook.SinkID).DeadLettered == 51 })

		rcv.status.Store(200)
		n, err := d.Replay(context.Background(), "acme", hook.SinkID)
		if err != nil || n != 51 {
			t.Fatalf("replay: %d %v", n, err)
		}
		eventually(t, 30*time.Second, "replayed deliveries", func() bool { return uniq(rcv.got("/hook")) == 51 })
		got := rcv.got("/hook")
		for _, ev := range got {
			if ev.Op == cdc.OpReplay {
				t.Fatalf("replay marker delivered: %+v", ev)
			}
		}
		// doc-000 has 6 versions, the others 5: check order per document.
		var rest []model.CdcEvent
		var d0 []model.CdcEvent
		for _, ev := range got {
			if ev.DocumentID == "doc-000" {
				d0 = append(d0, ev)
			} else {
				rest = append(rest, ev)
			}
		}
		checkOrder(t, rest, "acme", "log", 9, 5)
		checkOrder(t, d0, "acme", "log", 1, 6)
		eventually(t, 10*time.Second, "status after replay", func() bool {
			s := status(t, d, "acme", hook.SinkID)
			return s.Delivered == 51 && s.LastError == nil
		})
		// After replay the documents are no longer held: a new change goes
		// straight through.
		writeChanges(t, st, d, "acme", []change{{"log", "doc-001", 6}})
		eventually(t, 10*time.Second, "post-replay change", func() bool { return uniq(rcv.got("/hook")) == 52 })
		dls, _ = d.DeadLetters(context.Background(), "acme", hook.SinkID, 1000)
		for _, dl := range dls {
			if !dl.Replayed {
				t.Fatalf("dead letter not marked replayed: %+v", dl)
			}
		}
		if n, err := d.Replay(context.Background(), "acme", hook.SinkID); err != nil || n != 0 {
			t.Fatalf("second replay: %d %v", n, err)
		}
		// The other sinks never saw the replay marker.
		if c := streamCount(t, ns.url(), "acme", "cdc"); c != 52 {
			t.Fatalf("NATS stream has %d messages, want 52", c)
		}
	})
}

// kafkaEvents consumes want records of a topic.
func kafkaEvents(t *testing.T, brokers []string, topic string, want int) []model.CdcEvent {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []model.CdcEvent
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("kafka: got %d of %d records", len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var ev model.CdcEvent
			if err := jsonUnmarshal(r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != ev.DocumentID {
				t.Fatalf("kafka key %q for document %q", r.Key, ev.DocumentID)
			}
			out = append(out, ev)
		})
	}
	return out
}

// Many orgs at once, each with its own webhook path and NATS stream under
// the same prefix: no event reaches another org's sink.
func TestIsolationManyOrgs(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		ns := startNATS(t)
		f := sinks.NewFactory(sinks.Config{NATSURL: ns.url(), WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		rcv := newReceiver(t)
		const orgs = 12
		for i := range orgs {
			org := fmt.Sprintf("org%02d", i)
			mkOrg(t, ten, org, "app")
			mkSink(t, ten, org, webhookSink(rcv.srv.URL+"/"+org))
			mkSink(t, ten, org, natsSink("shared"))
		}
		d := startDispatcher(t, st, f, fastOpts())
		var wg sync.WaitGroup
		for i := range orgs {
			wg.Add(1)
			go func(org string) {
				defer wg.Done()
				writeChanges(t, st, d, org, changes("app", 5, 4))
			}(fmt.Sprintf("org%02d", i))
		}
		wg.Wait()
		for i := range orgs {
			org := fmt.Sprintf("org%02d", i)
			eventually(t, 30*time.Second, org+" deliveries", func() bool {
				return uniq(rcv.got("/"+org)) == 20 && streamCount(t, ns.url(), org, "shared") == 20
			})
			checkOrder(t, rcv.got("/"+org), org, "app", 5, 4)
			checkOrder(t, streamEvents(t, ns.url(), org, "shared"), org, "app", 5, 4)
		}
		if p := rcv.paths(); len(p) != orgs {
			t.Fatalf("receiver paths %v", p)
		}
	})
}

// Sinks disabled, re-enabled, added and deleted at run time take effect
// without a restart.
func TestSinkLifecycleAtRunTime(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "app")
		f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		rcv := newReceiver(t)
		o := fastOpts()
		o.ReconcileInterval = time.Hour // only explicit Reconcile calls
		d := startDispatcher(t, st, f, o)
		a := mkSink(t, ten, "acme", webhookSink(rcv.srv.URL+"/a"))
		d.Reconcile()

		writeChanges(t, st, d, "acme", changes("app", 5, 2))
		eventually(t, 10*time.Second, "first deliveries", func() bool { return len(rcv.got("/a")) == 10 })

		off := false
		if _, err := ten.PatchSink(ctx, "acme", a.SinkID, tenantPatch(&off)); err != nil {
			t.Fatal(err)
		}
		d.Reconcile()
		eventually(t, 5*time.Second, "worker stopped", func() bool { return !active(d, "acme", a.SinkID) })
		writeChanges(t, st, d, "acme", []change{{"app", "doc-000", 3}, {"app", "doc-001", 3}})
		time.Sleep(300 * time.Millisecond)
		if n := len(rcv.got("/a")); n != 10 {
			t.Fatalf("disabled sink received %d events", n)
		}
		if s := status(t, d, "acme", a.SinkID); s.Pending != 2 || s.Enabled {
			t.Fatalf("disabled status %+v", s)
		}

		// A sink added now starts from the retained history.
		b := mkSink(t, ten, "acme", webhookSink(rcv.srv.URL+"/b"))
		on := true
		if _, err := ten.PatchSink(ctx, "acme", a.SinkID, tenantPatch(&on)); err != nil {
			t.Fatal(err)
		}
		d.Reconcile()
		eventually(t, 10*time.Second, "re-enabled and new sink", func() bool {
			return len(rcv.got("/a")) == 12 && len(rcv.got("/b")) == 12
		})
		// Webhook deliveries of distinct documents run in parallel, so
		// only per-document order is defined: drop the third versions.
		var hist []model.CdcEvent
		for _, ev := range rcv.got("/b") {
			if string(ev.Patches) != `{"n":3}` {
				hist = append(hist, ev)
			}
		}
		checkOrder(t, hist, "acme", "app", 5, 2)

		if err := ten.DeleteSink(ctx, "acme", b.SinkID); err != nil {
			t.Fatal(err)
		}
		d.Reconcile()
		eventually(t, 5*time.Second, "deleted sink stopped", func() bool { return !active(d, "acme", b.SinkID) })
		writeChanges(t, st, d, "acme", []change{{"app", "doc-000", 4}})
		eventually(t, 10*time.Second, "remaining sink", func() bool { return len(rcv.got("/a")) == 13 })
		time.Sleep(200 * time.Millisecond)
		if n := len(rcv.got("/b")); n != 12 {
			t.Fatalf("deleted sink received %d events", n)
		}
		if _, err := d.Status(ctx, "acme", b.SinkID); !isNotFound(err) {
			t.Fatalf("status of deleted sink: %v", err)
		}
	})
}

// With StartFromNow a new sink skips the history committed before it ran.
func TestStartFromNow(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "app")
		f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		rcv := newReceiver(t)
		writeChanges(t, st, nil, "acme", changes("app", 3, 2))
		s := mkSink(t, ten, "acme", webhookSink(rcv.srv.URL+"/h"))
		o := fastOpts()
		o.StartFromNow = true
		d := startDispatcher(t, st, f, o)
		eventually(t, 5*time.Second, "cursor at the end", func() bool {
			return status(t, d, "acme", s.SinkID).Pending == 0
		})
		writeChanges(t, st, d, "acme", []change{{"app", "doc-000", 3}})
		eventually(t, 10*time.Second, "new change", func() bool { return len(rcv.got("/h")) == 1 })
		if ev := rcv.got("/h")[0]; ev.DocumentID != "doc-000" {
			t.Fatalf("got %+v", ev)
		}
	})
}

func tenantPatch(enabled *bool) tenant.SinkPatch { return tenant.SinkPatch{Enabled: enabled} }

func active(d *cdc.Dispatcher, org, sink string) bool { return d.Delivering(sink) }

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// A round that delivers everything never waits out a backoff: with an
// hour-long backoff, consecutive batches still flow.
func TestNoBackoffAfterSuccess(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "app")
		f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		rcv := newReceiver(t)
		mkSink(t, ten, "acme", webhookSink(rcv.srv.URL+"/h"))
		o := fastOpts()
		o.BackoffBase, o.BackoffMax = time.Hour, time.Hour
		o.BatchSize = 4
		d := startDispatcher(t, st, f, o)
		for v := 1; v <= 5; v++ {
			var cs []change
			for doc := range 6 {
				cs = append(cs, change{"app", fmt.Sprintf("doc-%03d", doc), v})
			}
			writeChanges(t, st, d, "acme", cs)
			eventually(t, 10*time.Second, "batch delivered", func() bool { return len(rcv.got("/h")) == 6*v })
		}
		checkOrder(t, rcv.got("/h"), "acme", "app", 6, 5)
	})
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
