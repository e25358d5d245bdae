package storetest

import (
	"fmt"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// seqsOf lists the events' seqs.
func seqsOf(evs []store.OutboxEvent) []int64 {
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

// interleave writes n documents to each org alternately and returns each
// org's seqs in write order.
func interleave(t testing.TB, s store.Store, orgs []string, n int, ts uint64) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for i := 0; i < n; i++ {
		for _, o := range orgs {
			r := write1(t, s, docWrite(o, "app1", fmt.Sprintf("d%d", i), `{"i":1}`, ts))
			mustOK(t, r.Err, "write")
			out[o] = append(out[o], r.Seq)
		}
	}
	return out
}

func deadLetter(sinkID string, seq int64, msg string) store.DeadLetter {
	return store.DeadLetter{SinkID: sinkID, Seq: seq, Error: msg, Attempts: 4,
		Event: model.CdcEvent{OrgID: "acme", AppID: "app1", DocumentID: fmt.Sprintf("d%d", seq), ChangeHash: "00000000000000aa",
			ActorID: "x", TimestampMs: t0, Patches: []byte(`{"k":1}`), Op: model.OpUpsert}}
}

var outboxTests = []subtest{
	{"ReadAfterCursorPerOrg", func(t *testing.T, s store.Store) {
		for _, o := range []string{"acme", "beta"} {
			mkOrg(t, s, o)
			mkFormation(t, s, o, "app1")
		}
		mustEqual(t, lastSeq(t, s, "acme"), int64(0), "LastSeq of an empty outbox")
		seqs := interleave(t, s, []string{"acme", "beta"}, 5, t0)
		a := seqs["acme"]
		evs, err := s.ReadOutbox(ctx, "acme", 0, 100)
		mustOK(t, err, "ReadOutbox")
		mustEqual(t, seqsOf(evs), a, "all of acme's events, ascending, none of beta's")
		evs, _ = s.ReadOutbox(ctx, "acme", a[1], 2)
		mustEqual(t, seqsOf(evs), a[2:4], "after a cursor, limited")
		// A cursor need not be one of the org's seqs (seqs may be global or
		// per org); everything above it comes back.
		evs, _ = s.ReadOutbox(ctx, "acme", a[1]+1, 100)
		above := []int64{}
		for _, q := range a {
			if q > a[1]+1 {
				above = append(above, q)
			}
		}
		mustEqual(t, seqsOf(evs), above, "after a cursor between two seqs")
		evs, _ = s.ReadOutbox(ctx, "acme", a[4], 100)
		mustEqual(t, len(evs), 0, "nothing after the last")
		evs, _ = s.ReadOutbox(ctx, "acme", 0, 0)
		mustEqual(t, len(evs), 0, "limit 0")
		mustEqual(t, lastSeq(t, s, "acme"), a[4], "LastSeq")
		n, err := s.CountAfter(ctx, "acme", a[1])
		mustOK(t, err, "CountAfter")
		mustEqual(t, n, int64(3), "CountAfter")
		n, _ = s.CountAfter(ctx, "nope", 0)
		mustEqual(t, n, int64(0), "CountAfter unknown org")
		d, err := s.OutboxDepth(ctx)
		mustOK(t, err, "OutboxDepth")
		mustEqual(t, d, int64(10), "OutboxDepth")
	}},
	{"ProgressAdvanceNeverBackward", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s1")), "CreateSink")
		p, err := s.GetProgress(ctx, "s1")
		mustOK(t, err, "GetProgress of a new sink")
		mustEqual(t, p, store.SinkProgress{}, "new sink progress")
		p, err = s.GetProgress(ctx, "never-seen")
		mustOK(t, err, "GetProgress of an unknown sink")
		mustEqual(t, p.Cursor, int64(0), "unknown sink cursor")

		mustOK(t, s.Advance(ctx, "acme", "s1", 5, 5, nil, "", t0+10), "Advance to 5")
		mustOK(t, s.Advance(ctx, "acme", "s1", 3, 2, []store.DeadLetter{deadLetter("s1", 3, "HTTP 500")}, "HTTP 500", t0+20), "Advance back to 3")
		p, _ = s.GetProgress(ctx, "s1")
		mustEqual(t, p, store.SinkProgress{Cursor: 5, Delivered: 7, DeadLettered: 1, LastError: "HTTP 500", LastDeliveredAt: t0 + 20}, "cursor stays at 5")
		mustOK(t, s.Advance(ctx, "acme", "s1", 9, 0, nil, "", t0+30), "Advance to 9 delivering nothing")
		p, _ = s.GetProgress(ctx, "s1")
		mustEqual(t, p, store.SinkProgress{Cursor: 9, Delivered: 7, DeadLettered: 1, LastError: "", LastDeliveredAt: t0 + 20}, "after advancing with nothing delivered")

		mustOK(t, s.SetLastError(ctx, "s1", "connection refused"), "SetLastError")
		p, _ = s.GetProgress(ctx, "s1")
		mustEqual(t, [2]any{p.Cursor, p.LastError}, [2]any{int64(9), "connection refused"}, "SetLastError keeps the cursor")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s2")), "CreateSink s2")
		mustOK(t, s.SetLastError(ctx, "s2", "down"), "SetLastError on a sink without progress")
		p, _ = s.GetProgress(ctx, "s2")
		mustEqual(t, p, store.SinkProgress{LastError: "down"}, "progress of s2")
	}},
	{"DeadLettersListAndTake", func(t *testing.T, s store.Store) {
		mkOrg(t, s, "acme")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s1")), "CreateSink")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s2")), "CreateSink")
		mustOK(t, s.Advance(ctx, "acme", "s1", 2, 0, []store.DeadLetter{deadLetter("s1", 1, "e1"), deadLetter("s1", 2, "e2")}, "e2", t0), "Advance")
		mustOK(t, s.Advance(ctx, "acme", "s2", 2, 0, []store.DeadLetter{deadLetter("s2", 1, "other")}, "", t0), "Advance s2")
		mustOK(t, s.Advance(ctx, "acme", "s1", 3, 0, []store.DeadLetter{deadLetter("s1", 3, "e3")}, "", t0+1), "Advance")
		dl, err := s.ListDeadLetters(ctx, "acme", "s1", 100)
		mustOK(t, err, "ListDeadLetters")
		if len(dl) != 3 {
			t.Fatalf("%d dead letters, want 3", len(dl))
		}
		for i, d := range dl {
			mustEqual(t, [4]any{d.SinkID, d.Seq, d.Error, d.Attempts}, [4]any{"s1", int64(i + 1), fmt.Sprintf("e%d", i+1), 4}, "dead letter %d", i)
			mustEqual(t, d.Replayed, false, "not yet replayed")
			if i > 0 && d.ID <= dl[i-1].ID {
				t.Fatalf("dead letter ids not ascending: %d then %d", dl[i-1].ID, d.ID)
			}
			want := deadLetter("s1", int64(i+1), "")
			mustJSON(t, d.Event.Patches, `{"k":1}`, "dead letter patches")
			d.Event.Patches = want.Event.Patches
			mustEqual(t, d.Event, want.Event, "dead letter event %d", i)
			mustJSON(t, d.RawEvent, string(mustMarshal(t, want.Event)), "dead letter raw event")
		}
		mustEqual(t, dl[0].CreatedAt, t0, "created_at defaults to the Advance time")
		got, _ := s.ListDeadLetters(ctx, "acme", "s1", 2)
		mustEqual(t, len(got), 2, "limit")
		got, _ = s.ListDeadLetters(ctx, "acme", "s1", 0)
		mustEqual(t, len(got), 0, "limit 0")
		p, _ := s.GetProgress(ctx, "s1")
		mustEqual(t, p.DeadLettered, int64(3), "dead_lettered count")

		// A replay that got the first two letters through and the third
		// dead-lettered again: one AdvanceReplay records all of it.
		mustOK(t, s.AdvanceReplay(ctx, "acme", "s1", 3, 2, dl[2].ID, []store.DeadLetter{deadLetter("s1", 3, "e3 again")}, "e3 again", t0+5), "AdvanceReplay")
		got, _ = s.ListDeadLetters(ctx, "acme", "s1", 100)
		mustEqual(t, len(got), 4, "letters after the replay")
		for i, d := range got[:3] {
			mustEqual(t, [2]any{d.ID, d.Replayed}, [2]any{dl[i].ID, true}, "replayed letter %d", i)
		}
		mustEqual(t, [3]any{got[3].Replayed, got[3].Error, got[3].Seq}, [3]any{false, "e3 again", int64(3)}, "the letter that failed again")
		p, _ = s.GetProgress(ctx, "s1")
		mustEqual(t, [2]int64{p.DeadLettered, p.Delivered}, [2]int64{4, 2}, "counts after the replay")
		got, _ = s.ListDeadLetters(ctx, "acme", "s2", 100)
		mustEqual(t, [2]any{len(got), got[0].Replayed}, [2]any{1, false}, "other sink untouched")

		// replayedThrough bounds what is marked: a letter recorded after the
		// replay loaded its letters stays pending.
		got, _ = s.ListDeadLetters(ctx, "acme", "s1", 100)
		again := got[3].ID
		mustOK(t, s.Advance(ctx, "acme", "s1", 4, 0, []store.DeadLetter{deadLetter("s1", 4, "e4")}, "e4", t0+6), "Advance")
		mustOK(t, s.AdvanceReplay(ctx, "acme", "s1", 4, 1, again, nil, "", t0+7), "AdvanceReplay through the first")
		got, _ = s.ListDeadLetters(ctx, "acme", "s1", 100)
		mustEqual(t, len(got), 5, "letters")
		mustEqual(t, [2]bool{got[3].Replayed, got[4].Replayed}, [2]bool{true, false}, "only letters up to replayedThrough are marked")
		mustEqual(t, got[4].Seq, int64(4), "the later letter")
	}},
	{"Prune", func(t *testing.T, s store.Store) {
		for _, o := range []string{"acme", "beta", "solo"} {
			mkOrg(t, s, o)
			mkFormation(t, s, o, "app1")
		}
		old := interleave(t, s, []string{"acme", "beta", "solo"}, 4, t0)
		young := write1(t, s, docWrite("acme", "app1", "young", `{}`, t0+hour))
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s1")), "sink s1")
		mustOK(t, s.CreateSink(ctx, natsSink("acme", "s2")), "sink s2")
		mustOK(t, s.CreateSink(ctx, natsSink("beta", "b1")), "sink b1")
		a := append(append([]int64{}, old["acme"]...), young.Seq)
		// acme: s1 passed everything, s2 only the first two events.
		mustOK(t, s.Advance(ctx, "acme", "s1", a[4], 5, nil, "", t0), "Advance s1")
		mustOK(t, s.Advance(ctx, "acme", "s2", a[1], 2, nil, "", t0), "Advance s2")
		// beta's sink has not delivered anything (no progress row).
		// solo has no sinks: nobody is waiting for its events.
		n, err := s.Prune(ctx, t0+1)
		mustOK(t, err, "Prune")
		evs, _ := s.ReadOutbox(ctx, "acme", 0, 100)
		mustEqual(t, seqsOf(evs), a[2:], "acme keeps what s2 has not passed")
		evs, _ = s.ReadOutbox(ctx, "beta", 0, 100)
		mustEqual(t, seqsOf(evs), old["beta"], "beta keeps everything")
		evs, _ = s.ReadOutbox(ctx, "solo", 0, 100)
		mustEqual(t, len(evs), 0, "solo pruned")
		mustEqual(t, n, int64(2+0+4), "removed rows")
		d, _ := s.OutboxDepth(ctx)
		mustEqual(t, d, int64(3+4), "depth after prune")
		// Once s2 catches up, only the young event stays.
		mustOK(t, s.Advance(ctx, "acme", "s2", a[4], 3, nil, "", t0), "Advance s2")
		n, _ = s.Prune(ctx, t0+1)
		mustEqual(t, n, int64(2), "second prune")
		evs, _ = s.ReadOutbox(ctx, "acme", 0, 100)
		mustEqual(t, seqsOf(evs), a[4:], "the event younger than the retention stays")
		// New events never reuse pruned seqs.
		r := write1(t, s, docWrite("solo", "app1", "new", `{}`, t0))
		if r.Seq <= old["solo"][3] {
			t.Fatalf("seq %d reused after prune (last was %d)", r.Seq, old["solo"][3])
		}
	}},
}
