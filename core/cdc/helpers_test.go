package cdc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/store/backendtest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eachBackend runs f on a fresh SQLite and a fresh Postgres store.
func eachBackend(t *testing.T, f func(t *testing.T, st store.Store)) { backendtest.Each(t, f) }

// fastOpts are dispatcher options with test-sized timings.
func fastOpts() cdc.Options {
	return cdc.Options{
		BatchSize: 128, PollInterval: 50 * time.Millisecond, ReconcileInterval: 100 * time.Millisecond,
		BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Registerer: prometheus.NewRegistry(), Logger: quiet,
	}
}

// startDispatcher starts a dispatcher that is closed at cleanup.
func startDispatcher(t testing.TB, st store.Store, f *sinks.Factory, o cdc.Options) *cdc.Dispatcher {
	t.Helper()
	d := cdc.New(st, f, o)
	ctx, cancel := context.WithCancel(context.Background())
	d.Start(ctx)
	t.Cleanup(func() { d.Close(); cancel() })
	return d
}

func newTenant(st store.Store) *tenant.Service {
	return tenant.New(st, nil, tenant.Options{AllowPrivateWebhooks: true})
}

// mkOrg creates an org with the given formations and lifts its quotas.
func mkOrg(t testing.TB, ten *tenant.Service, org string, apps ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := ten.CreateOrg(ctx, org, org); err != nil {
		t.Fatal(err)
	}
	o, err := ten.Store().GetOrg(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	o.Quotas.MaxCdcSinks, o.Quotas.MaxDocumentsPerFormation = 50, 100000
	if err := ten.Store().UpdateOrg(ctx, o); err != nil {
		t.Fatal(err)
	}
	for _, a := range apps {
		if _, err := ten.CreateFormation(ctx, org, a, model.PolicyOpen); err != nil {
			t.Fatal(err)
		}
	}
}

func natsSink(prefix string) model.CdcSinkType {
	return model.CdcSinkType{Nats: &model.NatsSink{SubjectPrefix: prefix}}
}

func webhookSink(url string) model.CdcSinkType {
	return model.CdcSinkType{Webhook: &model.WebhookSink{URL: url}}
}

func kafkaSink(topic string) model.CdcSinkType {
	return model.CdcSinkType{Kafka: &model.KafkaSink{Topic: topic}}
}

func mkSink(t testing.TB, ten *tenant.Service, org string, typ model.CdcSinkType) model.CdcSinkConfig {
	t.Helper()
	s, err := ten.CreateSink(context.Background(), org, typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// change names one document write of the tests: body {"n": n}.
type change struct {
	app, doc string
	n        int
}

// writeChanges commits changes in group-commit batches of 50 (as the
// document API does) and notifies d (which may be nil).
func writeChanges(t testing.TB, st store.Store, d *cdc.Dispatcher, org string, cs []change) {
	t.Helper()
	for i := 0; i < len(cs); i += 50 {
		var ws []store.DocumentWrite
		for _, c := range cs[i:min(i+50, len(cs))] {
			ws = append(ws, store.DocumentWrite{OrgID: org, AppID: c.app, DocID: c.doc, ActorID: "test", DocLimit: 100000,
				Body: []byte(`{"n":` + strconv.Itoa(c.n) + `}`), TimestampMs: uint64(time.Now().UnixMilli())})
		}
		res, err := st.WriteDocuments(context.Background(), ws)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil || !r.Changed {
				t.Fatalf("write: changed=%v err=%v", r.Changed, r.Err)
			}
		}
		if d != nil {
			d.Notify(org)
		}
	}
}

// changes returns docs×versions changes interleaved across documents
// (version-major), numbered 1..versions per document.
func changes(app string, docs, versions int) []change {
	var cs []change
	for v := 1; v <= versions; v++ {
		for d := 0; d < docs; d++ {
			cs = append(cs, change{app: app, doc: fmt.Sprintf("doc-%03d", d), n: v})
		}
	}
	return cs
}

// checkOrder asserts every document's versions 1..versions arrived, in
// order (a duplicate may repeat the latest one only), and nothing else.
func checkOrder(t *testing.T, got []model.CdcEvent, org, app string, docs, versions int) {
	t.Helper()
	last := map[string]int{}
	for _, ev := range got {
		if ev.OrgID != org || ev.AppID != app {
			t.Fatalf("foreign event %s/%s/%s", ev.OrgID, ev.AppID, ev.DocumentID)
		}
		var b struct{ N int }
		if err := json.Unmarshal(ev.Patches, &b); err != nil {
			t.Fatalf("patches %s: %v", ev.Patches, err)
		}
		prev := last[ev.DocumentID]
		if b.N < prev || b.N > prev+1 {
			t.Fatalf("document %s: version %d after %d (order broken or gap)", ev.DocumentID, b.N, prev)
		}
		last[ev.DocumentID] = b.N
	}
	if len(last) != docs {
		t.Fatalf("got %d documents, want %d", len(last), docs)
	}
	for doc, n := range last {
		if n != versions {
			t.Fatalf("document %s ends at version %d, want %d", doc, n, versions)
		}
	}
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func status(t testing.TB, d *cdc.Dispatcher, org, sink string) cdc.Status {
	t.Helper()
	s, err := d.Status(context.Background(), org, sink)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ---- NATS ----

type natsServer struct {
	srv  *server.Server
	dir  string
	port int
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{dir: t.TempDir(), port: -1}
	n.start(t)
	n.port = n.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

// reservePort returns a free port for a server started later.
func reservePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (n *natsServer) start(t testing.TB) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	n.srv = s
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// streamEvents reads every message of the stream holding (org, prefix).
func streamEvents(t testing.TB, url, org, prefix string) []model.CdcEvent {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, sinks.StreamName(org, prefix))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []model.CdcEvent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev model.CdcEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func streamCount(t testing.TB, url, org, prefix string) int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, sinks.StreamName(org, prefix))
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// ---- webhook receiver ----

type receiver struct {
	srv    *httptest.Server
	status atomic.Int32 // answer; 0 = 200
	hits   atomic.Int64 // requests, whatever the answer

	mu     sync.Mutex
	events map[string][]model.CdcEvent // by path, accepted ones only
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{events: map[string][]model.CdcEvent{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		body, _ := io.ReadAll(req.Body)
		if st := r.status.Load(); st != 0 && st != 200 {
			w.WriteHeader(int(st))
			return
		}
		var ev model.CdcEvent
		if err := json.Unmarshal(body, &ev); err != nil || req.Header.Get("X-Peat-Change-Hash") != ev.ChangeHash {
			w.WriteHeader(400)
			return
		}
		r.mu.Lock()
		r.events[req.URL.Path] = append(r.events[req.URL.Path], ev)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got(path string) []model.CdcEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]model.CdcEvent(nil), r.events[path]...)
}

func (r *receiver) paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []string
	for p := range r.events {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// uniq counts distinct change hashes.
func uniq(evs []model.CdcEvent) int {
	m := map[string]bool{}
	for _, e := range evs {
		m[e.ChangeHash] = true
	}
	return len(m)
}
