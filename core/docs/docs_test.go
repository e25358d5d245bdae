package docs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/store/backendtest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var bg = context.Background()

// eachBackend runs f on a fresh SQLite and a fresh Postgres store.
func eachBackend(t *testing.T, f func(t *testing.T, st store.Store)) { backendtest.Each(t, f) }

// gatedStore holds every WriteDocuments call until the test opens the gate,
// and records what happened, so tests can see batches form and check that
// no caller is answered before its transaction returns.
type gatedStore struct {
	store.Store
	gate    chan struct{}
	entered chan int // batch size, sent when a batch reaches the store
	// durable holds "org/app/doc#n" for each write whose transaction has
	// returned, n counting that document's writes.
	durable  sync.Map
	count    sync.Map
	batches  atomic.Int64
	maxBatch atomic.Int64
}

func newGated(st store.Store) *gatedStore {
	return &gatedStore{Store: st, gate: make(chan struct{}), entered: make(chan int, 1024)}
}

func (g *gatedStore) WriteDocuments(ctx context.Context, ws []store.DocumentWrite) ([]store.DocumentResult, error) {
	g.entered <- len(ws)
	<-g.gate
	r, err := g.Store.WriteDocuments(ctx, ws)
	g.batches.Add(1)
	for {
		m := g.maxBatch.Load()
		if int64(len(ws)) <= m || g.maxBatch.CompareAndSwap(m, int64(len(ws))) {
			break
		}
	}
	if err == nil {
		for _, w := range ws {
			k := w.OrgID + "/" + w.AppID + "/" + w.DocID
			c, _ := g.count.LoadOrStore(k, new(atomic.Int64))
			g.durable.Store(fmt.Sprintf("%s#%d", k, c.(*atomic.Int64).Add(1)), true)
		}
	}
	return r, err
}

func setup(t *testing.T, st store.Store, orgs ...string) *tenant.Service {
	t.Helper()
	ten := tenant.New(st, nil, tenant.Options{})
	for _, o := range orgs {
		if _, err := ten.CreateOrg(bg, o, o); err != nil {
			t.Fatal(err)
		}
		if _, err := ten.CreateFormation(bg, o, "app", ""); err != nil {
			t.Fatal(err)
		}
	}
	return ten
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustKind(t *testing.T, err error, k errs.Kind, what string) {
	t.Helper()
	if err == nil || errs.KindOf(err) != k {
		t.Fatalf("%s: got %v (kind %v), want kind %v", what, err, errs.KindOf(err), k)
	}
}

func outbox(t *testing.T, st store.Store, org string) []store.OutboxEvent {
	t.Helper()
	evs, err := st.ReadOutbox(bg, org, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestGroupCommit queues many writers behind one slow transaction and checks
// that they are committed together, that none is answered before its
// transaction returned, and that every acknowledged change is in the outbox.
func TestGroupCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := setup(t, st, "acme")
		g := newGated(st)
		var woken atomic.Int64
		svc := New(g, ten, Options{MaxBatch: 64, Logger: quiet(), OnCommit: func(orgs []string) {
			if len(orgs) != 1 || orgs[0] != "acme" {
				t.Errorf("OnCommit(%v)", orgs)
			}
			woken.Add(1)
		}})
		defer svc.Close()

		const n = 100
		type ans struct {
			r   Result
			err error
		}
		answers := make(chan ans, n)
		var wg sync.WaitGroup
		// The first writer alone makes the committer block in the store.
		wg.Go(func() {
			r, err := svc.Put(bg, "acme", "app", "d0", "", []byte(`{"i":0}`))
			answers <- ans{r, err}
		})
		if got := <-g.entered; got != 1 {
			t.Fatalf("first batch has %d writes", got)
		}
		for i := 1; i < n; i++ {
			wg.Go(func() {
				r, err := svc.Put(bg, "acme", "app", fmt.Sprintf("d%d", i), "w", fmt.Appendf(nil, `{"i":%d}`, i))
				if _, ok := g.durable.Load(fmt.Sprintf("acme/app/d%d#1", i)); err == nil && !ok {
					t.Errorf("write %d answered before its transaction returned", i)
				}
				answers <- ans{r, err}
			})
		}
		waitFor(t, func() bool { return queued(svc) == n-1 }, "writers queued")
		select {
		case a := <-answers:
			t.Fatalf("answered while its transaction was still open: %+v", a)
		default:
		}
		close(g.gate)
		wg.Wait()
		close(answers)
		acked := map[string]Result{}
		for a := range answers {
			if a.err != nil {
				t.Fatal(a.err)
			}
			if !a.r.Changed || a.r.Seq == 0 {
				t.Fatalf("result %+v", a.r)
			}
			acked[a.r.DocumentID] = a.r
		}
		// 99 queued writers with MaxBatch 64: exactly two more transactions.
		if b := g.batches.Load(); b != 3 {
			t.Fatalf("%d transactions for %d writes, want 3", b, n)
		}
		if m := g.maxBatch.Load(); m != 64 {
			t.Fatalf("largest batch %d, want 64", m)
		}
		evs := outbox(t, st, "acme")
		if len(evs) != n {
			t.Fatalf("outbox has %d events, acknowledged %d", len(evs), n)
		}
		for _, e := range evs {
			a, ok := acked[e.Event.DocumentID]
			if !ok || a.ChangeHash != e.Event.ChangeHash || a.Seq != e.Seq || e.Event.Op != model.OpUpsert {
				t.Fatalf("outbox event %+v does not match acknowledgement %+v", e.Event, a)
			}
		}
		if w := woken.Load(); w != 3 {
			t.Fatalf("OnCommit called %d times, want once per batch (3)", w)
		}
	})
}

