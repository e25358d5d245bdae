package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var ctx = context.Background()

const t0 uint64 = 1_767_225_600_000

// open returns a store on a fresh database, closed at cleanup.
func open(t testing.TB) *postgres.Store {
	t.Helper()
	return openURL(t, pgtest.URL(t))
}

func openURL(t testing.TB, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mkOrg(t testing.TB, s store.Store, id string, edit func(*model.OrgQuotas)) {
	t.Helper()
	o := model.Organization{OrgID: id, DisplayName: "Org " + id, Quotas: model.DefaultQuotas(), CreatedAt: t0}
	if edit != nil {
		edit(&o.Quotas)
	}
	if err := s.CreateOrg(ctx, o); err != nil {
		t.Fatalf("CreateOrg: %v", err)
	}
}

func formation(orgID, appID string) model.Formation {
	return model.Formation{OrgID: orgID, AppID: appID, MeshID: "A1B2C3D4",
		EnrollmentPolicy: model.PolicyControlled, Status: model.FormationActive, CreatedAt: t0}
}

func mkFormation(t testing.TB, s store.Store, orgID, appID string) {
	t.Helper()
	if err := s.CreateFormation(ctx, formation(orgID, appID), []byte("g")); err != nil {
		t.Fatalf("CreateFormation %s: %v", appID, err)
	}
}

func numMigrations(t *testing.T) int {
	t.Helper()
	entries, err := fs.Glob(os.DirFS("migrations"), "*.sql")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	return len(entries)
}

// Three replicas starting at once on an empty database: all must open, and
// each migration must be recorded exactly once.
func TestMigrationsRunOnceUnderConcurrentOpen(t *testing.T) {
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	stores := make([]*postgres.Store, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = postgres.Open(ctx, url)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Open: %v", i, err)
		}
		defer stores[i].Close()
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, distinct int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if want := numMigrations(t); rows != want || distinct != want {
		t.Fatalf("schema_migrations has %d rows (%d versions), want %d", rows, distinct, want)
	}
	// A later start finds nothing to do and does not fail.
	s4 := openURL(t, url)
	v, err := s4.SchemaVersion(ctx)
	if err != nil || v != numMigrations(t) {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
	// The migration lock is released: a session can take it at once.
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(0x706561746d696772)).Scan(&got); err != nil || !got {
		t.Fatalf("migration advisory lock still held: %v %v", got, err)
	}
}

// Two Store instances on one database behave as two replicas: each sees
// the other's writes at once, and a quota holds across both.
func TestTwoReplicasShareStateAndQuotas(t *testing.T) {
	url := pgtest.URL(t)
	a, b := openURL(t, url), openURL(t, url)
	mkOrg(t, a, "acme", func(q *model.OrgQuotas) { q.MaxFormations = 7; q.MaxCdcSinks = 3 })
	if o, err := b.GetOrg(ctx, "acme"); err != nil || o.Quotas.MaxFormations != 7 {
		t.Fatalf("replica b GetOrg = %+v, %v", o, err)
	}

	var ok, quota atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			err := s.CreateFormation(ctx, formation("acme", fmt.Sprintf("app%02d", i)), []byte("g"))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrQuota):
				quota.Add(1)
			default:
				t.Errorf("CreateFormation: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 7 || quota.Load() != 33 {
		t.Fatalf("created %d, refused %d; want 7 and 33", ok.Load(), quota.Load())
	}
	fs, err := a.ListFormations(ctx, "acme")
	if err != nil || len(fs) != 7 {
		t.Fatalf("ListFormations = %d, %v", len(fs), err)
	}

	// Sinks: the quota counts rows written by either replica.
	for i := range 3 {
		s := []*postgres.Store{a, b}[i%2]
		sc := model.CdcSinkConfig{SinkID: fmt.Sprintf("s%d", i), OrgID: "acme", Enabled: true, CreatedAt: t0,
			SinkType: model.CdcSinkType{Kafka: &model.KafkaSink{Topic: "t"}}}
		if err := s.CreateSink(ctx, sc); err != nil {
			t.Fatalf("CreateSink %d: %v", i, err)
		}
	}
	err = b.CreateSink(ctx, model.CdcSinkConfig{SinkID: "s9", OrgID: "acme", CreatedAt: t0,
		SinkType: model.CdcSinkType{Nats: &model.NatsSink{SubjectPrefix: "p"}}})
	if !errors.Is(err, store.ErrQuota) {
		t.Fatalf("4th sink across replicas: %v, want ErrQuota", err)
	}

	// Documents written through both replicas share one outbox sequence.
	for i := range 10 {
		s := []*postgres.Store{a, b}[i%2]
		w := store.DocumentWrite{OrgID: "acme", AppID: fs[0].AppID, DocID: fmt.Sprintf("d%d", i), ActorID: "x",
			Body: []byte(`{"n":1}`), TimestampMs: t0, DocLimit: 100}
		rs, err := s.WriteDocuments(ctx, []store.DocumentWrite{w})
		if err != nil || rs[0].Err != nil || rs[0].Seq != int64(i+1) {
			t.Fatalf("write %d via replica %d: %+v, %v", i, i%2, rs, err)
		}
	}
}

