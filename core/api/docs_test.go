package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/api"
	"github.com/defenseunicorns/peat-gateway/core/docs"
	"github.com/defenseunicorns/peat-gateway/core/loadtest"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/store/postgres"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// startDocs runs a server with the document module over st. The quota
// cache is off so that a quota PATCH applies to the very next write.
func startDocs(t *testing.T, st store.Store, token *string, opts docs.Options) (*gw, *docs.Service) {
	t.Helper()
	if opts.QuotaTTL == 0 {
		opts.QuotaTTL = -1
	}
	svc := docs.New(st, tenant.New(st, nil, tenant.Options{}), opts)
	g := start(t, st, token, api.DocsModule(svc))
	// Registered after start's cleanup, so it runs first: the server stops
	// before the service drains.
	t.Cleanup(func() { svc.Close() })
	return g, svc
}

type putResult struct {
	DocumentID string `json:"document_id"`
	ChangeHash string `json:"change_hash"`
	Changed    bool   `json:"changed"`
}

func (g *gw) put(path, body string, status int, hdr ...string) putResult {
	g.t.Helper()
	r := g.must(g.do("PUT", path, body, hdr...), status, "")
	var p putResult
	if status == 200 {
		r.decode(g.t, &p)
		var raw map[string]any
		r.decode(g.t, &raw)
		if len(raw) != 3 {
			g.t.Fatalf("reply %s: want exactly document_id, change_hash, changed", r.body)
		}
	}
	return p
}

