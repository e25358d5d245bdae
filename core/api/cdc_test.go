package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/api"
	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// hookReceiver is a webhook target whose answer the test switches.
type hookReceiver struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    []model.CdcEvent
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if s := h.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		var ev model.CdcEvent
		_ = json.Unmarshal(b, &ev)
		h.mu.Lock()
		h.got = append(h.got, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func putDocs(t *testing.T, st store.Store, d *cdc.Dispatcher, org, app string, n int) {
	t.Helper()
	var ws []store.DocumentWrite
	for i := range n {
		ws = append(ws, store.DocumentWrite{OrgID: org, AppID: app, DocID: "doc-" + strconv.Itoa(i), ActorID: "t",
			Body: []byte(`{"i":` + strconv.Itoa(i) + `}`), TimestampMs: uint64(time.Now().UnixMilli()), DocLimit: 1000})
	}
	res, err := st.WriteDocuments(context.Background(), ws)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	d.Notify(org)
}

// The delivery routes: status, dead letters (with limit), replay, 404s,
// admin auth, and immediate reconcile after sink CRUD through the API.
func TestDeliveryRoutes(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		f := sinks.NewFactory(sinks.Config{NATSURL: ns.ClientURL(), WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })

		ten := tenant.New(st, nil, tenant.Options{AllowPrivateWebhooks: true})
		d := cdc.New(st, f, cdc.Options{
			PollInterval: time.Hour, ReconcileInterval: time.Hour, // only Notify and Reconcile drive it
			BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond,
			RetryBudget: map[string]int{sinks.KindWebhook: 2},
			Registerer:  prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		dctx, cancel := context.WithCancel(ctx)
		d.Start(dctx)
		t.Cleanup(func() { d.Close(); cancel() })
		tok := "secret"
		g := start(t, st, &tok, api.DeliveryModule(d, ten))

		g.must(g.do("POST", "/orgs", map[string]string{"org_id": "acme", "display_name": "Acme"}), 200, "")
		if _, err := ten.CreateFormation(ctx, "acme", "app", model.PolicyOpen); err != nil {
			t.Fatal(err)
		}
		hook := newHookReceiver(t)
		hook.status.Store(500)
		hs, err := ten.CreateSink(ctx, "acme", model.CdcSinkType{Webhook: &model.WebhookSink{URL: hook.srv.URL + "/h"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Reconcile()
		base := "/orgs/acme/sinks/" + hs.SinkID

		putDocs(t, st, d, "acme", "app", 5)
		var s map[string]any
		waitFor(t, "dead letters", func() bool {
			g.must(g.do("GET", base+"/status", nil), 200, "").decode(t, &s)
			return s["dead_lettered"] == float64(5) && s["pending"] == float64(0)
		})
		for _, k := range []string{"sink_id", "delivered", "pending", "dead_lettered", "last_error", "last_delivered_at"} {
			if _, ok := s[k]; !ok {
				t.Fatalf("status lacks %q: %v", k, s)
			}
		}
		if s["delivered"] != float64(0) || s["last_delivered_at"] != nil || s["last_error"] == nil || s["sink_id"] != hs.SinkID {
			t.Fatalf("status %v", s)
		}

		var dls []map[string]any
		g.must(g.do("GET", base+"/dead-letters", nil), 200, "").decode(t, &dls)
		if len(dls) != 5 {
			t.Fatalf("dead letters %d", len(dls))
		}
		if ev, _ := dls[0]["event"].(map[string]any); ev["org_id"] != "acme" || ev["change_hash"] == "" || dls[0]["replayed"] != false {
			t.Fatalf("dead letter %v", dls[0])
		}
		g.must(g.do("GET", base+"/dead-letters?limit=2", nil), 200, "").decode(t, &dls)
		if len(dls) != 2 {
			t.Fatalf("limit=2 gave %d", len(dls))
		}
		for _, bad := range []string{"0", "-1", "x", "10001"} {
			g.must(g.do("GET", base+"/dead-letters?limit="+bad, nil), 400, "limit")
		}

		hook.status.Store(0)
		var rep map[string]any
		g.must(g.do("POST", base+"/dead-letters/replay", nil), 202, "").decode(t, &rep)
		if rep["queued"] != float64(5) || rep["sink_id"] != hs.SinkID {
			t.Fatalf("replay %v", rep)
		}
		waitFor(t, "replayed deliveries", func() bool { return hook.count() == 5 })
		waitFor(t, "status after replay", func() bool {
			g.must(g.do("GET", base+"/status", nil), 200, "").decode(t, &s)
			return s["delivered"] == float64(5) && s["last_error"] == nil && s["last_delivered_at"] != nil
		})
		g.must(g.do("GET", base+"/dead-letters", nil), 200, "").decode(t, &dls)
		for _, dl := range dls {
			if dl["replayed"] != true {
				t.Fatalf("not replayed: %v", dl)
			}
		}

		// Unknown org or sink: 404 on every route; no token: 401.
		for _, p := range []string{"/orgs/nope/sinks/" + hs.SinkID, "/orgs/acme/sinks/0123456789abcdef"} {
			g.must(g.do("GET", p+"/status", nil), 404, "not found")
			g.must(g.do("GET", p+"/dead-letters", nil), 404, "not found")
			g.must(g.do("POST", p+"/dead-letters/replay", nil), 404, "not found")
		}
		g.token = ""
		g.must(g.do("GET", base+"/status", nil), 401, "")
		g.token = tok

		// A sink created through the API delivers at once (the module
		// reconciles after the create; the ticker is an hour).
		var created model.CdcSinkConfig
		g.must(g.do("POST", "/orgs/acme/sinks", map[string]any{"sink_type": map[string]any{"Nats": map[string]string{"subject_prefix": "cdc"}}}), 201, "").decode(t, &created)
		waitFor(t, "NATS sink catching up", func() bool {
			g.must(g.do("GET", "/orgs/acme/sinks/"+created.SinkID+"/status", nil), 200, "").decode(t, &s)
			return s["delivered"] == float64(5)
		})
		if n := jsMsgs(t, ns.ClientURL(), sinks.StreamName("acme", "cdc")); n != 5 {
			t.Fatalf("stream has %d messages", n)
		}
		// Disabled through the API: stops at once.
		g.must(g.do("PATCH", "/orgs/acme/sinks/"+created.SinkID, map[string]any{"enabled": false}), 200, "")
		waitFor(t, "worker stopped", func() bool { return !d.Delivering(created.SinkID) })
		g.must(g.do("DELETE", "/orgs/acme/sinks/"+hs.SinkID, nil), 200, "")
		waitFor(t, "deleted sink stopped", func() bool { return !d.Delivering(hs.SinkID) })
		g.must(g.do("GET", base+"/status", nil), 404, "not found")
	})
}

func jsMsgs(t *testing.T, url, stream string) int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}
