package sqlite

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/storetest"
)

// TestDocCacheMatchesUncached runs the same document writes, interleaved
// with the other writes that touch documents and their counters, on a store
// with the writer's documents cache and on one that reads every row: every
// result and the final rows must be the same.
func TestDocCacheMatchesUncached(t *testing.T) {
	cached := openAt(t, filepath.Join(t.TempDir(), "cached.db"))
	plain := openAt(t, filepath.Join(t.TempDir(), "plain.db"))
	defer cached.Close()
	defer plain.Close()
	plain.noDocCache = true
	apps := [][2]string{{"o1", "f1"}, {"o1", "f2"}, {"o2", "f1"}}
	for _, s := range []*Store{cached, plain} {
		for _, org := range []string{"o1", "o2"} {
			if err := s.CreateOrg(bg, model.Organization{OrgID: org, Quotas: model.DefaultQuotas()}); err != nil {
				t.Fatal(err)
			}
		}
		for _, a := range apps {
			if err := s.CreateFormation(bg, model.Formation{OrgID: a[0], AppID: a[1], Status: model.FormationActive}, []byte("g")); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	bodies := []string{`{"a":1}`, `{"a":2}`, `{"b":[1,2]}`}
	ts := uint64(1_000)
	for round := 0; round < 60; round++ {
		var writes []store.DocumentWrite
		for n := 1 + r.IntN(20); n > 0; n-- {
			a := apps[r.IntN(len(apps))]
			ts++
			w := store.DocumentWrite{OrgID: a[0], AppID: a[1], DocID: fmt.Sprintf("d%d", r.IntN(10)), ActorID: "x",
				TimestampMs: ts, DocLimit: 8, OutboxLimit: 150}
			if r.IntN(5) == 0 {
				w.Delete = true
			} else {
				w.Body = []byte(bodies[r.IntN(len(bodies))])
			}
			writes = append(writes, w)
		}
		got, err1 := cached.WriteDocuments(bg, writes)
		want, err2 := plain.WriteDocuments(bg, writes)
		if err1 != nil || err2 != nil {
			t.Fatalf("round %d: %v / %v", round, err1, err2)
		}
		for i := range got {
			g, w := got[i], want[i]
			if storetest.ErrClass(g.Err) != storetest.ErrClass(w.Err) || g.Changed != w.Changed || g.Version != w.Version ||
				g.ChangeHash != w.ChangeHash || g.Seq != w.Seq {
				t.Fatalf("round %d write %d: cached %+v, uncached %+v", round, i, g, w)
			}
		}
		// Other writes between rounds, the same on both.
		for _, s := range []*Store{cached, plain} {
			var err error
			switch round % 7 {
			case 1:
				_, err = s.SetFormationStatus(bg, "o1", "f1", model.FormationSuspended)
			case 2:
				_, err = s.SetFormationStatus(bg, "o1", "f1", model.FormationActive)
			case 3:
				if err = s.DeleteFormation(bg, "o1", "f2"); err == nil {
					err = s.CreateFormation(bg, model.Formation{OrgID: "o1", AppID: "f2", Status: model.FormationActive}, []byte("g"))
				}
			case 4:
				_, err = s.Prune(bg, ts-5)
			case 5:
				_, err = s.AppendEvent(bg, model.CdcEvent{OrgID: "o2", AppID: "f1", DocumentID: "marker", Op: "replay"})
			case 6:
				err = s.Advance(bg, "o1", "sink", 3, 1, nil, "", ts)
			}
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	snap := func(s *Store) string {
		return snapshot(t, s,
			`SELECT group_concat(org_id || '/' || app_id || '/' || doc_id || '@' || version || ':' || coalesce(body, '-') || ':' || change_hash, ' ')
				FROM (SELECT * FROM documents ORDER BY 1, 2, 3)`,
			`SELECT group_concat(org_id || '/' || app_id || '=' || doc_count, ' ') FROM (SELECT * FROM formations ORDER BY 1, 2)`,
			`SELECT group_concat(org_id || '=' || outbox_rows, ' ') FROM (SELECT * FROM orgs ORDER BY 1)`,
			`SELECT count(*) || ' ' || coalesce(max(seq), 0) FROM outbox`)
	}
	if a, b := snap(cached), snap(plain); a != b {
		t.Fatalf("state differs:\ncached:\n%s\nuncached:\n%s", a, b)
	}
}