func readOutbox(t *testing.T, st store.Store, org string) []store.OutboxEvent {
	t.Helper()
	evs, err := st.ReadOutbox(context.Background(), org, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func mkOrgFormation(g *gw, org string, apps ...string) {
	g.t.Helper()
	g.must(g.do("POST", "/orgs", fmt.Sprintf(`{"org_id":%q,"display_name":"x"}`, org)), 200, "")
	for _, a := range apps {
		g.must(g.do("POST", "/orgs/"+org+"/formations", fmt.Sprintf(`{"app_id":%q}`, a)), 201, "")
	}
}

// TestDocumentLifecycle walks one document through create, unchanged
// rewrites, changes, a return to an earlier state, delete and re-create, and
// checks replies, reads, the summary list and that the outbox holds exactly
// the acknowledged changes.
func TestDocumentLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := startDocs(t, st, nil, docs.Options{})
		mkOrgFormation(g, "acme", "fleet")
		const p = "/orgs/acme/formations/fleet/documents/order-1"

		a := g.put(p, `{"status":"new","qty":2,"price":10.50,"note":"<ok> & done"}`, 200, "X-Peat-Actor", "peer-7")
		if !a.Changed || a.DocumentID != "order-1" || !hex16.MatchString(a.ChangeHash) {
			t.Fatalf("create %+v", a)
		}
		// Same content, other key order and spacing: unchanged, same hash.
		same := g.put(p, "{\n \"qty\": 2, \"note\": \"<ok> & done\", \"price\": 10.50, \"status\": \"new\"}", 200)
		if same.Changed || same.ChangeHash != a.ChangeHash {
			t.Fatalf("unchanged rewrite %+v, want hash %s", same, a.ChangeHash)
		}
		r := g.must(g.do("GET", p, nil), 200, "")
		if string(r.body) != `{"note":"<ok> & done","price":10.50,"qty":2,"status":"new"}` {
			t.Fatalf("stored JSON %s", r.body)
		}
		if r.hdr.Get("X-Peat-Change-Hash") != a.ChangeHash {
			t.Fatalf("re-read hash %q, want %s", r.hdr.Get("X-Peat-Change-Hash"), a.ChangeHash)
		}
		b := g.put(p, `{"status":"shipped","qty":2}`, 200)
		c := g.put(p, `{"status":"new","qty":2,"price":10.50,"note":"<ok> & done"}`, 200)
		if !b.Changed || !c.Changed || len(map[string]bool{a.ChangeHash: true, b.ChangeHash: true, c.ChangeHash: true}) != 3 {
			t.Fatalf("changes %+v %+v: a return to an earlier state needs its own hash (first %s)", b, c, a.ChangeHash)
		}
		g.put("/orgs/acme/formations/fleet/documents/order-2", `{"a":{"b":[1,2]}}`, 200)

		var list []model.DocumentSummary
		g.must(g.do("GET", "/orgs/acme/formations/fleet/documents", nil), 200, "").decode(t, &list)
		if len(list) != 2 || list[0].DocID != "order-1" || list[0].Version != 3 || list[0].ChangeHash != c.ChangeHash ||
			list[0].KeyCount != 4 || list[0].LastModified == 0 || list[1].DocID != "order-2" || list[1].KeyCount != 1 {
			t.Fatalf("list %+v", list)
		}

		r = g.must(g.do("DELETE", p, nil, "X-Peat-Actor", "janitor"), 200, "")
		var del putResult
		r.decode(t, &del)
		if !del.Changed || del.DocumentID != "order-1" || del.ChangeHash == c.ChangeHash {
			t.Fatalf("delete %+v", del)
		}
		g.must(g.do("GET", p, nil), 404, "Document 'order-1' not found in formation 'fleet'")
		g.must(g.do("DELETE", p, nil), 404, "not found")
		again := g.put(p, `{"status":"new","qty":2,"price":10.50,"note":"<ok> & done"}`, 200)
		if !again.Changed || again.ChangeHash == a.ChangeHash || again.ChangeHash == c.ChangeHash {
			t.Fatalf("re-created %+v", again)
		}

		evs := readOutbox(t, st, "acme")
		want := []struct {
			hash, op, actor, patches string
		}{
			{a.ChangeHash, "upsert", "peer-7", `{"note":"<ok> & done","price":10.50,"qty":2,"status":"new"}`},
			{b.ChangeHash, "upsert", "api", `{"qty":2,"status":"shipped"}`},
			{c.ChangeHash, "upsert", "api", `{"note":"<ok> & done","price":10.50,"qty":2,"status":"new"}`},
			{"", "upsert", "api", `{"a":{"b":[1,2]}}`},
			{del.ChangeHash, "delete", "janitor", `{"_deleted":true}`},
			{again.ChangeHash, "upsert", "api", `{"note":"<ok> & done","price":10.50,"qty":2,"status":"new"}`},
		}
		if len(evs) != len(want) {
			t.Fatalf("outbox has %d events, %d changes were acknowledged", len(evs), len(want))
		}
		for i, w := range want {
			e := evs[i].Event
			// Compared as content: the store's event encoder may escape
			// <, > and & in patches, which is the same JSON.
			patches, err := docs.Canonicalize(e.Patches)
			if err != nil {
				t.Fatal(err)
			}
			if (w.hash != "" && e.ChangeHash != w.hash) || e.Op != w.op || e.ActorID != w.actor || string(patches) != w.patches ||
				e.OrgID != "acme" || e.AppID != "fleet" || e.TimestampMs == 0 {
				t.Fatalf("event %d = %+v (patches %s), want %+v", i, e, e.Patches, w)
			}
			// The stored event is the wire shape: the reference's seven fields plus op.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(evs[i].Raw, &raw); err != nil || len(raw) != 8 {
				t.Fatalf("raw event %s", evs[i].Raw)
			}
		}
	})
}

