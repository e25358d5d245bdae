package cdc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/postgres"
)

// Two replicas on one Postgres split the sinks (each sink is delivered by
// exactly one of them) and, when one replica's database session dies, the
// other takes its sinks over and nothing is lost. Locking is Postgres-only:
// SQLite is one process.
func TestPostgresReplicasFailOver(t *testing.T) {
	url := pgtest.URL(t)
	ctx := context.Background()
	open := func() *postgres.Store {
		st, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stA, stB := open(), open()
	ten := newTenant(stA)
	mkOrg(t, ten, "acme", "app")
	rcv := newReceiver(t)
	const nSinks = 4
	var ids []string
	for i := range nSinks {
		ids = append(ids, mkSink(t, ten, "acme", webhookSink(fmt.Sprintf("%s/s%d", rcv.srv.URL, i))).SinkID)
	}
	f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
	t.Cleanup(func() { f.Close() })

	lockA, lockB := cdc.NewPGLockerFromPool(stA.Pool()), cdc.NewPGLockerFromPool(stB.Pool())
	t.Cleanup(lockA.Close)
	t.Cleanup(lockB.Close)
	oA, oB := fastOpts(), fastOpts()
	oA.Locker, oB.Locker = lockA, lockB
	dA := startDispatcher(t, stA, f, oA)
	dB := startDispatcher(t, stB, f, oB)

	exclusive := func() (a, b int) {
		for _, id := range ids {
			inA, inB := dA.Delivering(id), dB.Delivering(id)
			if inA && inB {
				t.Fatalf("sink %s delivered by both replicas", id)
			}
			if inA {
				a++
			}
			if inB {
				b++
			}
		}
		return a, b
	}
	eventually(t, 10*time.Second, "every sink owned", func() bool { a, b := exclusive(); return a+b == nSinks })

	writeChanges(t, stA, nil, "acme", changes("app", 5, 2))
	dA.Notify("acme")
	dB.Notify("acme")
	for i := range nSinks {
		p := fmt.Sprintf("/s%d", i)
		eventually(t, 20*time.Second, "delivery on "+p, func() bool { exclusive(); return uniq(rcv.got(p)) == 10 })
	}

	// Replica A's database session dies: its locks are gone, its workers
	// stop, and B takes every sink over.
	lockA.Close()
	eventually(t, 20*time.Second, "fail-over to B", func() bool { a, b := exclusive(); return a == 0 && b == nSinks })
	writeChanges(t, stB, dB, "acme", changes("app", 5, 4)[10:])
	for i := range nSinks {
		p := fmt.Sprintf("/s%d", i)
		eventually(t, 20*time.Second, "delivery after fail-over on "+p, func() bool { return uniq(rcv.got(p)) == 20 })
		checkOrder(t, dedupe(rcv.got(p)), "acme", "app", 5, 4)
	}
}

// dedupe keeps the first delivery of each change (at-least-once allows
// repeats across a fail-over).
func dedupe(evs []model.CdcEvent) []model.CdcEvent {
	seen := map[string]bool{}
	var out []model.CdcEvent
	for _, e := range evs {
		if !seen[e.ChangeHash] {
			seen[e.ChangeHash] = true
			out = append(out, e)
		}
	}
	return out
}

// fakeFilter drops document "drop", rewrites "rep" and fails on "bad".
type fakeFilter struct{}

func (fakeFilter) Apply(_ context.Context, org string, chain []model.FilterRef, evs []model.CdcEvent) []cdc.FilterOutcome {
	out := make([]cdc.FilterOutcome, len(evs))
	for i, ev := range evs {
		if len(chain) == 0 || chain[0].Name != "f" {
			out[i] = cdc.FilterOutcome{Verdict: cdc.Fail, Err: "wrong chain", Policy: cdc.DeadLetter}
			continue
		}
		switch ev.DocumentID {
		case "drop":
			out[i] = cdc.FilterOutcome{Verdict: cdc.Drop}
		case "rep":
			ev.Patches = []byte(`{"n":1,"rewritten":true}`)
			out[i] = cdc.FilterOutcome{Verdict: cdc.Replace, Event: ev}
		case "bad":
			out[i] = cdc.FilterOutcome{Verdict: cdc.Fail, Err: "module trapped", Policy: cdc.DeadLetter}
		case "pass":
			out[i] = cdc.FilterOutcome{Verdict: cdc.Fail, Err: "module timed out", Policy: cdc.Pass}
		}
	}
	return out
}

// The filter chain's verdicts: keep, replace, drop, and failures that
// dead-letter or pass by policy; the status counts the failures.
func TestFilterVerdicts(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		ten := newTenant(st)
		mkOrg(t, ten, "acme", "app")
		rcv := newReceiver(t)
		f := sinks.NewFactory(sinks.Config{WebhookAllowPrivate: true})
		t.Cleanup(func() { f.Close() })
		sc := model.CdcSinkConfig{SinkID: model.NewID(), OrgID: "acme", SinkType: webhookSink(rcv.srv.URL + "/h"),
			Enabled: true, CreatedAt: 1, Filters: []model.FilterRef{{Name: "f"}}}
		if err := st.CreateSink(ctx, sc); err != nil {
			t.Fatal(err)
		}
		o := fastOpts()
		o.Filter = fakeFilter{}
		d := startDispatcher(t, st, f, o)
		writeChanges(t, st, d, "acme", []change{{"app", "keep", 1}, {"app", "drop", 1}, {"app", "rep", 1}, {"app", "bad", 1}, {"app", "pass", 1}, {"app", "bad", 2}})
		eventually(t, 10*time.Second, "filtered delivery", func() bool { return status(t, d, "acme", sc.SinkID).Pending == 0 })
		got := map[string]string{}
		for _, ev := range rcv.got("/h") {
			got[ev.DocumentID] = string(ev.Patches)
		}
		want := map[string]string{"keep": `{"n":1}`, "rep": `{"n":1,"rewritten":true}`, "pass": `{"n":1}`}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("delivered %v, want %v", got, want)
		}
		s := status(t, d, "acme", sc.SinkID)
		if s.Delivered != 3 || s.DeadLettered != 2 || s.FilterErrors != 3 || s.LastFilterError == nil {
			t.Fatalf("status %+v", s)
		}
		dls, err := d.DeadLetters(ctx, "acme", sc.SinkID, 10)
		if err != nil || len(dls) != 2 || dls[0].Event.DocumentID != "bad" || dls[0].Error != "filter: module trapped" || dls[1].Event.DocumentID != "bad" {
			t.Fatalf("dead letters %+v %v", dls, err)
		}
	})
}