// Fifty concurrent creates against a quota of ten never overshoot.
func TestFormationQuotaUnderConcurrency(t *testing.T) {
	s := open(t)
	mkOrg(t, s, "acme", func(q *model.OrgQuotas) { q.MaxFormations = 10 })
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.CreateFormation(ctx, formation("acme", fmt.Sprintf("f%02d", i)), []byte("g"))
			if err == nil {
				ok.Add(1)
			} else if !errors.Is(err, store.ErrQuota) {
				t.Errorf("CreateFormation: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("%d formations created under a quota of 10", ok.Load())
	}
}

// Concurrent enrollments neither overuse a token nor pass the rate limit
// or the peer quota.
func TestEnrollLimitsUnderConcurrency(t *testing.T) {
	s := open(t)
	mkOrg(t, s, "acme", nil)
	mkFormation(t, s, "acme", "app")
	tok := model.EnrollmentToken{TokenID: "peat_tok", OrgID: "acme", AppID: "app", Label: "l", MaxUses: ptr(uint32(5)), CreatedAt: t0}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	run := func(n int, mk func(i int) store.EnrollTx) (okN int32, errs map[string]int) {
		var ok atomic.Int32
		var mu sync.Mutex
		errs = map[string]int{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Enroll(ctx, mk(i)); err != nil {
					mu.Lock()
					errs[err.Error()]++
					mu.Unlock()
					return
				}
				ok.Add(1)
			}()
		}
		wg.Wait()
		return ok.Load(), errs
	}
	base := func(id string, now uint64) store.EnrollTx {
		return store.EnrollTx{OrgID: "acme", AppID: "app", NowMs: now, RateLimit: 1000, PeerLimit: 1000,
			Audit: model.AuditEntry{AuditID: id, OrgID: "acme", AppID: "app", IdpID: "token", Subject: "token:x",
				Decision: model.Decision{Approved: &model.Approval{Tier: model.TierEndpoint}}, TimestampMs: now}}
	}
	n, errs := run(30, func(i int) store.EnrollTx {
		tx := base(fmt.Sprintf("tok%02d", i), t0)
		tx.TokenID = "peat_tok"
		return tx
	})
	if n != 5 || errs[store.ErrTokenInvalid.Error()] != 25 {
		t.Fatalf("token max_uses 5: %d succeeded, errors %v", n, errs)
	}
	if tk, _ := s.GetToken(ctx, "acme", "peat_tok"); tk.Uses != 5 {
		t.Fatalf("uses = %d, want 5", tk.Uses)
	}

	// Rate limit 12 with 5 approvals already in the window: 7 more pass.
	n, errs = run(30, func(i int) store.EnrollTx {
		tx := base(fmt.Sprintf("rate%02d", i), t0+1000)
		tx.RateLimit = 12
		return tx
	})
	if n != 7 || errs[store.ErrRateLimited.Error()] != 23 {
		t.Fatalf("rate limit: %d succeeded, errors %v", n, errs)
	}

	// Peer quota 4, in a fresh hour.
	n, errs = run(20, func(i int) store.EnrollTx {
		tx := base(fmt.Sprintf("peer%02d", i), t0+2*3_600_000)
		tx.PeerLimit = 4
		node := fmt.Sprintf("n%02d", i) // 20 different keys, none renewing
		tx.Certificate = &model.Certificate{Serial: fmt.Sprintf("c%02d", i), PeerID: node, NodeID: node, SubjectKey: "key-" + node,
			Fingerprint: "f", Tier: "Endpoint", IssuedAt: tx.NowMs, ExpiresAt: tx.NowMs + 86_400_000, AuditID: tx.Audit.AuditID, Raw: []byte{1}}
		return tx
	})
	if n != 4 {
		t.Fatalf("peer quota 4: %d succeeded, errors %v", n, errs)
	}
	certs, err := s.ListCertificates(ctx, "acme", "app")
	if err != nil || len(certs) != 4 {
		t.Fatalf("ListCertificates = %d, %v", len(certs), err)
	}
}

func ptr[T any](v T) *T { return &v }