func queued(s *Service) int {
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSameDocumentInOneBatch queues successive versions of one document in
// a known order behind an open transaction; they must apply in that order
// inside the next batch.
func TestSameDocumentInOneBatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := setup(t, st, "acme")
		g := newGated(st)
		svc := New(g, ten, Options{Logger: quiet()})
		defer svc.Close()
		var wg sync.WaitGroup
		wg.Go(func() { svc.Put(bg, "acme", "app", "other", "", []byte(`{}`)) })
		<-g.entered
		const n = 20
		bodies := []string{}
		results := make([]Result, n)
		for i := range n {
			// Repeat content every 5 versions: a return to an earlier state
			// must still be a change with a new hash.
			body := fmt.Sprintf(`{"v":%d}`, i%5)
			if i%7 == 3 {
				body = fmt.Sprintf(`{"v":%d}`, (i-1)%5) // same as the previous: unchanged
			}
			bodies = append(bodies, body)
			wg.Go(func() {
				r, err := svc.Put(bg, "acme", "app", "doc", "", []byte(body))
				if err != nil {
					t.Error(err)
				}
				results[i] = r
			})
			waitFor(t, func() bool { return queued(svc) == i+1 }, "write queued")
		}
		close(g.gate)
		wg.Wait()
		if g.maxBatch.Load() != n {
			t.Fatalf("largest batch %d, want all %d versions in one", g.maxBatch.Load(), n)
		}
		var evs []store.OutboxEvent
		for _, e := range outbox(t, st, "acme") {
			if e.Event.DocumentID == "doc" {
				evs = append(evs, e)
			}
		}
		hashes := map[string]bool{}
		k, version := 0, uint64(0)
		for i, body := range bodies {
			r := results[i]
			if i > 0 && body == bodies[i-1] {
				if r.Changed || r.ChangeHash != results[i-1].ChangeHash {
					t.Fatalf("write %d repeats its predecessor but got %+v", i, r)
				}
				continue
			}
			version++
			if !r.Changed || r.Version != version {
				t.Fatalf("write %d: %+v, want changed version %d", i, r, version)
			}
			if hashes[r.ChangeHash] {
				t.Fatalf("hash %s repeated", r.ChangeHash)
			}
			hashes[r.ChangeHash] = true
			e := evs[k]
			k++
			if e.Event.ChangeHash != r.ChangeHash || string(e.Event.Patches) != body {
				t.Fatalf("event %d = %s %s, want %s %s", k, e.Event.ChangeHash, e.Event.Patches, r.ChangeHash, body)
			}
			if want := model.ChangeHash("acme", "app", "doc", version, []byte(body)); r.ChangeHash != want {
				t.Fatalf("hash %s, want %s", r.ChangeHash, want)
			}
		}
		if k != len(evs) {
			t.Fatalf("%d events for %d changes", len(evs), k)
		}
		d, err := svc.Get(bg, "acme", "app", "doc")
		if err != nil || string(d.Body) != bodies[n-1] {
			t.Fatalf("final state %s (%v), want %s", d.Body, err, bodies[n-1])
		}
	})
}

