package sqlite

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// The event assembled around a change hash is MarshalEvent's.
func TestPreparedEventMatchesMarshalEvent(t *testing.T) {
	for _, w := range []store.DocumentWrite{
		{OrgID: "acme", AppID: "app", DocID: "d1", ActorID: "api", Body: []byte(`{"a":1}`), TimestampMs: 7},
		{OrgID: "acme", AppID: "app", DocID: "d1", ActorID: "api", Delete: true, TimestampMs: 8},
		{OrgID: `o"q`, AppID: "a<&>", DocID: "d\u2028", ActorID: "é", Body: []byte(`{"change_hash":"x","b":"<&>"}`), TimestampMs: 9},
	} {
		p := prepareDoc(&w)
		if p.err != nil {
			t.Fatalf("prepareDoc(%+v): %v", w, p.err)
		}
		ev := model.CdcEvent{OrgID: w.OrgID, AppID: w.AppID, DocumentID: w.DocID, ChangeHash: "0123456789abcdef",
			ActorID: w.ActorID, TimestampMs: w.TimestampMs, Patches: json.RawMessage(w.Body), Op: model.OpUpsert}
		if w.Delete {
			ev.Patches, ev.Op = deletedPatch, model.OpDelete
		}
		want, _ := model.MarshalEvent(ev)
		if got := p.event("0123456789abcdef"); !bytes.Equal(got, want) {
			t.Errorf("event %s, want %s", got, want)
		}
	}
	bad := store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: "d1", Body: []byte(`{"a":`)}
	if p := prepareDoc(&bad); p.err == nil {
		t.Errorf("invalid body: no error")
	}
}

// chunks covers every row once, in order, with power-of-two sizes.
func TestChunks(t *testing.T) {
	for n := 0; n <= 300; n++ {
		next := 0
		_ = chunks(n, func(off, size int) error {
			if off != next || size&(size-1) != 0 || size > maxChunk {
				t.Fatalf("n=%d: chunk (%d,%d) after %d", n, off, size, next)
			}
			next = off + size
			return nil
		})
		if next != n {
			t.Fatalf("n=%d: covered %d", n, next)
		}
	}
}
