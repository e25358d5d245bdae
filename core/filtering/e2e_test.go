package filtering_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// receiver is a webhook target recording events by path, with the delay
// between the write (nanos in the body's "t") and arrival.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	events  map[string][]model.CdcEvent
	latency map[string][]time.Duration
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{events: map[string][]model.CdcEvent{}, latency: map[string][]time.Duration{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev model.CdcEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			w.WriteHeader(400)
			return
		}
		var b struct{ T int64 }
		_ = json.Unmarshal(ev.Patches, &b)
		r.mu.Lock()
		r.events[req.URL.Path] = append(r.events[req.URL.Path], ev)
		if b.T != 0 {
			r.latency[req.URL.Path] = append(r.latency[req.URL.Path], time.Since(time.Unix(0, b.T)))
		}
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got(path string) ([]model.CdcEvent, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]model.CdcEvent(nil), r.events[path]...), append([]time.Duration(nil), r.latency[path]...)
}

// write commits n document changes of org (one document each) and wakes
// the dispatcher.
func write(t *testing.T, st store.Store, d *cdc.Dispatcher, org string, from, n int) {
	t.Helper()
	var ws []store.DocumentWrite
	for i := from; i < from+n; i++ {
		ws = append(ws, store.DocumentWrite{OrgID: org, AppID: "app", DocID: fmt.Sprintf("doc-%d", i), ActorID: "test", DocLimit: 1_000_000,
			Body:        []byte(fmt.Sprintf(`{"n":%d,"t":%d,"password":"secret"}`, i, time.Now().UnixNano())),
			TimestampMs: uint64(i)}) // the trap fixture decides on it
	}
	res, err := st.WriteDocuments(ctx, ws)
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

// TestDispatcherContainsMaliciousModules runs the real dispatcher with the
// Service as its Filter: three orgs bind an infinite loop, a memory bomb and
// a trap-every-100th module to webhook sinks while org "good" streams
// through the redact filter. Every evil event ends up delivered or
// dead-lettered (none lost, none both), good's events all arrive redacted,
// and good's delivery latency is logged against its baseline.
func TestDispatcherContainsMaliciousModules(t *testing.T) {
	redact := goFilter(t, "redact")
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := mkOrg(t, st, "good", "spin", "bomb", "trap")
		svc := newService(t, st, nil)
		rcv := newReceiver(t)
		// The evil orgs start with a harmless module, so the baseline carries
		// the same write and delivery load as the attack; the attack is a
		// hot swap to the faulty versions.
		keep := wat(t, watKeep)
		mods := map[string][]byte{"good": redact, "spin": keep, "bomb": keep, "trap": keep}
		faulty := map[string][]byte{"spin": wat(t, watSpin), "bomb": wat(t, watMemBomb), "trap": wat(t, watTrap100)}
		sinkOf := map[string]string{}
		for org, b := range mods {
			if _, _, err := svc.Put(ctx, org, "f", b); err != nil {
				t.Fatal(err)
			}
			ref := model.FilterRef{Name: "f"}
			if org == "good" {
				ref.Config = []byte(`{"paths":["password"]}`)
			}
			s, err := ten.CreateSink(ctx, org, model.CdcSinkType{Webhook: &model.WebhookSink{URL: rcv.srv.URL + "/" + org}}, []model.FilterRef{ref})
			if err != nil {
				t.Fatal(err)
			}
			sinkOf[org] = s.SinkID
		}
		f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		d := cdc.New(st, f, cdc.Options{BatchSize: 128, PollInterval: 50 * time.Millisecond, ReconcileInterval: 100 * time.Millisecond,
			BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond, Filter: svc, Logger: quiet})
		dctx, cancel := context.WithCancel(ctx)
		d.Start(dctx)
		t.Cleanup(func() { d.Close(); cancel() })

		// good writes 5 events every 10 ms; latency is measured per event.
		good := 0
		stream := func(dur time.Duration) {
			for end := time.Now().Add(dur); time.Now().Before(end); {
				write(t, st, d, "good", good, 5)
				good += 5
				time.Sleep(10 * time.Millisecond)
			}
		}
		const nEvil = 1000
		// evilLoad writes nEvil events for each evil org from offset from,
		// concurrently with good's stream.
		evilLoad := func(from int) *sync.WaitGroup {
			var wg sync.WaitGroup
			for _, org := range []string{"spin", "bomb", "trap"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < nEvil; i += 100 {
						write(t, st, d, org, from+i, 100)
						time.Sleep(20 * time.Millisecond)
					}
				}()
			}
			return &wg
		}
		stream(200 * time.Millisecond) // warm up
		waitFor(t, "good warm-up", func() bool { evs, _ := rcv.got("/good"); return len(evs) >= good })
		_, warm := rcv.got("/good")
		wg := evilLoad(0)
		stream(2 * time.Second)
		wg.Wait()
		waitFor(t, "good baseline", func() bool { evs, _ := rcv.got("/good"); return len(evs) >= good })
		_, lat := rcv.got("/good")
		base := lat[len(warm):]
		for _, org := range []string{"spin", "bomb", "trap"} {
			waitFor(t, org+" harmless phase delivered", func() bool { evs, _ := rcv.got("/" + org); return len(evs) >= nEvil })
			if _, _, err := svc.Put(ctx, org, "f", faulty[org]); err != nil {
				t.Fatal(err)
			}
		}

		mark := len(lat)
		wg = evilLoad(nEvil)
		stream(2 * time.Second)
		wg.Wait()
		waitFor(t, "good during attack", func() bool { evs, _ := rcv.got("/good"); return len(evs) >= good })
		goodEvs, lat := rcv.got("/good")
		during := lat[mark:]
		for _, ev := range goodEvs {
			if strings.Contains(string(ev.Patches), "password") {
				t.Fatalf("good event not redacted: %s", ev.Patches)
			}
		}
		t.Logf("good tenant delivery latency (same write load): baseline %s; during attack %s", pct(base), pct(during))

		for _, org := range []string{"spin", "bomb", "trap"} {
			var s cdc.Status
			waitFor(t, org+" sink drained", func() bool {
				var err error
				s, err = d.Status(ctx, org, sinkOf[org])
				return err == nil && s.Pending == 0 && s.Delivered+s.DeadLettered >= 2*nEvil
			})
			all, _ := rcv.got("/" + org)
			delivered := all[nEvil:] // the first nEvil passed the harmless version
			dls, err := d.DeadLetters(ctx, org, sinkOf[org], 10*nEvil)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]string{}
			for _, ev := range delivered {
				seen[ev.DocumentID] = "delivered"
			}
			for _, dl := range dls {
				if prev, ok := seen[dl.Event.DocumentID]; ok {
					t.Fatalf("%s: %s both %s and dead-lettered", org, dl.Event.DocumentID, prev)
				}
				seen[dl.Event.DocumentID] = "dead"
			}
			if len(all) < nEvil || len(seen) != nEvil {
				t.Fatalf("%s: %d of %d events accounted for (%d delivered, %d dead letters)", org, len(seen), nEvil, len(delivered), len(dls))
			}
			for _, ev := range delivered {
				var b struct{ N int }
				_ = json.Unmarshal(ev.Patches, &b)
				if org != "trap" || b.N%100 == 0 || b.N < nEvil {
					t.Fatalf("%s: event %s passed the faulty module", org, ev.Patches)
				}
			}
			if org == "trap" && len(dls) != nEvil/100 {
				t.Fatalf("trap: %d dead letters, want %d", len(dls), nEvil/100)
			}
			var lastErr string
			if len(dls) > 0 {
				lastErr = dls[len(dls)-1].Error
			}
			chain := svc.Status(org, []model.FilterRef{{Name: "f"}})
			t.Logf("%s: %d delivered, %d dead-lettered (status filter_errors=%d), breaker %s; last dead-letter error %.120q",
				org, len(delivered), len(dls), s.FilterErrors, chain[0].Bindings[0].Breaker, lastErr)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkDispatchThroughput measures end-to-end CDC throughput (outbox →
// dispatcher → filter chain → webhook receiver) for 20,000 events already
// committed, unfiltered and with a keep-everything or the redact filter
// bound. Run with -benchtime=1x; the events/s metric is the figure.
func BenchmarkDispatchThroughput(b *testing.B) {
	const n = 20_000
	redact := goFilter(b, "redact")
	keepGo := goFilter(b, "drop") // with a predicate that never matches, drop keeps everything
	for _, tc := range []struct {
		name string
		mod  []byte
		ref  model.FilterRef
	}{
		{"unfiltered", nil, model.FilterRef{}},
		{"keep-wat", wat(b, watKeep), model.FilterRef{Name: "f"}},
		{"keep-go", keepGo, model.FilterRef{Name: "f", Config: []byte(`{"field":"op","equals":"never"}`)}},
		{"redact-go", redact, model.FilterRef{Name: "f", Config: []byte(`{"paths":["password"]}`)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				st, err := openSQLite(b)
				if err != nil {
					b.Fatal(err)
				}
				ten := mkOrg(b, st, "acme")
				svc := newService(b, st, nil)
				var chain []model.FilterRef
				if tc.mod != nil {
					if _, _, err := svc.Put(ctx, "acme", "f", tc.mod); err != nil {
						b.Fatal(err)
					}
					chain = []model.FilterRef{tc.ref}
				}
				var got atomic.Int64
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					got.Add(1)
				}))
				if _, err := ten.CreateSink(ctx, "acme", model.CdcSinkType{Webhook: &model.WebhookSink{URL: srv.URL + "/x"}}, chain); err != nil {
					b.Fatal(err)
				}
				for lo := 0; lo < n; lo += 500 {
					var ws []store.DocumentWrite
					for j := lo; j < lo+500; j++ {
						ws = append(ws, store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: fmt.Sprintf("doc-%d", j), ActorID: "test", DocLimit: 1_000_000,
							Body: []byte(fmt.Sprintf(`{"n":%d,"user":"u%d","password":"secret-%d","pad":"%0160d"}`, j, j, j, 0)), TimestampMs: uint64(j)})
					}
					if _, err := st.WriteDocuments(ctx, ws); err != nil {
						b.Fatal(err)
					}
				}
				f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
				d := cdc.New(st, f, cdc.Options{PollInterval: 20 * time.Millisecond, Filter: svc, Logger: quiet})
				start := time.Now()
				d.Start(ctx)
				for got.Load() < n {
					time.Sleep(2 * time.Millisecond)
				}
				el := time.Since(start)
				d.Close()
				f.Close()
				srv.Close()
				st.Close()
				b.ReportMetric(float64(n)/el.Seconds(), "events/s")
			}
		})
	}
}