// TestCloseDrains closes the service with writers queued: each gets its
// answer, everything queued is committed, and later writes are refused.
func TestCloseDrains(t *testing.T) {
	st := backendtest.Open(t, "sqlite")
	defer st.Close()
	ten := setup(t, st, "acme")
	g := newGated(st)
	svc := New(g, ten, Options{MaxBatch: 8, Logger: quiet()})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 30 {
		wg.Go(func() {
			if _, err := svc.Put(bg, "acme", "app", fmt.Sprintf("d%d", i), "", []byte(`{}`)); err != nil {
				t.Error(err)
				return
			}
			ok.Add(1)
		})
	}
	// The first batch holds whichever writers had queued when the
	// committer woke (usually one); every other writer queues behind it.
	first := <-g.entered
	waitFor(t, func() bool { return queued(svc) == 30-first }, "writers queued")
	closed := make(chan struct{})
	go func() { svc.Close(); close(closed) }()
	// Close must wait for the queue, not drop it.
	waitFor(t, func() bool { svc.mu.RLock(); defer svc.mu.RUnlock(); return svc.closed }, "close started")
	select {
	case <-closed:
		t.Fatal("Close returned with writes still queued")
	default:
	}
	close(g.gate)
	<-closed
	wg.Wait()
	if ok.Load() != 30 || len(outbox(t, st, "acme")) != 30 {
		t.Fatalf("acknowledged %d, outbox %d, want 30 and 30", ok.Load(), len(outbox(t, st, "acme")))
	}
	_, err := svc.Put(bg, "acme", "app", "late", "", []byte(`{}`))
	mustKind(t, err, errs.Unavailable, "write after Close")
}