func TestDocumentErrors(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := startDocs(t, st, nil, docs.Options{})
		mkOrgFormation(g, "acme", "fleet")
		const base = "/orgs/acme/formations/fleet/documents/"

		g.must(g.do("PUT", "/orgs/nope/formations/fleet/documents/d", `{}`), 404, "Organization 'nope' not found")
		g.must(g.do("PUT", "/orgs/acme/formations/nope/documents/d", `{}`), 404, "Formation 'nope' not found in org 'acme'")
		g.must(g.do("DELETE", "/orgs/acme/formations/nope/documents/d", nil), 404, "Formation 'nope' not found")
		g.must(g.do("GET", "/orgs/acme/formations/nope/documents", nil), 404, "Formation 'nope' not found")
		g.must(g.do("GET", "/orgs/nope/formations/fleet/documents", nil), 404, "Organization 'nope' not found")
		g.must(g.do("GET", "/orgs/acme/formations/nope/documents/d", nil), 404, "Formation 'nope' not found")
		g.must(g.do("GET", base+"d", nil), 404, "Document 'd' not found")

		g.put(base+"keep", `{"v":1}`, 200)
		cases := []struct {
			name, doc, body string
			hdr             []string
			status          int
			want            string
		}{
			{"dot", "a.b", `{}`, nil, 400, "document_id contains invalid characters"},
			{"star", "a*", `{}`, nil, 400, "invalid characters"},
			{"gt", "a%3E", `{}`, nil, 400, "invalid characters"},
			{"raw gt", "a>", `{}`, nil, 400, "invalid characters"},
			{"space", "a%20b", `{}`, nil, 400, "invalid characters"},
			{"slash", "a%2Fb", `{}`, nil, 400, "invalid characters"},
			{"129 chars", strings.Repeat("d", 129), `{}`, nil, 400, "document_id exceeds maximum length (129 > 128)"},
			{"leading dash", "-a", `{}`, nil, 400, "must start with an alphanumeric"},
			{"reserved", "_org", `{}`, nil, 400, "reserved"},
			{"array body", "x", `[{"a":1}]`, nil, 422, "must be a JSON object"},
			{"string body", "x", `"s"`, nil, 422, "must be a JSON object"},
			{"broken body", "x", `{"a":`, nil, 400, "Failed to parse the document body as JSON"},
			{"trailing data", "x", `{"a":1}{}`, nil, 400, "unexpected data after"},
			{"empty body", "x", ``, nil, 400, "empty"},
			{"not json type", "x", `{}`, []string{"Content-Type", "text/plain"}, 415, "Content-Type"},
			{"deep", "x", strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200), nil, 400, "nesting"},
			{"long actor", "x", `{}`, []string{"X-Peat-Actor", strings.Repeat("a", 257)}, 400, "actor_id exceeds"},
			{"oversized", "x", `{"a":"` + strings.Repeat("x", 3<<20) + `"}`, nil, 413, "length limit"},
		}
		for _, c := range cases {
			g.must(g.do("PUT", base+c.doc, c.body, c.hdr...), c.status, c.want)
		}
		for _, doc := range []string{"a.b", "a*", "a%3E", "a%20b", strings.Repeat("d", 129)} {
			g.must(g.do("DELETE", base+doc, nil), 400, "document_id")
			g.must(g.do("GET", base+doc, nil), 400, "document_id")
		}
		// Nothing above reached storage.
		var list []model.DocumentSummary
		g.must(g.do("GET", "/orgs/acme/formations/fleet/documents", nil), 200, "").decode(t, &list)
		if len(list) != 1 || list[0].DocID != "keep" || list[0].Version != 1 {
			t.Fatalf("documents after refusals: %+v", list)
		}
		if n := len(readOutbox(t, st, "acme")); n != 1 {
			t.Fatalf("outbox has %d events after refusals, want 1", n)
		}
	})
}

func TestDocumentQuotaAndSuspension(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := startDocs(t, st, nil, docs.Options{})
		mkOrgFormation(g, "acme", "fleet", "other")
		g.must(g.do("PATCH", "/orgs/acme", orgQuota), 200, "") // 5 documents per formation
		const base = "/orgs/acme/formations/fleet/documents/"
		for i := range 5 {
			g.put(fmt.Sprintf("%sd%d", base, i), `{"i":1}`, 200)
		}
		g.must(g.do("PUT", base+"d5", `{"i":1}`), 429, "Formation 'fleet' has reached its document quota (5)")
		// Updating an existing document is not a new one; another formation has its own quota.
		g.put(base+"d0", `{"i":2}`, 200)
		g.put("/orgs/acme/formations/other/documents/d5", `{}`, 200)
		// A delete frees a slot.
		g.must(g.do("DELETE", base+"d4", nil), 200, "")
		g.put(base+"d5", `{"i":1}`, 200)
		g.must(g.do("PUT", base+"d6", `{"i":1}`), 429, "document quota (5)")

		g.must(g.do("POST", "/orgs/acme/formations/fleet/suspend", nil), 200, "")
		before := len(readOutbox(t, st, "acme"))
		g.must(g.do("PUT", base+"d0", `{"i":3}`), 409, "suspended")
		g.must(g.do("DELETE", base+"d0", nil), 409, "suspended")
		// Reads still work; the other formation is unaffected.
		g.must(g.do("GET", base+"d0", nil), 200, "")
		g.put("/orgs/acme/formations/other/documents/d5", `{"x":1}`, 200)
		if n := len(readOutbox(t, st, "acme")); n != before+1 {
			t.Fatalf("outbox grew by %d while suspended, want 1 (the other formation)", n-before)
		}
		g.must(g.do("POST", "/orgs/acme/formations/fleet/resume", nil), 200, "")
		g.put(base+"d0", `{"i":3}`, 200)
	})
}

