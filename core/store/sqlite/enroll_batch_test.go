package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/storetest"
)

// enrollSnapshot is everything Enroll writes.
func enrollSnapshot(t *testing.T, s *Store) string {
	t.Helper()
	return snapshot(t, s,
		`SELECT group_concat(org_id || '/' || token_id || '=' || uses, ' ') FROM (SELECT * FROM enrollment_tokens ORDER BY 1, 2)`,
		`SELECT group_concat(org_id || '/' || app_id || '=' || peer_count, ' ') FROM (SELECT * FROM formations ORDER BY 1, 2)`,
		`SELECT group_concat(org_id || '@' || minute || '=' || n, ' ') FROM (SELECT * FROM enrollment_rate ORDER BY 1, 2)`,
		`SELECT group_concat(audit_id || ':' || coalesce(serial, '-'), ' ') FROM (SELECT * FROM enrollment_audit ORDER BY audit_id)`,
		`SELECT group_concat(serial || ':' || app_id, ' ') FROM (SELECT * FROM certificates ORDER BY serial)`)
}

// snapshot runs single-value queries (NULL reads as empty) and joins their
// answers, one per line, for comparing two stores.
func snapshot(t *testing.T, s *Store, queries ...string) string {
	t.Helper()
	var out string
	for _, q := range queries {
		var v *string
		if err := s.r.QueryRow(q).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != nil {
			out += *v
		}
		out += "\n"
	}
	return out
}

// TestEnrollBatchMatchesOneByOne runs the same random enrollments as groups
// (decided together by enrollBatch) on one store and one at a time on
// another: every result and every row written must be the same.
func TestEnrollBatchMatchesOneByOne(t *testing.T) {
	grouped := openAt(t, filepath.Join(t.TempDir(), "grouped.db"))
	single := openAt(t, filepath.Join(t.TempDir(), "single.db"))
	defer grouped.Close()
	defer single.Close()
	storetest.SeedEnrollMix(t, grouped)
	storetest.SeedEnrollMix(t, single)

	r := rand.New(rand.NewPCG(1, 2))
	now := uint64(10 * hourMs)
	var batched int
	for g, i := 0, 0; g < 12; g++ {
		n := 1 + r.IntN(40)
		var ops []*writeOp
		var want []error
		for k := 0; k < n; k++ {
			tx := storetest.RandomEnroll(r, i, now)
			i++
			eop, fn := grouped.enrollFn(tx)
			ops = append(ops, &writeOp{ctx: bg, fn: fn, enroll: eop, done: make(chan error, 1)})
			_, fn1 := single.enrollFn(tx)
			single.wmu.Lock()
			want = append(want, single.runOne(&writeOp{ctx: bg, fn: fn1}))
			single.wmu.Unlock()
		}
		before := grouped.enrollBatches
		grouped.commitGroup(ops)
		if grouped.enrollBatches > before {
			batched++
		}
		for k, o := range ops {
			if got, w := storetest.ErrClass(o.err), storetest.ErrClass(want[k]); got != w {
				t.Fatalf("group %d op %d: grouped %q, one by one %q", g, k, got, w)
			}
		}
		now += 7_000 // crosses minute boundaries now and then
		// Control-plane writes between groups must reach the next group's
		// decisions although earlier groups' checks are cached.
		for _, st := range []*Store{grouped, single} {
			controlChange(t, st, g)
		}
	}
	if batched == 0 {
		t.Fatal("no group was decided by enrollBatch")
	}
	if a, b := enrollSnapshot(t, grouped), enrollSnapshot(t, single); a != b {
		t.Fatalf("state differs:\ngrouped:\n%s\none by one:\n%s", a, b)
	}
}

// controlChange makes the g-th change to what enrollments check.
func controlChange(t *testing.T, s *Store, g int) {
	t.Helper()
	var err error
	switch g % 6 {
	case 0:
		_, err = s.SetFormationStatus(bg, "a", "f1", model.FormationSuspended)
	case 1:
		_, err = s.SetFormationStatus(bg, "a", "f1", model.FormationActive)
	case 2:
		q := model.DefaultQuotas()
		q.MaxEnrollmentsPerHour, q.MaxPeersPerFormation = 20, 14
		err = s.UpdateOrg(bg, model.Organization{OrgID: "a", DisplayName: "a", Quotas: q})
	case 3:
		var serial string
		if qerr := s.r.QueryRow(`SELECT serial FROM certificates WHERE org_id = 'a' AND revoked = 0 ORDER BY serial LIMIT 1`).Scan(&serial); qerr == nil {
			_, err = s.RevokeCertificate(bg, "a", "f1", serial, 5)
		}
	case 4:
		_, err = s.RevokeToken(bg, "a", "peat_b")
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrAlreadyRevoked) {
			err = nil
		}
	case 5:
		_, err = s.wc.ExecContext(bg, `UPDATE enrollment_tokens SET max_uses = max_uses + 3 WHERE token_id = 'peat_five'`)
	}
	if err != nil {
		t.Fatalf("change %d: %v", g, err)
	}
}

