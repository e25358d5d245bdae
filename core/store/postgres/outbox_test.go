package postgres_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

func write(t *testing.T, s store.Store, w store.DocumentWrite) store.DocumentResult {
	t.Helper()
	rs, err := s.WriteDocuments(ctx, []store.DocumentWrite{w})
	if err != nil {
		t.Fatalf("WriteDocuments: %v", err)
	}
	return rs[0]
}

func doc(id, body string, ts uint64) store.DocumentWrite {
	return store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: id, ActorID: "tester", Body: []byte(body),
		TimestampMs: ts, DocLimit: 3}
}

// Documents: unchanged writes emit nothing, deletes leave a tombstone whose
// version keeps counting, and every per-write refusal is reported in order.
func TestDocumentLifecycle(t *testing.T) {
	s := open(t)
	mkOrg(t, s, "acme", nil)
	mkFormation(t, s, "acme", "app")

	r := write(t, s, doc("d1", `{"a":1}`, t0))
	if !r.Changed || r.Version != 1 || r.Seq != 1 || r.ChangeHash != model.ChangeHash("acme", "app", "d1", 1, []byte(`{"a":1}`)) {
		t.Fatalf("first write: %+v", r)
	}
	if r2 := write(t, s, doc("d1", `{"a":1}`, t0+1)); r2.Changed || r2.Seq != 0 || r2.Version != 1 || r2.ChangeHash != r.ChangeHash {
		t.Fatalf("unchanged write: %+v", r2)
	}
	del := doc("d1", "", t0+2)
	del.Delete, del.Body = true, nil
	rd := write(t, s, del)
	if !rd.Changed || rd.Version != 2 || rd.Seq != 2 || rd.ChangeHash != model.ChangeHash("acme", "app", "d1", 2, nil) {
		t.Fatalf("delete: %+v", rd)
	}
	if _, err := s.GetDocument(ctx, "acme", "app", "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetDocument of a tombstone: %v", err)
	}
	if r := write(t, s, del); !errors.Is(r.Err, store.ErrNotFound) {
		t.Fatalf("deleting a tombstone: %+v", r)
	}
	// Re-created with the first body: a distinct change.
	if r3 := write(t, s, doc("d1", `{"a":1}`, t0+3)); r3.Version != 3 || r3.ChangeHash == r.ChangeHash {
		t.Fatalf("re-create: %+v", r3)
	}

	// One batch: quota (3 live docs), a document written twice, a missing
	// formation, then a suspended formation.
	mkFormation(t, s, "acme", "other")
	rs, err := s.WriteDocuments(ctx, []store.DocumentWrite{
		doc("d2", `{"b":1}`, t0+4),
		doc("d2", `{"b":2}`, t0+5),
		doc("d3", `{}`, t0+6),
		doc("d4", `{}`, t0+7),
		{OrgID: "acme", AppID: "nope", DocID: "x", Body: []byte(`{}`), DocLimit: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Version != 1 || rs[1].Version != 2 || rs[1].Seq != rs[0].Seq+1 || rs[2].Err != nil ||
		!errors.Is(rs[3].Err, store.ErrQuota) || !errors.Is(rs[4].Err, store.ErrFormationNotFound) {
		t.Fatalf("batch results: %+v", rs)
	}
	d2, err := s.GetDocument(ctx, "acme", "app", "d2")
	if err != nil || string(d2.Body) != `{"b":2}` || d2.Version != 2 {
		t.Fatalf("d2 = %+v, %v", d2, err)
	}
	list, err := s.ListDocuments(ctx, "acme", "app")
	if err != nil || len(list) != 3 || list[0].DocID != "d1" || list[1].KeyCount != 1 {
		t.Fatalf("ListDocuments = %+v, %v", list, err)
	}
	if _, err := s.SetFormationStatus(ctx, "acme", "app", model.FormationSuspended); err != nil {
		t.Fatal(err)
	}
	if r := write(t, s, doc("d2", `{"c":1}`, t0+8)); !errors.Is(r.Err, store.ErrSuspended) {
		t.Fatalf("write to a suspended formation: %+v", r)
	}

	// The outbox bound counts the org's retained rows.
	last, _ := s.LastSeq(ctx, "acme")
	w := store.DocumentWrite{OrgID: "acme", AppID: "other", DocID: "o1", Body: []byte(`{}`), DocLimit: 10, OutboxLimit: last}
	if r := write(t, s, w); !errors.Is(r.Err, store.ErrOutboxFull) {
		t.Fatalf("write beyond the outbox bound: %+v", r)
	}
	w.OutboxLimit = last + 1
	if r := write(t, s, w); r.Err != nil || r.Seq != last+1 {
		t.Fatalf("write within the outbox bound: %+v", r)
	}

	evs, err := s.ReadOutbox(ctx, "acme", 1, 2)
	if err != nil || len(evs) != 2 || evs[0].Seq != 2 || evs[0].Event.Op != model.OpDelete ||
		string(evs[0].Event.Patches) != `{"_deleted":true}` || evs[0].Event.ActorID != "tester" {
		t.Fatalf("ReadOutbox = %+v, %v", evs, err)
	}
	if _, err := s.AppendEvent(ctx, model.CdcEvent{OrgID: "ghost", Patches: []byte(`{}`)}); !errors.Is(err, store.ErrOrgNotFound) {
		t.Fatalf("AppendEvent for a missing org: %v", err)
	}
}

// Sink progress only moves forward, dead letters are taken once, and Prune
// keeps what a sink still needs.
func TestProgressDeadLettersPrune(t *testing.T) {
	s := open(t)
	mkOrg(t, s, "acme", nil)
	mkFormation(t, s, "acme", "app")
	for i := range 5 {
		write(t, s, store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: fmt.Sprintf("d%d", i), Body: []byte(`{}`),
			TimestampMs: t0 + uint64(i), DocLimit: 100})
	}
	for _, id := range []string{"s1", "s2"} {
		if err := s.CreateSink(ctx, model.CdcSinkConfig{SinkID: id, OrgID: "acme", CreatedAt: t0,
			SinkType: model.CdcSinkType{Webhook: &model.WebhookSink{URL: "https://x", Secret: "k", HasSecret: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := s.GetProgress(ctx, "s1"); err != nil || p != (store.SinkProgress{}) {
		t.Fatalf("progress of a new sink = %+v, %v", p, err)
	}
	evs, _ := s.ReadOutbox(ctx, "acme", 0, 10)
	dl := []store.DeadLetter{{SinkID: "s1", Seq: 2, Error: "boom", Attempts: 4, Event: evs[1].Event, RawEvent: evs[1].Raw}}
	if err := s.Advance(ctx, "acme", "s1", 3, 2, dl, "boom", t0+100); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx, "acme", "s1", 1, 0, nil, "", t0+200); err != nil {
		t.Fatal(err)
	}
	p, _ := s.GetProgress(ctx, "s1")
	if p.Cursor != 3 || p.Delivered != 2 || p.DeadLettered != 1 || p.LastDeliveredAt != t0+100 {
		t.Fatalf("progress = %+v", p)
	}
	if err := s.SetLastError(ctx, "s2", "down"); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetProgress(ctx, "s2"); p.LastError != "down" || p.Cursor != 0 {
		t.Fatalf("s2 progress = %+v", p)
	}
	if err := s.Advance(ctx, "ghost", "s9", 1, 1, nil, "", t0); !errors.Is(err, store.ErrOrgNotFound) {
		t.Fatalf("Advance for a missing org: %v", err)
	}
	got, err := s.ListDeadLetters(ctx, "acme", "s1", 10)
	if err != nil || len(got) != 1 || got[0].Seq != 2 || got[0].Event.DocumentID != "d1" || got[0].Replayed {
		t.Fatalf("ListDeadLetters = %+v, %v", got, err)
	}
	if err := s.AdvanceReplay(ctx, "acme", "s1", 3, 1, got[0].ID, nil, "", t0+300); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListDeadLetters(ctx, "acme", "s1", 10); len(got) != 1 || !got[0].Replayed {
		t.Fatalf("after AdvanceReplay: %+v", got)
	}

	// s2 is at cursor 0, so nothing may go.
	if n, err := s.Prune(ctx, t0+1000); err != nil || n != 0 {
		t.Fatalf("Prune with a sink at 0 = %d, %v", n, err)
	}
	if err := s.Advance(ctx, "acme", "s2", 4, 4, nil, "", t0); err != nil {
		t.Fatal(err)
	}
	// Both sinks passed 3; only events older than t0+2 (seqs 1, 2) are due.
	if n, err := s.Prune(ctx, t0+2); err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	if n, _ := s.OutboxDepth(ctx); n != 3 {
		t.Fatalf("OutboxDepth = %d, want 3", n)
	}
	if n, _ := s.CountAfter(ctx, "acme", 3); n != 2 {
		t.Fatalf("CountAfter(3) = %d, want 2", n)
	}
	if last, _ := s.LastSeq(ctx, "acme"); last != 5 {
		t.Fatalf("LastSeq = %d", last)
	}
	// Deleting the sink drops its progress and dead letters.
	if err := s.DeleteSink(ctx, "acme", "s1"); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetProgress(ctx, "s1"); p != (store.SinkProgress{}) {
		t.Fatalf("progress after DeleteSink = %+v", p)
	}
	sk, err := s.GetSink(ctx, "acme", "s2")
	if err != nil || sk.SinkType.Webhook == nil || !sk.SinkType.Webhook.HasSecret || sk.SinkType.Webhook.Secret != "k" {
		t.Fatalf("webhook sink = %+v, %v", sk, err)
	}
}

// Deleting an org while writers, deliveries and test events run on it must
// end every call with success or a not-found sentinel: never a deadlock or
// a foreign-key error leaking out.
func TestDeleteOrgRacesWriters(t *testing.T) {
	s := open(t)
	for round := range 5 {
		mkOrg(t, s, "acme", nil)
		mkFormation(t, s, "acme", "app")
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					var err error
					switch w % 3 {
					case 0:
						var rs []store.DocumentResult
						rs, err = s.WriteDocuments(ctx, []store.DocumentWrite{{OrgID: "acme", AppID: "app",
							DocID: fmt.Sprintf("d%d-%d", w, i), Body: []byte(`{}`), DocLimit: 1000}})
						if err == nil && rs[0].Err != nil && !errors.Is(rs[0].Err, store.ErrNotFound) {
							err = rs[0].Err
						}
					case 1:
						_, err = s.AppendEvent(ctx, model.CdcEvent{OrgID: "acme", Patches: []byte(`{}`)})
					case 2:
						err = s.Advance(ctx, "acme", "sink", int64(i), 1, []store.DeadLetter{{Seq: 1, Event: model.CdcEvent{}}}, "", t0)
					}
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						errs <- err
					}
				}
			}()
		}
		if err := s.DeleteOrg(ctx, "acme"); err != nil {
			t.Fatalf("round %d: DeleteOrg: %v", round, err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if strings.Contains(err.Error(), "deadlock") {
				t.Fatalf("round %d: deadlock: %v", round, err)
			}
			t.Fatalf("round %d: unexpected error: %v", round, err)
		}
		// Writers that ran after the delete found nothing; none resurrected rows.
		if _, err := s.GetOrg(ctx, "acme"); !errors.Is(err, store.ErrOrgNotFound) {
			t.Fatalf("round %d: org back after delete: %v", round, err)
		}
		_ = s.DeleteOrg(ctx, "acme")
	}
}