func TestDocumentOutboxFull(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := startDocs(t, st, nil, docs.Options{OutboxLimit: 3})
		mkOrgFormation(g, "acme", "fleet")
		const base = "/orgs/acme/formations/fleet/documents/"
		for i := range 3 {
			g.put(fmt.Sprintf("%sd%d", base, i), `{}`, 200)
		}
		g.must(g.do("PUT", base+"d9", `{}`), 507, "CDC outbox of org 'acme' is full (3 undelivered events retained)")
		g.must(g.do("DELETE", base+"d0", nil), 507, "outbox")
		if p := g.put(base+"d0", `{}`, 200); p.Changed {
			t.Fatalf("unchanged write refused or changed: %+v", p)
		}
	})
}

// TestDocumentConcurrentWriters has many HTTP clients write shared and own
// documents at once: every acknowledged change is in the outbox exactly once,
// nothing else is, each document's events are in version order, and each
// client's own changes appear in the order it made them.
func TestDocumentConcurrentWriters(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := startDocs(t, st, nil, docs.Options{MaxBatch: 32})
		mkOrgFormation(g, "acme", "fleet")
		const writers, each = 16, 20
		var mu sync.Mutex
		acked := map[string]bool{}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					doc := "shared"
					if i%3 == 0 {
						doc = fmt.Sprintf("own-%d", w)
					}
					r := g.put("/orgs/acme/formations/fleet/documents/"+doc, fmt.Sprintf(`{"w":%d,"i":%d}`, w, i), 200,
						"X-Peat-Actor", fmt.Sprintf("w%d", w))
					if !r.Changed {
						t.Errorf("write %d/%d unchanged", w, i)
					}
					mu.Lock()
					if acked[r.ChangeHash] {
						t.Errorf("hash %s acknowledged twice", r.ChangeHash)
					}
					acked[r.ChangeHash] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		evs := readOutbox(t, st, "acme")
		if len(evs) != writers*each {
			t.Fatalf("outbox %d events, acknowledged %d", len(evs), writers*each)
		}
		versions := map[string]uint64{}
		last := map[string]int{}
		var lastShared string
		for _, e := range evs {
			ev := e.Event
			if !acked[ev.ChangeHash] {
				t.Fatalf("event %s was never acknowledged", ev.ChangeHash)
			}
			delete(acked, ev.ChangeHash)
			versions[ev.DocumentID]++
			if ev.ChangeHash != model.ChangeHash("acme", "fleet", ev.DocumentID, versions[ev.DocumentID], ev.Patches) {
				t.Fatalf("%s: event out of version order", ev.DocumentID)
			}
			var b struct{ W, I int }
			json.Unmarshal(ev.Patches, &b)
			if ev.ActorID != fmt.Sprintf("w%d", b.W) {
				t.Fatalf("actor %s for writer %d", ev.ActorID, b.W)
			}
			k := fmt.Sprintf("%s/%d", ev.DocumentID, b.W)
			if p, ok := last[k]; ok && b.I <= p {
				t.Fatalf("writer %d's changes to %s out of order", b.W, ev.DocumentID)
			}
			last[k] = b.I
			if ev.DocumentID == "shared" {
				lastShared = string(ev.Patches)
			}
		}
		r := g.must(g.do("GET", "/orgs/acme/formations/fleet/documents/shared", nil), 200, "")
		if string(r.body) != lastShared {
			t.Fatalf("shared document %s, last event %s", r.body, lastShared)
		}
	})
}