// The reference passed LIMIT -1 to PostgreSQL; a negative or zero limit
// must simply return nothing.
func TestListAuditNonPositiveLimit(t *testing.T) {
	s := open(t)
	mkOrg(t, s, "acme", nil)
	for _, limit := range []int{0, -1, -1 << 62} {
		got, err := s.ListAudit(ctx, "acme", nil, limit)
		if err != nil || len(got) != 0 {
			t.Fatalf("ListAudit(limit=%d) = %v, %v", limit, got, err)
		}
	}
}

// A reader that follows the outbox with a cursor while many writers commit
// concurrently must see every seq exactly once, in order: seq order equals
// commit order, so no event can become visible behind the cursor.
func TestOutboxCursorNeverSkips(t *testing.T) {
	url := pgtest.URL(t)
	a, b := openURL(t, url), openURL(t, url)
	mkOrg(t, a, "acme", nil)
	mkFormation(t, a, "acme", "app")
	const writers, perWriter = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*postgres.Store{a, b}[w%2]
			for i := range perWriter {
				var batch []store.DocumentWrite
				// Mixed batch sizes make transactions of unequal length.
				for j := range 1 + (i % 3) {
					batch = append(batch, store.DocumentWrite{OrgID: "acme", AppID: "app",
						DocID: fmt.Sprintf("w%d-%d-%d", w, i, j), ActorID: "x", Body: []byte(`{"v":1}`),
						TimestampMs: t0, DocLimit: 100000})
				}
				if _, err := s.WriteDocuments(ctx, batch); err != nil {
					t.Errorf("WriteDocuments: %v", err)
					return
				}
				if i%5 == 0 {
					if _, err := s.AppendEvent(ctx, model.CdcEvent{OrgID: "acme", AppID: "app", DocumentID: "t",
						TimestampMs: t0, Patches: []byte(`{}`), Op: model.OpTest}); err != nil {
						t.Errorf("AppendEvent: %v", err)
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var cursor int64
	var seen []int64
	finished := false
	for {
		select {
		case <-done:
			finished = true
		default:
		}
		evs, err := b.ReadOutbox(ctx, "acme", cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			seen = append(seen, e.Seq)
			cursor = e.Seq
		}
		if finished && len(evs) == 0 {
			break
		}
	}
	last, err := a.LastSeq(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(seen)) != last {
		t.Fatalf("reader saw %d events, last seq is %d", len(seen), last)
	}
	for i, seq := range seen {
		if seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: the cursor skipped an event", i, seq)
		}
	}
}

// A batch of writes is one transaction with real rows: documents, outbox
// and counters agree, and a deleted formation takes its rows with it.
func TestWriteDocumentsSchemaRows(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	mkOrg(t, s, "acme", nil)
	mkFormation(t, s, "acme", "app")
	var batch []store.DocumentWrite
	for i := range 64 {
		batch = append(batch, store.DocumentWrite{OrgID: "acme", AppID: "app", DocID: fmt.Sprintf("d%02d", i),
			ActorID: "x", Body: []byte(`{"a":1,"b":2}`), TimestampMs: t0, DocLimit: 60})
	}
	rs, err := s.WriteDocuments(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if i < 60 && (r.Err != nil || r.Seq != int64(i+1)) || i >= 60 && !errors.Is(r.Err, store.ErrQuota) {
			t.Fatalf("write %d: %+v", i, r)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var docs, outbox, docCount, lastSeq, keys int64
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM outbox),
		(SELECT doc_count FROM formations), (SELECT last_seq FROM outbox_counters), (SELECT min(key_count) FROM documents)`).
		Scan(&docs, &outbox, &docCount, &lastSeq, &keys)
	if err != nil {
		t.Fatal(err)
	}
	if docs != 60 || outbox != 60 || docCount != 60 || lastSeq != 60 || keys != 2 {
		t.Fatalf("docs %d outbox %d doc_count %d last_seq %d key_count %d", docs, outbox, docCount, lastSeq, keys)
	}
	if err := s.DeleteFormation(ctx, "acme", "app"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM documents").Scan(&docs); err != nil || docs != 0 {
		t.Fatalf("documents after DeleteFormation: %d, %v", docs, err)
	}
	// Events already emitted stay for the sinks.
	if n, _ := s.OutboxDepth(ctx); n != 60 {
		t.Fatalf("outbox depth after DeleteFormation = %d", n)
	}
	if err := s.DeleteOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	var left int64
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM outbox_counters)
		+ (SELECT count(*) FROM formations)`).Scan(&left)
	if err != nil || left != 0 {
		t.Fatalf("rows left after DeleteOrg: %d, %v", left, err)
	}
}

// Bad URLs fail at Open with an error, not later.
func TestOpenRejectsUnreachableServer(t *testing.T) {
	_, err := postgres.Open(ctx, "postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Fatalf("Open of an unreachable server: %v", err)
	}
}