// A commit by another process (here another Store on the same file) drops
// the writer's cached checks.
func TestEnrollCacheSeesOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s := openAt(t, path)
	defer s.Close()
	storetest.SeedEnrollMix(t, s)
	other := openAt(t, path)
	defer other.Close()
	n := 0
	group := func(token string) []error {
		var ops []*writeOp
		for i := 0; i < 3; i++ {
			n++
			tx := store.EnrollTx{OrgID: "b", AppID: "f1", NowMs: 10 * hourMs, RateLimit: 1000, PeerLimit: 1000, TokenID: token,
				Audit: model.AuditEntry{AuditID: fmt.Sprintf("a%d", n), Decision: model.Decision{Approved: &model.Approval{}},
					TimestampMs: 10 * hourMs}}
			eop, fn := s.enrollFn(tx)
			ops = append(ops, &writeOp{ctx: bg, fn: fn, enroll: eop, done: make(chan error, 1)})
		}
		s.commitGroup(ops)
		var out []error
		for _, o := range ops {
			out = append(out, o.err)
		}
		return out
	}
	for _, err := range group("peat_b") {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.RevokeToken(bg, "b", "peat_b"); err != nil {
		t.Fatal(err)
	}
	batches := s.enrollBatches
	for _, err := range group("peat_b") {
		if !errors.Is(err, store.ErrTokenInvalid) {
			t.Fatalf("token revoked by another process still accepted: %v", err)
		}
	}
	if s.enrollBatches != batches+1 {
		t.Fatal("the second group was not decided by enrollBatch")
	}
}

// A cancelled caller in a batch is skipped; the others are written.
func TestEnrollBatchSkipsCancelled(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	storetest.SeedEnrollMix(t, s)
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	var ops []*writeOp
	for i := 0; i < 4; i++ {
		tx := store.EnrollTx{OrgID: "b", AppID: "f1", NowMs: 10 * hourMs, RateLimit: 1000, PeerLimit: 1000,
			Audit: model.AuditEntry{AuditID: fmt.Sprintf("x%d", i), Decision: model.Decision{Approved: &model.Approval{}},
				TimestampMs: 10 * hourMs}}
		eop, fn := s.enrollFn(tx)
		ctx := bg
		if i == 1 {
			ctx = cancelled
		}
		ops = append(ops, &writeOp{ctx: ctx, fn: fn, enroll: eop, done: make(chan error, 1)})
	}
	s.commitGroup(ops)
	if s.enrollBatches != 1 {
		t.Fatalf("%d batches, want 1", s.enrollBatches)
	}
	for i, o := range ops {
		if (i == 1) != errors.Is(o.err, context.Canceled) || (i != 1 && o.err != nil) {
			t.Fatalf("op %d: %v", i, o.err)
		}
	}
	var n int
	if err := s.r.QueryRow(`SELECT count(*) FROM enrollment_audit`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d audit rows (%v), want 3", n, err)
	}
}

// TestMigration6KeepsEnrollmentRows builds a schema-5 database by hand,
// fills it the old way, and opens it: migration 6 rebuilds the audit table
// and drops indexes without losing a row.
func TestMigration6KeepsEnrollmentRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT (datetime('now')))`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		names, _ := fs.Glob(migrationFS, fmt.Sprintf("migrations/%04d_*.sql", v))
		body, err := migrationFS.ReadFile(names[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("migration %d: %v", v, err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations(version, name) VALUES (?, ?)`, v, names[0]); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`INSERT INTO orgs VALUES ('o', 'o', 1, 1, 1, 1, 1, 1, 0)`,
		`INSERT INTO formations(org_id, app_id, mesh_id, enrollment_policy, status, created_at, genesis) VALUES ('o', 'f', 'm', 'Open', 'Active', 1, x'00')`,
		`INSERT INTO enrollment_audit(org_id, audit_id, app_id, idp_id, subject, decision, approved, reason, serial, timestamp_ms)
			VALUES ('o', 'a1', 'f', 'none', 'anonymous', '{"Approved":{"tier":"Endpoint","permissions":0}}', 1, 'open', 's1', 5),
			       ('o', 'a2', 'f', 'none', 'anonymous', '{"Denied":{"reason":"no"}}', 0, 'no', NULL, 6)`,
		`INSERT INTO certificates(serial, org_id, app_id, peer_id, node_id, subject_public_key, fingerprint, tier, permissions,
			issued_at, expires_at, revoked, revoked_at, audit_id, raw) VALUES ('s1', 'o', 'f', 'p', 'n', 'k', 'fp', 'Endpoint', 3, 5, 9, 1, 7, 'a1', x'01')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s := openAt(t, path)
	defer s.Close()
	audit, err := s.ListAudit(bg, "o", nil, 10)
	if err != nil || len(audit) != 2 || audit[0].AuditID != "a2" || audit[0].Decision.Denied == nil ||
		audit[1].AuditID != "a1" || audit[1].Serial == nil || *audit[1].Serial != "s1" {
		t.Fatalf("audit after migration: %+v %v", audit, err)
	}
	revoked, seq, err := s.ListRevoked(bg, "o", "f")
	if err != nil || len(revoked) != 1 || revoked[0].Serial != "s1" || revoked[0].RevokedAt == nil || *revoked[0].RevokedAt != 7 || seq != 0 {
		t.Fatalf("revocations after migration: %+v %d %v", revoked, seq, err)
	}
}