func TestCdcTestEndpoint(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		tok := "s3cret"
		g, _ := startDocs(t, st, &tok, docs.Options{})
		mkOrgFormation(g, "acme")
		var res struct {
			Published  bool   `json:"published"`
			ChangeHash string `json:"change_hash"`
		}
		g.must(g.do("POST", "/orgs/acme/cdc/test", `{"app_id":"logistics","document_id":"order-9","patches":{"b":1,"a":[true]}}`), 200, "").decode(t, &res)
		if !res.Published || !strings.HasPrefix(res.ChangeHash, "test-") || !hex16.MatchString(res.ChangeHash[5:]) {
			t.Fatalf("reply %+v", res)
		}
		g.must(g.do("POST", "/orgs/acme/cdc/test", `{"app_id":"logistics","document_id":"order-9","actor_id":"me"}`), 200, "")
		evs := readOutbox(t, st, "acme")
		if len(evs) != 2 {
			t.Fatalf("outbox %d", len(evs))
		}
		e := evs[0].Event
		if e.ChangeHash != res.ChangeHash || e.AppID != "logistics" || e.DocumentID != "order-9" || e.ActorID != "test-actor" ||
			string(e.Patches) != `{"b":1,"a":[true]}` || e.Op != model.OpTest {
			t.Fatalf("event %+v patches %s", e, e.Patches)
		}
		if e2 := evs[1].Event; e2.ActorID != "me" || string(e2.Patches) != "null" {
			t.Fatalf("second event %+v patches %s", e2, e2.Patches)
		}
		g.must(g.do("POST", "/orgs/nope/cdc/test", `{"app_id":"a","document_id":"d"}`), 404, "Organization 'nope' not found")
		g.must(g.do("POST", "/orgs/acme/cdc/test", `{"document_id":"d"}`), 422, "missing field `app_id`")
		g.must(g.do("POST", "/orgs/acme/cdc/test", `{"app_id":"a"}`), 422, "missing field `document_id`")
		g.must(g.do("POST", "/orgs/acme/cdc/test", `{"app_id":"a","document_id":"d.e"}`), 400, "document_id contains invalid characters")
		// Admin auth, unlike the reference.
		g.must(g.do("POST", "/orgs/acme/cdc/test", `{"app_id":"a","document_id":"d"}`, "Authorization", ""), 401, "Admin token required")
		g.must(g.do("PUT", "/orgs/acme/formations/f/documents/d", `{}`, "Authorization", ""), 401, "Admin token required")
		g.must(g.do("GET", "/orgs/acme/formations/f/documents", nil, "Authorization", "Bearer wrong"), 403, "Invalid admin token")
		if n := len(readOutbox(t, st, "acme")); n != 2 {
			t.Fatalf("outbox %d after refusals", n)
		}
	})
}

// TestDocumentCommitHook checks the dispatcher's wake-up: every committed
// change is announced for its org without polling.
func TestDocumentCommitHook(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		woke := make(chan []string, 16)
		g, _ := startDocs(t, st, nil, docs.Options{OnCommit: func(orgs []string) { woke <- orgs }})
		mkOrgFormation(g, "acme", "fleet")
		g.put("/orgs/acme/formations/fleet/documents/d", `{}`, 200)
		select {
		case orgs := <-woke:
			if len(orgs) != 1 || orgs[0] != "acme" {
				t.Fatalf("woken for %v", orgs)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("commit hook not called")
		}
		g.put("/orgs/acme/formations/fleet/documents/d", `{}`, 200) // unchanged: no event, no wake-up
		g.put("/orgs/acme/formations/fleet/documents/e", `{}`, 200)
		if orgs := <-woke; len(orgs) != 1 || orgs[0] != "acme" {
			t.Fatalf("woken for %v", orgs)
		}
		select {
		case orgs := <-woke:
			t.Fatalf("extra wake-up %v", orgs)
		default:
		}
	})
}

// TestCdcAcceptScenario runs the cdc-accept load scenario briefly against a
// real server: no errors, and the outbox holds exactly one event per
// acknowledged PUT.
func TestCdcAcceptScenario(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		g, _ := startDocs(t, st, nil, docs.Options{})
		t.Setenv("PEAT_LOADTEST_DOCUMENTS", "200")
		t.Setenv("PEAT_LOADTEST_FORMATIONS", "4")
		rep, err := loadtest.Run(context.Background(), loadtest.Options{Target: g.base, Scenario: "cdc-accept",
			Duration: 500 * time.Millisecond, Concurrency: 8, Orgs: 2}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if rep.SignsPerSecBefore <= 0 || rep.SignsPerSecAfter <= 0 {
			t.Errorf("report without the machine's signing rate: %+v", rep)
		}
		if rep.Errors != 0 || rep.Requests == 0 || len(rep.Endpoints) != 1 {
			t.Fatalf("report %+v", rep)
		}
		orgs, err := st.ListOrgs(context.Background())
		if err != nil || len(orgs) != 2 {
			t.Fatalf("orgs %v %v", orgs, err)
		}
		total := 0
		for _, o := range orgs {
			total += len(readOutbox(t, st, o.OrgID))
		}
		if total != rep.Requests {
			t.Fatalf("outbox holds %d events for %d acknowledged PUTs", total, rep.Requests)
		}
		var accepted float64
		for _, x := range rep.Extra {
			if x.Name == "accepted changes" {
				accepted = x.Value
			}
		}
		if accepted <= 0 || accepted > rep.Throughput*1.0001 {
			t.Fatalf("accepted %.1f/s of %.1f req/s", accepted, rep.Throughput)
		}
	})
}

