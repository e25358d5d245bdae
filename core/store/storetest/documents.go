package storetest

import (
	"encoding/json"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// docEnv is an org "acme" with formation "app1" (and "app2").
func docEnv(t *testing.T, s store.Store) {
	mkOrg(t, s, "acme")
	mkFormation(t, s, "acme", "app1")
	mkFormation(t, s, "acme", "app2")
}

func lastSeq(t testing.TB, s store.Store, orgID string) int64 {
	t.Helper()
	n, err := s.LastSeq(ctx, orgID)
	mustOK(t, err, "LastSeq")
	return n
}

var documentTests = []subtest{
	{"VersionsHashesAndEvents", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		v1 := `{"a":1,"b":"x"}`
		r := write1(t, s, docWrite("acme", "app1", "doc1", v1, t0+1))
		mustOK(t, r.Err, "create")
		if !r.Changed || r.Version != 1 || r.Seq <= 0 {
			t.Fatalf("create result = %+v, want changed version 1 with a seq", r)
		}
		h1 := model.ChangeHash("acme", "app1", "doc1", 1, []byte(v1))
		mustEqual(t, r.ChangeHash, h1, "change hash of version 1")
		d, err := s.GetDocument(ctx, "acme", "app1", "doc1")
		mustOK(t, err, "GetDocument")
		mustEqual(t, d, store.Document{OrgID: "acme", AppID: "app1", DocID: "doc1", Body: []byte(v1), Version: 1, ChangeHash: h1, UpdatedAt: t0 + 1}, "document")

		// The same content again is unchanged and emits nothing.
		seqBefore := lastSeq(t, s, "acme")
		same := write1(t, s, docWrite("acme", "app1", "doc1", v1, t0+2))
		mustEqual(t, same, store.DocumentResult{Version: 1, ChangeHash: h1}, "unchanged result")
		mustEqual(t, lastSeq(t, s, "acme"), seqBefore, "no event for unchanged content")

		v2 := `{"a":2}`
		r2 := write1(t, s, docWrite("acme", "app1", "doc1", v2, t0+3))
		mustEqual(t, r2.Version, uint64(2), "version 2")
		mustEqual(t, r2.ChangeHash, model.ChangeHash("acme", "app1", "doc1", 2, []byte(v2)), "hash 2")
		if r2.Seq <= r.Seq {
			t.Fatalf("seq %d not after %d", r2.Seq, r.Seq)
		}

		del := write1(t, s, docDelete("acme", "app1", "doc1", t0+4))
		mustOK(t, del.Err, "delete")
		mustEqual(t, del.Version, uint64(3), "delete is version 3")
		mustEqual(t, del.ChangeHash, model.ChangeHash("acme", "app1", "doc1", 3, nil), "delete hash")
		mustEqual(t, del.Changed, true, "delete changed")
		_, err = s.GetDocument(ctx, "acme", "app1", "doc1")
		mustIs(t, err, store.ErrNotFound, "deleted document")
		again := write1(t, s, docDelete("acme", "app1", "doc1", t0+5))
		mustIs(t, again.Err, store.ErrNotFound, "deleting a deleted document")
		never := write1(t, s, docDelete("acme", "app1", "never", t0+5))
		mustIs(t, never.Err, store.ErrNotFound, "deleting a missing document")

		// Returning to an earlier state is a distinct change.
		back := write1(t, s, docWrite("acme", "app1", "doc1", v1, t0+6))
		mustEqual(t, back.Version, uint64(4), "version keeps counting after a delete")
		if back.ChangeHash == h1 {
			t.Fatalf("re-created document repeated change hash %s", h1)
		}

		evs, err := s.ReadOutbox(ctx, "acme", 0, 100)
		mustOK(t, err, "ReadOutbox")
		if len(evs) != 4 {
			t.Fatalf("outbox has %d events, want 4", len(evs))
		}
		wantOps := []string{model.OpUpsert, model.OpUpsert, model.OpDelete, model.OpUpsert}
		wantHashes := []string{h1, r2.ChangeHash, del.ChangeHash, back.ChangeHash}
		wantSeqs := []int64{r.Seq, r2.Seq, del.Seq, back.Seq}
		for i, e := range evs {
			mustEqual(t, e.Seq, wantSeqs[i], "event %d seq", i)
			mustEqual(t, e.Event.Op, wantOps[i], "event %d op", i)
			mustEqual(t, e.Event.ChangeHash, wantHashes[i], "event %d hash", i)
			mustEqual(t, [3]string{e.Event.OrgID, e.Event.AppID, e.Event.DocumentID}, [3]string{"acme", "app1", "doc1"}, "event %d coordinates", i)
			mustEqual(t, e.Event.ActorID, "tester", "event %d actor", i)
			var raw model.CdcEvent
			mustOK(t, json.Unmarshal(e.Raw, &raw), "event %d raw JSON", i)
			mustEqual(t, raw.ChangeHash, e.Event.ChangeHash, "raw and decoded agree")
		}
		mustEqual(t, evs[0].Event.TimestampMs, t0+1, "event timestamp")
		mustJSON(t, evs[0].Event.Patches, v1, "upsert patches are the new document")
		mustJSON(t, evs[2].Event.Patches, `{"_deleted":true}`, "delete patches")
	}},
	{"ListDocuments", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		write1(t, s, docWrite("acme", "app1", "zeta", `{"a":1,"b":2,"c":3}`, t0+1))
		write1(t, s, docWrite("acme", "app1", "alpha", `{}`, t0+2))
		write1(t, s, docWrite("acme", "app1", "alpha", `{"x":true}`, t0+3))
		write1(t, s, docWrite("acme", "app1", "gone", `{"x":1}`, t0+4))
		write1(t, s, docDelete("acme", "app1", "gone", t0+5))
		write1(t, s, docWrite("acme", "app2", "other", `{"x":1}`, t0+6))
		ds, err := s.ListDocuments(ctx, "acme", "app1")
		mustOK(t, err, "ListDocuments")
		mustEqual(t, ds, []model.DocumentSummary{
			{DocID: "alpha", KeyCount: 1, LastModified: t0 + 3, Version: 2, ChangeHash: model.ChangeHash("acme", "app1", "alpha", 2, []byte(`{"x":true}`))},
			{DocID: "zeta", KeyCount: 3, LastModified: t0 + 1, Version: 1, ChangeHash: model.ChangeHash("acme", "app1", "zeta", 1, []byte(`{"a":1,"b":2,"c":3}`))},
		}, "summaries")
	}},
	{"DocumentQuota", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		w := func(doc, body string) store.DocumentWrite {
			x := docWrite("acme", "app1", doc, body, t0)
			x.DocLimit = 2
			return x
		}
		mustOK(t, write1(t, s, w("d1", `{"v":1}`)).Err, "doc 1")
		mustOK(t, write1(t, s, w("d2", `{"v":1}`)).Err, "doc 2")
		mustIs(t, write1(t, s, w("d3", `{"v":1}`)).Err, store.ErrQuota, "doc 3")
		_, err := s.GetDocument(ctx, "acme", "app1", "d3")
		mustIs(t, err, store.ErrNotFound, "refused document not stored")
		mustOK(t, write1(t, s, w("d1", `{"v":2}`)).Err, "updating an existing document at the limit")
		// Other formations have their own count.
		other := w("d3", `{"v":1}`)
		other.AppID = "app2"
		mustOK(t, write1(t, s, other).Err, "other formation")
		del := docDelete("acme", "app1", "d2", t0)
		mustOK(t, write1(t, s, del).Err, "delete")
		mustOK(t, write1(t, s, w("d3", `{"v":1}`)).Err, "after a delete frees a slot")
		zero := w("d9", `{}`)
		zero.AppID, zero.DocLimit = "app2", 0
		mustIs(t, write1(t, s, zero).Err, store.ErrQuota, "doc limit 0")
	}},
	{"OutboxLimit", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		w := func(doc, body string) store.DocumentWrite {
			x := docWrite("acme", "app1", doc, body, t0)
			x.OutboxLimit = 3
			return x
		}
		for i, d := range []string{"d1", "d2", "d3"} {
			mustOK(t, write1(t, s, w(d, `{}`)).Err, "write %d", i)
		}
		full := write1(t, s, w("d4", `{}`))
		mustIs(t, full.Err, store.ErrOutboxFull, "fourth event")
		_, err := s.GetDocument(ctx, "acme", "app1", "d4")
		mustIs(t, err, store.ErrNotFound, "refused write not stored")
		// An unchanged write emits nothing, so a full outbox does not refuse it.
		mustEqual(t, write1(t, s, w("d1", `{}`)).Err, nil, "unchanged write with a full outbox")
		unbounded := w("d4", `{}`)
		unbounded.OutboxLimit = 0
		mustOK(t, write1(t, s, unbounded).Err, "limit 0 is unbounded")
		// Pruning (no sinks: every event is delivered to nobody) makes room.
		n, err := s.Prune(ctx, t0+1)
		mustOK(t, err, "Prune")
		mustEqual(t, n, int64(4), "pruned")
		mustOK(t, write1(t, s, w("d5", `{}`)).Err, "after prune")
	}},
	{"SuspendedAndMissingFormation", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		_, err := s.SetFormationStatus(ctx, "acme", "app1", model.FormationSuspended)
		mustOK(t, err, "suspend")
		mustIs(t, write1(t, s, docWrite("acme", "app1", "d1", `{}`, t0)).Err, store.ErrSuspended, "suspended")
		mustIs(t, write1(t, s, docWrite("acme", "nope", "d1", `{}`, t0)).Err, store.ErrFormationNotFound, "missing formation")
		mustIs(t, write1(t, s, docWrite("nope", "app1", "d1", `{}`, t0)).Err, store.ErrFormationNotFound, "missing org")
		mustEqual(t, lastSeq(t, s, "acme"), int64(0), "no events")
	}},
	{"MixedBatch", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		write1(t, s, docWrite("acme", "app1", "same", `{"s":1}`, t0))
		_, err := s.SetFormationStatus(ctx, "acme", "app2", model.FormationSuspended)
		mustOK(t, err, "suspend app2")
		quota := docWrite("acme", "app1", "over", `{}`, t0)
		quota.DocLimit = 1
		batch := []store.DocumentWrite{
			docWrite("acme", "app1", "new1", `{"n":1}`, t0+1),
			docWrite("acme", "app1", "same", `{"s":1}`, t0+1),
			docDelete("acme", "app1", "missing", t0+1),
			quota,
			docWrite("acme", "app2", "susp", `{}`, t0+1),
			docWrite("acme", "app1", "new1", `{"n":2}`, t0+1),
			docDelete("acme", "app1", "same", t0+1),
		}
		rs, err := s.WriteDocuments(ctx, batch)
		mustOK(t, err, "WriteDocuments")
		if len(rs) != len(batch) {
			t.Fatalf("%d results for %d writes", len(rs), len(batch))
		}
		mustOK(t, rs[0].Err, "new doc")
		mustEqual(t, [2]any{rs[0].Changed, rs[0].Version}, [2]any{true, uint64(1)}, "new doc result")
		mustEqual(t, [3]any{rs[1].Err, rs[1].Changed, rs[1].Seq}, [3]any{nil, false, int64(0)}, "unchanged result")
		mustIs(t, rs[2].Err, store.ErrNotFound, "delete missing")
		mustIs(t, rs[3].Err, store.ErrQuota, "quota")
		mustIs(t, rs[4].Err, store.ErrSuspended, "suspended")
		mustEqual(t, [2]any{rs[5].Err, rs[5].Version}, [2]any{nil, uint64(2)}, "second write to a doc of the same batch")
		mustEqual(t, [2]any{rs[6].Err, rs[6].Version}, [2]any{nil, uint64(2)}, "delete in batch")
		if !(rs[0].Seq < rs[5].Seq && rs[5].Seq < rs[6].Seq) {
			t.Fatalf("batch seqs %d, %d, %d not ascending in write order", rs[0].Seq, rs[5].Seq, rs[6].Seq)
		}
		d, err := s.GetDocument(ctx, "acme", "app1", "new1")
		mustOK(t, err, "GetDocument new1")
		mustEqual(t, string(d.Body), `{"n":2}`, "last write of the batch wins")
		evs, _ := s.ReadOutbox(ctx, "acme", 0, 100)
		mustEqual(t, len(evs), 4, "events: 1 before the batch + 3 in it")
		empty, err := s.WriteDocuments(ctx, nil)
		mustOK(t, err, "empty batch")
		mustEqual(t, len(empty), 0, "empty batch results")
	}},
	{"QuotasWithinOneBatch", func(t *testing.T, s store.Store) {
		docEnv(t, s)
		lim := func(w store.DocumentWrite) store.DocumentWrite {
			w.DocLimit, w.OutboxLimit = 2, 5
			return w
		}
		rs, err := s.WriteDocuments(ctx, []store.DocumentWrite{
			lim(docWrite("acme", "app1", "d1", `{}`, t0)),
			lim(docWrite("acme", "app1", "d2", `{}`, t0)),
			lim(docWrite("acme", "app1", "d3", `{}`, t0)), // third live document
			lim(docDelete("acme", "app1", "d1", t0)),      // frees a slot
			lim(docWrite("acme", "app1", "d3", `{}`, t0)),
			lim(docWrite("acme", "app1", "d2", `{"x":1}`, t0)), // fifth event
			lim(docWrite("acme", "app1", "d2", `{"x":2}`, t0)), // sixth: outbox full
		})
		mustOK(t, err, "WriteDocuments")
		wantErr := []error{nil, nil, store.ErrQuota, nil, nil, nil, store.ErrOutboxFull}
		for i, r := range rs {
			if wantErr[i] == nil {
				mustOK(t, r.Err, "write %d", i)
			} else {
				mustIs(t, r.Err, wantErr[i], "write %d", i)
			}
		}
		// The counts carried over to the next batch agree.
		next := lim(docWrite("acme", "app1", "d4", `{}`, t0))
		next.OutboxLimit = 0
		mustIs(t, write1(t, s, next).Err, store.ErrQuota, "still two live documents")
		next = lim(docWrite("acme", "app1", "d2", `{"x":3}`, t0))
		mustIs(t, write1(t, s, next).Err, store.ErrOutboxFull, "still five events")
		d, _ := s.OutboxDepth(ctx)
		mustEqual(t, d, int64(5), "OutboxDepth")
	}},
	{"AppendEvent", func(t *testing.T, s store.Store) {
		_, err := s.AppendEvent(ctx, model.CdcEvent{OrgID: "nope"})
		mustIs(t, err, store.ErrOrgNotFound, "missing org")
		docEnv(t, s)
		r := write1(t, s, docWrite("acme", "app1", "d1", `{}`, t0))
		ev := model.CdcEvent{OrgID: "acme", AppID: "app1", DocumentID: "probe", ChangeHash: "0123456789abcdef",
			ActorID: "loadtest", TimestampMs: t0 + 5, Patches: json.RawMessage(`{"x":1}`), Op: model.OpTest}
		seq, err := s.AppendEvent(ctx, ev)
		mustOK(t, err, "AppendEvent")
		if seq <= r.Seq {
			t.Fatalf("AppendEvent seq %d not after %d", seq, r.Seq)
		}
		evs, _ := s.ReadOutbox(ctx, "acme", r.Seq, 10)
		if len(evs) != 1 {
			t.Fatalf("%d events after the document's, want 1", len(evs))
		}
		mustEqual(t, evs[0].Seq, seq, "seq")
		mustJSON(t, evs[0].Event.Patches, `{"x":1}`, "patches")
		evs[0].Event.Patches = ev.Patches
		mustEqual(t, evs[0].Event, ev, "event round trip")
		_, err = s.GetDocument(ctx, "acme", "app1", "probe")
		mustIs(t, err, store.ErrNotFound, "AppendEvent changes no document")
	}},
}

// mustJSON compares JSON values ignoring formatting.
func mustJSON(t testing.TB, got json.RawMessage, want string, what string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: invalid JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad expectation %q: %v", what, want, err)
	}
	mustEqual(t, g, w, "%s", what)
}