func TestErrorsAndMetrics(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := setup(t, st, "acme")
		reg := prometheus.NewPedanticRegistry()
		svc := New(st, ten, Options{Logger: quiet(), Registerer: reg, QuotaTTL: -1, OutboxLimit: 6})
		defer svc.Close()

		_, err := svc.Put(bg, "nope", "app", "d", "", []byte(`{}`))
		mustKind(t, err, errs.NotFound, "missing org")
		_, err = svc.Put(bg, "acme", "nope", "d", "", []byte(`{}`))
		mustKind(t, err, errs.NotFound, "missing formation")
		if err.Error() != "Formation 'nope' not found in org 'acme'" {
			t.Fatalf("message %q", err)
		}
		_, err = svc.Put(bg, "acme", "app", "a.b", "", []byte(`{}`))
		mustKind(t, err, errs.Invalid, "dotted doc id")
		_, err = svc.Put(bg, "acme", "app", "d", "", []byte(`[1]`))
		mustKind(t, err, errs.Unprocessable, "array body")
		_, err = svc.Put(bg, "acme", "app", "d", "", []byte(`{"a":`))
		mustKind(t, err, errs.Invalid, "broken body")
		_, err = svc.Delete(bg, "acme", "app", "d", "")
		mustKind(t, err, errs.NotFound, "delete of a missing doc")

		org, _ := ten.GetOrg(bg, "acme")
		q := org.Quotas
		q.MaxDocumentsPerFormation = 2
		if _, err := ten.UpdateOrg(bg, "acme", tenant.OrgPatch{Quotas: &q}); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"d1", "d2"} {
			if _, err := svc.Put(bg, "acme", "app", d, "", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
		_, err = svc.Put(bg, "acme", "app", "d3", "", []byte(`{}`))
		mustKind(t, err, errs.Quota, "third document")
		if err.Error() != "Formation 'app' has reached its document quota (2)" {
			t.Fatalf("quota message %q", err)
		}
		if r, err := svc.Put(bg, "acme", "app", "d1", "", []byte(`{"x":1}`)); err != nil || !r.Changed {
			t.Fatalf("update within quota: %+v %v", r, err)
		}
		if r, err := svc.Put(bg, "acme", "app", "d1", "", []byte(`{ "x" : 1 }`)); err != nil || r.Changed {
			t.Fatalf("unchanged update: %+v %v", r, err)
		}
		if _, err := ten.SetFormationStatus(bg, "acme", "app", model.FormationSuspended); err != nil {
			t.Fatal(err)
		}
		_, err = svc.Put(bg, "acme", "app", "d1", "", []byte(`{"x":2}`))
		mustKind(t, err, errs.Conflict, "suspended formation")
		_, err = svc.Delete(bg, "acme", "app", "d1", "")
		mustKind(t, err, errs.Conflict, "delete in a suspended formation")
		if _, err := ten.SetFormationStatus(bg, "acme", "app", model.FormationActive); err != nil {
			t.Fatal(err)
		}
		// Outbox limit 6: d1, d2, d1 update are 3 rows; three more fit.
		for i := range 3 {
			if _, err := svc.Put(bg, "acme", "app", "d2", "", fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
				t.Fatal(err)
			}
		}
		_, err = svc.Put(bg, "acme", "app", "d2", "", []byte(`{"i":99}`))
		mustKind(t, err, errs.StorageFull, "outbox full")
		// An unchanged write emits nothing, so a full outbox does not refuse it.
		if r, err := svc.Put(bg, "acme", "app", "d2", "", []byte(`{"i":2}`)); err != nil || r.Changed {
			t.Fatalf("unchanged write with a full outbox: %+v %v", r, err)
		}
		if n := len(outbox(t, st, "acme")); n != 6 {
			t.Fatalf("outbox %d rows", n)
		}

		for _, c := range []struct {
			op, outcome, reason string
			want                float64
		}{
			{"upsert", "accepted", "", 6},
			{"upsert", "unchanged", "", 2},
			{"upsert", "rejected", "not_found", 2},
			{"upsert", "rejected", "invalid", 3},
			{"upsert", "rejected", "quota", 1},
			{"upsert", "rejected", "suspended", 1},
			{"upsert", "rejected", "outbox_full", 1},
			{"delete", "rejected", "not_found", 1},
			{"delete", "rejected", "suspended", 1},
		} {
			v, err := counterValue(reg, "peat_gw_docs_changes_total", map[string]string{"op": c.op, "outcome": c.outcome, "reason": c.reason})
			if err != nil || v != c.want {
				t.Errorf("changes{%s,%s,%s} = %v (%v), want %v", c.op, c.outcome, c.reason, v, err, c.want)
			}
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, mf := range mfs {
			seen[mf.GetName()] = true
			if mf.GetName() == "peat_gw_docs_batch_size" && mf.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
				t.Fatal("no batch observed")
			}
		}
		for _, n := range []string{"peat_gw_docs_batch_size", "peat_gw_docs_commit_seconds", "peat_gw_docs_queue_depth"} {
			if !seen[n] {
				t.Fatalf("metric %s not registered", n)
			}
		}
	})
}

func counterValue(g prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("%s%v not found", name, labels)
}

