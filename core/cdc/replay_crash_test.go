package cdc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/prometheus/client_golang/prometheus"
)

// crashingReplay fails every AdvanceReplay, as a gateway killed after a
// replay's deliveries but before their record commits: nothing of the
// record is written.
type crashingReplay struct {
	store.Store
	calls atomic.Int64
}

func (s *crashingReplay) AdvanceReplay(context.Context, string, string, int64, int64, int64, []store.DeadLetter, string, uint64) error {
	s.calls.Add(1)
	return errors.New("injected: the gateway died before the replay was recorded")
}

// TestReplayCrashLosesNoDeadLetter kills the dispatcher between a replay's
// deliveries and their record, while some letters failed again. After a
// restart every letter must still be delivered: none may have been marked
// replayed without its failure being recorded.
func TestReplayCrashLosesNoDeadLetter(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "log")
		f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })

		// down: every request fails; partial: only doc-000 fails; up: none.
		var mode atomic.Int32
		const down, partial, up = 0, 1, 2
		var mu sync.Mutex
		got := map[string]bool{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			var ev model.CdcEvent
			if json.Unmarshal(body, &ev) != nil {
				w.WriteHeader(400)
				return
			}
			if m := mode.Load(); m == down || (m == partial && ev.DocumentID == "doc-000") {
				w.WriteHeader(500)
				return
			}
			mu.Lock()
			got[ev.ChangeHash] = true
			mu.Unlock()
		}))
		t.Cleanup(srv.Close)
		delivered := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(got)
		}
		hook := mkSink(t, ten, "acme", webhookSink(srv.URL+"/hook"))
		o := fastOpts()
		o.RetryBudget = map[string]int{sinks.KindWebhook: 2}

		cs := &crashingReplay{Store: st}
		d1 := cdc.New(cs, f, o)
		ctx1, cancel1 := context.WithCancel(context.Background())
		d1.Start(ctx1)
		writeChanges(t, cs, d1, "acme", changes("log", 4, 2))
		eventually(t, 30*time.Second, "dead letters", func() bool { return status(t, d1, "acme", hook.SinkID).DeadLettered == 8 })

		mode.Store(partial)
		if n, err := d1.Replay(context.Background(), "acme", hook.SinkID); err != nil || n != 8 {
			t.Fatalf("replay: %d %v", n, err)
		}
		eventually(t, 30*time.Second, "the replay's record", func() bool { return cs.calls.Load() > 0 })
		if n := delivered(); n != 6 {
			t.Fatalf("%d events delivered by the crashed replay, want the 6 of doc-001..003", n)
		}
		d1.Close()
		cancel1()

		mode.Store(up)
		o.Registerer = prometheus.NewRegistry()
		d2 := startDispatcher(t, st, f, o)
		eventually(t, 30*time.Second, "every letter after the restart", func() bool { return delivered() == 8 })
		eventually(t, 10*time.Second, "letters marked replayed", func() bool {
			dls, err := d2.DeadLetters(context.Background(), "acme", hook.SinkID, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, dl := range dls {
				if !dl.Replayed {
					return false
				}
			}
			return len(dls) == 8
		})
	})
}
