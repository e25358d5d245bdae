package sinks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// startNATS runs an in-process JetStream server; port -1 picks a free one.
func startNATS(t testing.TB, storeDir string, port int) *server.Server {
	t.Helper()
	s, err := runNATS(storeDir, port)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func runNATS(storeDir string, port int) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("nats-server not ready")
	}
	return s, nil
}

func stopNATS(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// natsEnv is an embedded server plus a factory and an inspection client.
type natsEnv struct {
	srv *server.Server
	f   *Factory
	js  jetstream.JetStream
}

func newNATSEnv(t testing.TB) *natsEnv {
	t.Helper()
	srv := startNATS(t, t.TempDir(), -1)
	f := NewFactory(Config{NATSURL: srv.ClientURL()})
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); f.Close(); stopNATS(srv) })
	return &natsEnv{srv: srv, f: f, js: js}
}

func (e *natsEnv) driver(t testing.TB, org, prefix string) Driver {
	t.Helper()
	d, err := e.f.New(KindNats, SinkSpec{OrgID: org, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// streamMsgs reads every message of a stream in order.
func (e *natsEnv) streamMsgs(t testing.TB, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func mustDeliver(t testing.TB, d Driver, evs []model.CdcEvent) {
	t.Helper()
	for i, r := range d.Deliver(context.Background(), evs) {
		if r.Err != nil {
			t.Fatalf("event %d (%s): %v", i, evs[i].DocumentID, r.Err)
		}
	}
}

func TestNATSDeliverWireFormatAndStream(t *testing.T) {
	e := newNATSEnv(t)
	d := e.driver(t, "acme", "peat.acme")
	evs := []model.CdcEvent{ev("acme", "logistics", "doc-1", 1), ev("acme", "logistics", "doc-2", 1), ev("acme", "fleet", "doc-1", 1)}
	mustDeliver(t, d, evs)

	name := "peat-gw-cdc-acme-peat-acme"
	s, err := e.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Duplicates != 120*time.Second || cfg.MaxAge != 7*24*time.Hour || cfg.MaxBytes != 1<<30 || cfg.Replicas != 1 ||
		cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy {
		t.Fatalf("stream config %+v", cfg)
	}
	if strings.Join(cfg.Subjects, ",") != "acme.peat.acme.logistics.*,acme.peat.acme.fleet.*" {
		t.Fatalf("subjects %v", cfg.Subjects)
	}
	msgs := e.streamMsgs(t, name)
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		want, _ := MarshalEvent(&evs[i])
		if m.Subject != "acme.peat.acme."+evs[i].AppID+"."+evs[i].DocumentID || string(m.Data) != string(want) {
			t.Fatalf("msg %d: %s %s", i, m.Subject, m.Data)
		}
		if m.Header.Get("Nats-Msg-Id") != evs[i].ChangeHash || len(m.Header) != 1 {
			t.Fatalf("msg %d headers %v", i, m.Header)
		}
	}

	// A redelivery (same change_hash) is acknowledged but not stored twice.
	mustDeliver(t, d, evs[:1])
	if n := len(e.streamMsgs(t, name)); n != 3 {
		t.Fatalf("duplicate stored: %d messages", n)
	}
}

func TestNATSInvalidSubjectTokensArePermanent(t *testing.T) {
	e := newNATSEnv(t)
	d := e.driver(t, "acme", "cdc")
	bad := []struct{ app, doc string }{
		{"app", "a.b"}, {"app", "a*"}, {"app", ">"}, {"app", "with space"}, {"app", ""}, {"app", "tab\t"},
		{"", "doc"}, {"a.pp", "doc"},
		// app "ctl" under a one-token prefix lands in the ingress space.
		{"ctl", "doc"},
	}
	for _, b := range bad {
		evs := []model.CdcEvent{ev("acme", b.app, b.doc, 1), ev("acme", "app", "good", 1), ev("acme", b.app, b.doc, 2)}
		res := d.Deliver(context.Background(), evs)
		if res[0].Err == nil || !res[0].Permanent {
			t.Errorf("app %q doc %q: %+v", b.app, b.doc, res[0])
		}
		if res[1].Err != nil {
			t.Errorf("unrelated document blocked: %v", res[1].Err)
		}
		if !errors.Is(res[2].Err, ErrBlocked) || res[2].Permanent {
			t.Errorf("later event of the invalid document: %+v", res[2])
		}
	}
	for _, p := range []string{"", "a..b", ".a", "a.", "a.*", "a b", "x.ctl", "x.ctl.y"} {
		if _, err := e.f.New(KindNats, SinkSpec{SubjectPrefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// The control-plane ingress stream ({org}.*.ctl.>) and the CDC streams live
// side by side in one account, whichever is created first.
func TestNATSStreamsDoNotOverlapIngress(t *testing.T) {
	e := newNATSEnv(t)
	ctx := context.Background()
	ingress := jetstream.StreamConfig{Name: "peat-gw-ctl", Subjects: []string{"acme.*.ctl.>"}}
	if _, err := e.js.CreateStream(ctx, ingress); err != nil {
		t.Fatal(err)
	}
	mustDeliver(t, e.driver(t, "acme", "cdc"), []model.CdcEvent{ev("acme", "logistics", "d", 1)})
	mustDeliver(t, e.driver(t, "bravo", "cdc"), []model.CdcEvent{ev("bravo", "logistics", "d", 1)})
	// An ingress stream made after the CDC streams is accepted as well.
	ingress.Subjects = append(ingress.Subjects, "bravo.*.ctl.>")
	if _, err := e.js.UpdateStream(ctx, ingress); err != nil {
		t.Fatalf("ingress stream rejected next to CDC streams: %v", err)
	}
	// With the reference's filter the same account refuses the stream.
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "ref", Subjects: []string{"acme.cdc2.>"}})
	if err == nil {
		t.Fatal("expected the reference filter to overlap the ingress stream")
	}
	// Nested prefixes of one org no longer collide either.
	mustDeliver(t, e.driver(t, "acme", "cdc.inner"), []model.CdcEvent{ev("acme", "logistics", "d", 1)})
}

// A stream created by the Rust gateway ({org}.{prefix}.>) or an operator is
// reused without being changed.
func TestNATSReusesExistingStream(t *testing.T) {
	e := newNATSEnv(t)
	ctx := context.Background()
	pre := jetstream.StreamConfig{Name: "peat-gw-cdc-acme-cdc", Subjects: []string{"acme.cdc.>"}, MaxMsgs: 1000}
	if _, err := e.js.CreateStream(ctx, pre); err != nil {
		t.Fatal(err)
	}
	mustDeliver(t, e.driver(t, "acme", "cdc"), []model.CdcEvent{ev("acme", "logistics", "d", 1)})
	s, _ := e.js.Stream(ctx, pre.Name)
	if cfg := s.CachedInfo().Config; strings.Join(cfg.Subjects, ",") != "acme.cdc.>" || cfg.MaxMsgs != 1000 {
		t.Fatalf("stream changed: %+v", cfg)
	}
	if n := len(e.streamMsgs(t, pre.Name)); n != 1 {
		t.Fatalf("%d messages", n)
	}
}

// Many orgs delivering at once with the same prefix each get their own
// stream, and nothing crosses over.
func TestNATSOrgIsolation(t *testing.T) {
	e := newNATSEnv(t)
	const orgs, docs = 12, 20
	var wg sync.WaitGroup
	errs := make(chan error, orgs)
	for o := range orgs {
		org := fmt.Sprintf("org%02d", o)
		d := e.driver(t, org, "shared.cdc")
		wg.Add(1)
		go func() {
			defer wg.Done()
			var evs []model.CdcEvent
			for i := range docs {
				evs = append(evs, ev(org, "app", fmt.Sprintf("d%d", i), 1))
			}
			for _, r := range d.Deliver(context.Background(), evs) {
				if r.Err != nil {
					errs <- r.Err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for o := range orgs {
		org := fmt.Sprintf("org%02d", o)
		msgs := e.streamMsgs(t, StreamName(org, "shared.cdc"))
		if len(msgs) != docs {
			t.Fatalf("%s: %d messages", org, len(msgs))
		}
		for _, m := range msgs {
			if !strings.HasPrefix(m.Subject, org+".") || !strings.Contains(string(m.Data), `"org_id":"`+org+`"`) {
				t.Fatalf("%s stream holds %s %s", org, m.Subject, m.Data)
			}
		}
	}
	// A driver refuses events of another org outright.
	res := e.driver(t, "org00", "shared.cdc").Deliver(context.Background(), []model.CdcEvent{ev("org01", "app", "x", 9)})
	if !errors.Is(res[0].Err, ErrOtherOrg) || !res[0].Permanent {
		t.Fatalf("cross-org event: %+v", res[0])
	}
}

// Repeated documents in one batch keep their order in the stream.
func TestNATSPerDocumentOrderInBatch(t *testing.T) {
	e := newNATSEnv(t)
	d := e.driver(t, "acme", "cdc")
	var evs []model.CdcEvent
	for n := range 30 {
		evs = append(evs, ev("acme", "app", fmt.Sprintf("d%d", n%4), n))
	}
	mustDeliver(t, d, evs)
	last := map[string]uint64{}
	for _, m := range e.streamMsgs(t, "peat-gw-cdc-acme-cdc") {
		var got model.CdcEvent
		if err := jsonUnmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.TimestampMs <= last[got.DocumentID] {
			t.Fatalf("document %s out of order", got.DocumentID)
		}
		last[got.DocumentID] = got.TimestampMs
	}
}

// The broker restarts (same store, same port) in the middle of a stream of
// batches; a minimal dispatcher loop retries what failed, and at the end
// every event is in the stream exactly once, in per-document order.
func TestNATSRestartMidStreamLosesNothing(t *testing.T) {
	store := t.TempDir()
	srv := startNATS(t, store, -1)
	port := srv.Addr().(*net.TCPAddr).Port
	f := NewFactory(Config{NATSURL: srv.ClientURL(), NATSAckWait: 2 * time.Second})
	defer f.Close()
	d, err := f.New(KindNats, SinkSpec{OrgID: "acme", SubjectPrefix: "cdc"})
	if err != nil {
		t.Fatal(err)
	}

	const batches, size = 40, 50
	failures := 0
	type started struct {
		srv *server.Server
		err error
	}
	restarted := make(chan started, 1)
	for b := range batches {
		if b == batches/2 {
			// Stop the broker while this batch is being published, so
			// some publishes are in flight when the connection drops.
			old := srv
			go func() {
				stopNATS(old)
				time.Sleep(700 * time.Millisecond)
				s, err := runNATS(store, port)
				restarted <- started{s, err}
			}()
		}
		batch := make([]model.CdcEvent, size)
		for i := range batch {
			batch[i] = ev("acme", "app", fmt.Sprintf("d%d", i%17), b*size+i)
		}
		for attempt := 0; len(batch) > 0; attempt++ {
			if attempt > 200 {
				t.Fatalf("batch %d never delivered", b)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res := d.Deliver(ctx, batch)
			cancel()
			// Like the dispatcher: the cursor advances over the delivered
			// prefix, the rest is retried after a backoff.
			k := 0
			for k < len(res) && res[k].Err == nil {
				k++
			}
			if k < len(res) {
				failures++
				if res[k].Permanent {
					t.Fatalf("permanent failure: %v", res[k].Err)
				}
				time.Sleep(Backoff(min(attempt, 4), 50*time.Millisecond, time.Second))
			}
			batch = batch[k:]
		}
	}
	st := <-restarted
	if st.err != nil {
		t.Fatal(st.err)
	}
	srv = st.srv
	defer stopNATS(srv)
	if failures == 0 {
		t.Fatal("the restart caused no failed delivery; the test did not exercise it")
	}

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	e := &natsEnv{srv: srv, js: js}
	msgs := e.streamMsgs(t, "peat-gw-cdc-acme-cdc")
	seen := map[string]bool{}
	last := map[string]uint64{}
	for _, m := range msgs {
		id := m.Header.Get("Nats-Msg-Id")
		if seen[id] {
			t.Fatalf("duplicate %s in stream", id)
		}
		seen[id] = true
		var got model.CdcEvent
		if err := jsonUnmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.TimestampMs <= last[got.DocumentID] {
			t.Fatalf("document %s out of order", got.DocumentID)
		}
		last[got.DocumentID] = got.TimestampMs
	}
	if len(seen) != batches*size {
		t.Fatalf("%d of %d events in the stream", len(seen), batches*size)
	}
}

func BenchmarkNATSDeliver256(b *testing.B) {
	e := newNATSEnv(b)
	d := e.driver(b, "acme", "cdc")
	batch := make([]model.CdcEvent, 256)
	b.ResetTimer()
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

// A stream deleted behind the cache is re-created on the next attempt.
func TestNATSStreamDeletedExternally(t *testing.T) {
	e := newNATSEnv(t)
	d := e.driver(t, "acme", "cdc")
	mustDeliver(t, d, []model.CdcEvent{ev("acme", "app", "d", 1)})
	if err := e.js.DeleteStream(context.Background(), "peat-gw-cdc-acme-cdc"); err != nil {
		t.Fatal(err)
	}
	r := d.Deliver(context.Background(), []model.CdcEvent{ev("acme", "app", "d", 2)})[0]
	if r.Err == nil || r.Permanent {
		t.Fatalf("publish without a stream: %+v", r)
	}
	mustDeliver(t, d, []model.CdcEvent{ev("acme", "app", "d", 2)})
	if n := len(e.streamMsgs(t, "peat-gw-cdc-acme-cdc")); n != 1 {
		t.Fatalf("%d messages", n)
	}
}