// TestConcurrentWritersKeepDocumentOrder runs writers on shared and own
// documents over several orgs and committers; each document's events must be
// in version order, and each writer's own changes in the order it made them.
func TestConcurrentWritersKeepDocumentOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		orgs := []string{"o1", "o2", "o3"}
		ten := setup(t, st, orgs...)
		svc := New(st, ten, Options{MaxBatch: 16, Committers: 3, Logger: quiet()})
		defer svc.Close()
		const writers, each = 12, 25
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				org := orgs[w%len(orgs)]
				for i := range each {
					doc := "shared"
					if i%2 == 0 {
						doc = fmt.Sprintf("own-%d", w)
					}
					if _, err := svc.Put(bg, org, "app", doc, fmt.Sprintf("w%d", w), fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, org := range orgs {
			versions := map[string]uint64{}
			lastI := map[string]int{}
			for _, e := range outbox(t, st, org) {
				d := e.Event.DocumentID
				versions[d]++
				if want := model.ChangeHash(org, "app", d, versions[d], e.Event.Patches); e.Event.ChangeHash != want {
					t.Fatalf("%s/%s event %d out of version order", org, d, versions[d])
				}
				var body struct{ W, I int }
				json.Unmarshal(e.Event.Patches, &body)
				key := fmt.Sprintf("%s/%d", d, body.W)
				if prev, ok := lastI[key]; ok && body.I <= prev {
					t.Fatalf("writer %d's changes to %s out of order: %d after %d", body.W, d, body.I, prev)
				}
				lastI[key] = body.I
			}
		}
	})
}

func TestTestEvent(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ten := setup(t, st, "acme")
		var woken []string
		svc := New(st, ten, Options{Logger: quiet(), OnCommit: func(o []string) { woken = append(woken, o...) }})
		defer svc.Close()
		r, err := svc.TestEvent(bg, "acme", TestRequest{AppID: "anything", DocumentID: "x1", Patches: json.RawMessage(`{"k": [1, 2]}`)})
		if err != nil || !r.Published || len(r.ChangeHash) != 21 || r.ChangeHash[:5] != "test-" {
			t.Fatalf("%+v %v", r, err)
		}
		evs := outbox(t, st, "acme")
		if len(evs) != 1 {
			t.Fatalf("outbox %d", len(evs))
		}
		e := evs[0].Event
		if e.ChangeHash != r.ChangeHash || e.ActorID != "test-actor" || e.AppID != "anything" || e.Op != model.OpTest ||
			string(e.Patches) != `{"k":[1,2]}` {
			t.Fatalf("event %+v", e)
		}
		if len(woken) != 1 || woken[0] != "acme" {
			t.Fatalf("OnCommit %v", woken)
		}
		_, err = svc.TestEvent(bg, "nope", TestRequest{AppID: "a", DocumentID: "d"})
		mustKind(t, err, errs.NotFound, "missing org")
		_, err = svc.TestEvent(bg, "acme", TestRequest{AppID: "a", DocumentID: "d>"})
		mustKind(t, err, errs.Invalid, "bad document id")
		if n := len(outbox(t, st, "acme")); n != 1 {
			t.Fatalf("outbox %d after refusals", n)
		}
	})
}

// BenchmarkPut measures the service without HTTP: 64 concurrent writers
// putting fresh content to 10,000 documents on SQLite (synchronous=FULL).
func BenchmarkPut(b *testing.B) {
	st, err := sqlite.Open(bg, filepath.Join(b.TempDir(), "gw.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ten := tenant.New(st, nil, tenant.Options{})
	if _, err := ten.CreateOrg(bg, "acme", "acme"); err != nil {
		b.Fatal(err)
	}
	q := model.DefaultQuotas()
	q.MaxDocumentsPerFormation = 1 << 30
	if _, err := ten.UpdateOrg(bg, "acme", tenant.OrgPatch{Quotas: &q}); err != nil {
		b.Fatal(err)
	}
	if _, err := ten.CreateFormation(bg, "acme", "app", ""); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc := New(st, ten, Options{Registerer: reg, Logger: quiet()})
	defer svc.Close()
	var seq atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			if _, err := svc.Put(bg, "acme", "app", fmt.Sprintf("d%d", n%10000), "", fmt.Appendf(nil, `{"seq":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, n)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "peat_gw_docs_batch_size" {
			h := mf.GetMetric()[0].GetHistogram()
			b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount()), "writes/batch")
		}
	}
}
