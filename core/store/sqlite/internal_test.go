package sqlite

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

var bg = context.Background()

func openAt(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(bg, path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func migrationCount(t testing.TB) int {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded migrations: %v", err)
	}
	return len(names)
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	want := migrationCount(t)
	for i := 0; i < 3; i++ {
		s := openAt(t, path)
		v, err := s.SchemaVersion(bg)
		if err != nil || v != want {
			t.Fatalf("open %d: schema version %d (%v), want %d", i, v, err, want)
		}
		var rows int
		if err := s.r.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != want {
			t.Fatalf("open %d: %d schema_migrations rows (%v), want %d", i, rows, err, want)
		}
		if i == 0 {
			if err := s.CreateOrg(bg, model.Organization{OrgID: "acme", Quotas: model.DefaultQuotas()}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.GetOrg(bg, "acme"); err != nil {
			t.Fatalf("open %d: org lost: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrationBackfillsRateBuckets re-runs migration 4 on a database that
// already has audit rows, as an upgrade from schema 3 would.
func TestMigrationBackfillsRateBuckets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openAt(t, path)
	if err := s.CreateOrg(bg, model.Organization{OrgID: "acme", Quotas: model.DefaultQuotas()}); err != nil {
		t.Fatal(err)
	}
	const now = 10 * hourMs
	for i := 0; i < 5; i++ {
		if err := s.AppendAudit(bg, model.AuditEntry{AuditID: fmt.Sprint(i), OrgID: "acme", AppID: "a",
			Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}}, TimestampMs: now - uint64(i)*minuteMs}); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{`DROP TABLE enrollment_rate`, `DELETE FROM schema_migrations WHERE version = 4`} {
		if _, err := s.wc.ExecContext(bg, q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openAt(t, path)
	defer s.Close()
	var n int64
	if err := s.r.QueryRow(`SELECT sum(n) FROM enrollment_rate WHERE org_id = 'acme'`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("backfilled buckets hold %d approvals (%v), want 5", n, err)
	}
	tx := store.EnrollTx{OrgID: "acme", AppID: "a", NowMs: now, RateLimit: 5}
	if err := s.Enroll(bg, tx); err == nil {
		t.Fatal("enroll passed a full window after the backfill")
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openAt(t, path)
	if err := s.CreateOrg(bg, model.Organization{OrgID: "acme", Quotas: model.DefaultQuotas()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFormation(bg, model.Formation{OrgID: "acme", AppID: "app1", Status: model.FormationActive}, []byte("gen")); err != nil {
		t.Fatal(err)
	}
	rs, err := s.WriteDocuments(bg, []store.DocumentWrite{{OrgID: "acme", AppID: "app1", DocID: "d", Body: []byte(`{"a":1}`), DocLimit: 10}})
	if err != nil || rs[0].Err != nil {
		t.Fatal(err, rs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOrg(bg, model.Organization{OrgID: "late"}); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openAt(t, path)
	defer s.Close()
	if g, err := s.GetGenesis(bg, "acme", "app1"); err != nil || string(g) != "gen" {
		t.Fatalf("genesis after reopen: %q %v", g, err)
	}
	d, err := s.GetDocument(bg, "acme", "app1", "d")
	if err != nil || d.Version != 1 || string(d.Body) != `{"a":1}` {
		t.Fatalf("document after reopen: %+v %v", d, err)
	}
	seq, err := s.AppendEvent(bg, model.CdcEvent{OrgID: "acme"})
	if err != nil || seq != rs[0].Seq+1 {
		t.Fatalf("seq after reopen = %d (%v), want %d", seq, err, rs[0].Seq+1)
	}
}

func TestPragmasOnEveryConnection(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"), WithReaders(2))
	defer s.Close()
	check := func(label string, q func(string) (string, error)) {
		for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "2"} {
			got, err := q("PRAGMA " + pragma)
			if err != nil || got != want {
				t.Errorf("%s: %s = %q (%v), want %q", label, pragma, got, err, want)
			}
		}
	}
	check("writer", func(q string) (v string, err error) { return v, s.wc.QueryRowContext(bg, q).Scan(&v) })
	check("reader", func(q string) (v string, err error) { return v, s.r.QueryRow(q).Scan(&v) })
	var qo string
	if err := s.r.QueryRow(`PRAGMA query_only`).Scan(&qo); err != nil || qo != "1" {
		t.Errorf("reader query_only = %q (%v)", qo, err)
	}
}

// TestRateBucketsMatchIndexCount checks the bucketed count equals a plain
// count over random approval times and window positions.
func TestRateBucketsMatchIndexCount(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	if err := s.CreateOrg(bg, model.Organization{OrgID: "acme", Quotas: model.DefaultQuotas()}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const base = 100 * hourMs
	seedAudit(t, s, rng, base)
	// Ascending, as the clock moves: the limiter drops buckets older than
	// two hours before the window it is asked about.
	sinces := make([]int64, 200)
	for i := range sinces {
		sinces[i] = int64(base) + rng.Int64N(3*hourMs)
		if i%10 == 0 {
			sinces[i] -= sinces[i] % minuteMs // on a bucket boundary
		}
	}
	slices.Sort(sinces)
	for _, since := range sinces {
		var fast, slow int64
		err := s.write(bg, func(tx *txn) error {
			var err error
			if fast, err = tx.approvalsSince("acme", since, 1<<40); err != nil {
				return err
			}
			return tx.row(`SELECT count(*) FROM enrollment_audit WHERE org_id = 'acme' AND approved = 1 AND timestamp_ms >= ?`, since).Scan(&slow)
		})
		if err != nil {
			t.Fatal(err)
		}
		if fast != slow {
			t.Fatalf("since %d: buckets say %d, audit rows say %d", since, fast, slow)
		}
	}
}

// TestCancelledWriteLeavesStoreUsable: a write whose context is cancelled
// fails, rolls back, and the writer connection keeps working.
func TestCancelledWriteLeavesStoreUsable(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	ctx, cancel := context.WithCancel(bg)
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`INSERT INTO orgs(org_id, display_name, max_formations, max_peers_per_formation,
			max_documents_per_formation, max_cdc_sinks, max_enrollments_per_hour, created_at) VALUES ('x','',1,1,1,1,1,0)`); err != nil {
			return err
		}
		cancel()
		_, err := tx.exec(`UPDATE orgs SET display_name = 'y' WHERE org_id = 'x'`)
		return err
	})
	if err == nil {
		t.Fatal("write with a cancelled context succeeded")
	}
	if _, err := s.GetOrg(bg, "x"); err == nil {
		t.Fatal("cancelled write was committed")
	}
	if err := s.CreateOrg(bg, model.Organization{OrgID: "x"}); err != nil {
		t.Fatalf("write after a cancelled one: %v", err)
	}
	if err := s.CreateOrg(ctx, model.Organization{OrgID: "z"}); err == nil {
		t.Fatal("write with an already-cancelled context succeeded")
	}
}

// TestPruneInChunks drains more rows than one chunk, across two orgs, and
// leaves exactly the rows a sink still needs.
func TestPruneInChunks(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"), func(c *config) { c.pruneChunk = 7 })
	defer s.Close()
	for _, o := range []string{"a", "b"} {
		if err := s.CreateOrg(bg, model.Organization{OrgID: o, Quotas: model.DefaultQuotas()}); err != nil {
			t.Fatal(err)
		}
	}
	var aSeqs []int64
	for i := 0; i < 50; i++ {
		for _, o := range []string{"a", "b"} {
			seq, err := s.AppendEvent(bg, model.CdcEvent{OrgID: o, TimestampMs: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if o == "a" {
				aSeqs = append(aSeqs, seq)
			}
		}
	}
	if err := s.CreateSink(bg, model.CdcSinkConfig{SinkID: "k", OrgID: "a", SinkType: model.CdcSinkType{Kafka: &model.KafkaSink{Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(bg, "a", "k", aSeqs[39], 40, nil, "", 2000); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(bg, 2000)
	if err != nil || n != 40+50 {
		t.Fatalf("Prune removed %d (%v), want 90", n, err)
	}
	evs, err := s.ReadOutbox(bg, "a", 0, 100)
	if err != nil || len(evs) != 10 || evs[0].Seq != aSeqs[40] {
		t.Fatalf("org a keeps %d events from %v (%v), want 10 from %d", len(evs), evs, err, aSeqs[40])
	}
	if d, _ := s.OutboxDepth(bg); d != 10 {
		t.Fatalf("OutboxDepth %d, want 10", d)
	}
}

// seedAudit writes 3,000 audit entries for acme/a at random times in the
// three hours from base, a quarter of them denials, in one transaction.
func seedAudit(t *testing.T, s *Store, rng *rand.Rand, base uint64) {
	t.Helper()
	err := s.write(bg, func(tx *txn) error {
		for i := 0; i < 3000; i++ {
			e := model.AuditEntry{AuditID: fmt.Sprint(i), OrgID: "acme", AppID: "a", TimestampMs: base + rng.Uint64N(3*hourMs)}
			if rng.IntN(4) == 0 {
				e.Decision.Denied = &model.Denial{Reason: "no"}
			} else {
				e.Decision.Approved = &model.Approval{Tier: model.TierEndpoint}
			}
			if err := tx.appendAudit(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