// BenchmarkCdcAccept is the acceptance measurement: the cdc-accept scenario
// over HTTP against a server on SQLite (synchronous=FULL) and on Postgres,
// the load generator on the same machine. Run it once per backend:
//
//	go test ./core/api -run '^$' -bench CdcAccept -benchtime 1x
//
// PEAT_BENCH_DURATION (default 10s), PEAT_BENCH_CONCURRENCY (64) and
// PEAT_BENCH_COMMITTERS (1) tune it; the outbox limit is the gateway's
// default (PEAT_OUTBOX_MAX_ROWS, 5,000,000) unless PEAT_BENCH_OUTBOX_LIMIT
// says otherwise (0: unbounded).
// Postgres is PEAT_TEST_DATABASE_URL's server when set (see pgtest).
func BenchmarkCdcAccept(b *testing.B) {
	dur, err := time.ParseDuration(os.Getenv("PEAT_BENCH_DURATION"))
	if err != nil {
		dur = 10 * time.Second
	}
	conc, _ := strconv.Atoi(os.Getenv("PEAT_BENCH_CONCURRENCY"))
	if conc <= 0 {
		conc = 64
	}
	outboxLimit := int64(5_000_000)
	if v, err := strconv.ParseInt(os.Getenv("PEAT_BENCH_OUTBOX_LIMIT"), 10, 64); err == nil {
		outboxLimit = v
	}
	for _, be := range []struct {
		name       string
		committers int
		open       func() (store.Store, error)
	}{
		{"sqlite", 1, func() (store.Store, error) {
			return sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gw.db"))
		}},
		{"postgres", 1, func() (store.Store, error) { return postgres.Open(context.Background(), pgtest.URL(b)) }},
	} {
		if n, _ := strconv.Atoi(os.Getenv("PEAT_BENCH_COMMITTERS")); n > 0 {
			be.committers = n
		}
		b.Run(be.name, func(b *testing.B) {
			st, err := be.open()
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			reg := prometheus.NewRegistry()
			svc := docs.New(st, tenant.New(st, nil, tenant.Options{}), docs.Options{Committers: be.committers, Registerer: reg, OutboxLimit: outboxLimit})
			defer svc.Close()
			srv := api.New(api.Config{Version: "bench", Tenant: tenant.New(st, nil, tenant.Options{}),
				Modules: []api.Module{api.DocsModule(svc)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Shutdown(context.Background())
			for b.Loop() {
				rep, err := loadtest.Run(context.Background(), loadtest.Options{Target: "http://" + ln.Addr().String(),
					Scenario: "cdc-accept", Duration: dur, Warmup: 2 * time.Second, Concurrency: conc, Orgs: 4}, io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				rep.Print(os.Stderr)
				e := rep.Endpoints[0]
				b.ReportMetric(rep.Extra[0].Value, "accepted/s")
				b.ReportMetric(e.P50ms, "p50-ms")
				b.ReportMetric(e.P99ms, "p99-ms")
				b.ReportMetric(float64(rep.Errors), "errors")
				mfs, _ := reg.Gather()
				for _, mf := range mfs {
					if h := mf.GetMetric()[0].GetHistogram(); h != nil && h.GetSampleCount() > 0 {
						switch mf.GetName() {
						case "peat_gw_docs_batch_size":
							b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount()), "writes/batch")
						case "peat_gw_docs_commit_seconds":
							b.ReportMetric(1000*h.GetSampleSum()/float64(h.GetSampleCount()), "commit-ms")
						}
					}
				}
			}
		})
	}
}
