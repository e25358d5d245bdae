package enroll

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/store/backendtest"

	"github.com/defenseunicorns/peat-gateway/core/mesh"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/pgtest"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeGeneses hands out deterministic geneses and remembers each one so the
// test can check it was zeroized.
type fakeGeneses struct {
	mu     sync.Mutex
	loads  atomic.Int64
	issued []*mesh.Genesis
	seeds  map[string]byte
}

func (f *fakeGeneses) load(_ context.Context, org, app string) (*mesh.Genesis, error) {
	f.loads.Add(1)
	time.Sleep(5 * time.Millisecond) // let concurrent callers pile up
	f.mu.Lock()
	defer f.mu.Unlock()
	seed := make([]byte, 32)
	seed[0] = f.seeds[org+"/"+app]
	g, err := mesh.GenesisFromSeed(app, seed, mesh.PolicyOpen, 1000)
	if err == nil {
		f.issued = append(f.issued, g)
	}
	return g, err
}

func (f *fakeGeneses) formation(org, app string, seed byte) model.Formation {
	f.mu.Lock()
	f.seeds[org+"/"+app] = seed
	f.mu.Unlock()
	s := make([]byte, 32)
	s[0] = seed
	g, _ := mesh.GenesisFromSeed(app, s, mesh.PolicyOpen, 1000)
	defer g.Zeroize()
	return model.Formation{OrgID: org, AppID: app, MeshID: g.MeshID(), CreatedAt: 1000}
}

func zeroized(g *mesh.Genesis) bool { return g.Encode() == nil }

func TestGenesisCache(t *testing.T) {
	fg := &fakeGeneses{seeds: map[string]byte{}}
	now := time.Unix(1_700_000_000, 0)
	var clk atomic.Int64
	clk.Store(now.UnixNano())
	c := newGenesisCache(fg.load, 2, time.Minute, func() time.Time { return time.Unix(0, clk.Load()) })
	ctx := context.Background()

	// Concurrent first use loads once.
	f1 := fg.formation("o", "a", 1)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := c.acquire(ctx, f1)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := e.g.IssueCertificate(make([]byte, 32), "n", mesh.TierTactical, 0, 1, 1); err != nil {
				t.Error(err)
			}
			e.release()
		}()
	}
	wg.Wait()
	if n := fg.loads.Load(); n != 1 {
		t.Fatalf("%d loads for one formation, want 1", n)
	}

	// The same name with another mesh_id (deleted and re-created) never
	// gets the old key, and the old one is wiped.
	old := fg.issued[0]
	f1b := fg.formation("o", "a", 2)
	e, err := c.acquire(ctx, f1b)
	if err != nil {
		t.Fatal(err)
	}
	if e.meshID != f1b.MeshID || e.g.MeshID() != f1b.MeshID {
		t.Fatal("stale genesis served for a re-created formation")
	}
	e.release()
	if !zeroized(old) {
		t.Fatal("replaced genesis not zeroized")
	}

	// A formation row whose genesis derives another mesh_id is refused.
	bad := fg.formation("o", "bad", 3)
	bad.MeshID = "00000000"
	if _, err := c.acquire(ctx, bad); err != errGenesisMismatch {
		t.Fatalf("mismatch: %v", err)
	}

	// Size bound: the least recently used entry is evicted and wiped.
	clk.Add(int64(time.Second))
	f2 := fg.formation("o", "b", 4)
	e, _ = c.acquire(ctx, f2)
	e.release()
	clk.Add(int64(time.Second))
	f3 := fg.formation("o", "c", 5)
	e, _ = c.acquire(ctx, f3)
	e.release()
	if c.len() != 2 || !zeroized(fg.issued[1]) {
		t.Fatalf("len %d, LRU zeroized %v", c.len(), zeroized(fg.issued[1]))
	}

	// Forget waits for a signer holding the entry, then wipes it.
	e, _ = c.acquire(ctx, f3)
	g3 := e.g
	done := make(chan struct{})
	go func() { c.forget("o", "c"); close(done) }()
	select {
	case <-done:
		t.Fatal("forget did not wait for the signer")
	case <-time.After(20 * time.Millisecond):
	}
	if zeroized(g3) {
		t.Fatal("key wiped under a signer")
	}
	e.release()
	<-done
	if !zeroized(g3) {
		t.Fatal("forgotten genesis not zeroized")
	}

	// Idle entries are wiped by the periodic sweep.
	e, _ = c.acquire(ctx, f2)
	g2 := e.g
	e.release()
	clk.Add(int64(3 * time.Minute))
	e, _ = c.acquire(ctx, f3)
	e.release()
	if !zeroized(g2) {
		t.Fatal("idle genesis not zeroized")
	}
	c.purge()
	for _, g := range fg.issued {
		if !zeroized(g) {
			t.Fatal("purge left a genesis in memory")
		}
	}
}

func TestWellFormedToken(t *testing.T) {
	for tok, ok := range map[string]bool{model.NewTokenID(): true, "peat_": false, "peat_" + "0123456789abcdef0123456789ABCDEF": false,
		"peat_0123456789abcdef0123456789abcdef0": false} {
		if wellFormedToken(tok) != ok {
			t.Errorf("wellFormedToken(%q) != %v", tok, ok)
		}
	}
}

// BenchmarkEnrollOpen measures the whole enrollment service (formation and
// org reads, signature, atomic store write) per backend, without HTTP.
func BenchmarkEnrollOpen(b *testing.B) {
	backendtest.EachB(b, func(b *testing.B, st store.Store) {
		ctx := context.Background()
		ten := tenant.New(st, nil, tenant.Options{})
		svc := New(ten, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer svc.Close()
		if _, err := ten.CreateOrg(ctx, "bench", "bench"); err != nil {
			b.Fatal(err)
		}
		q := model.OrgQuotas{MaxFormations: 10, MaxPeersPerFormation: 1 << 31, MaxDocumentsPerFormation: 1,
			MaxCdcSinks: 1, MaxEnrollmentsPerHour: 1 << 31}
		if _, err := ten.UpdateOrg(ctx, "bench", tenant.OrgPatch{Quotas: &q}); err != nil {
			b.Fatal(err)
		}
		if _, err := ten.CreateFormation(ctx, "bench", "fleet", model.PolicyOpen); err != nil {
			b.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		pk := hex.EncodeToString(pub)
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				node := "node-" + strconv.FormatInt(n.Add(1), 10)
				r, err := svc.Enroll(ctx, "bench", "fleet", Request{PublicKey: &pk, NodeID: &node})
				if err != nil || r.Certificate == nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkIssue measures the enrollment layer's own CPU cost for one
// certificate: cache lookup, signature, encoding, serial.
func BenchmarkIssue(b *testing.B) {
	fg := &fakeGeneses{seeds: map[string]byte{}}
	f := fg.formation("o", "a", 1)
	s := &Service{cache: newGenesisCache(fg.load, 16, time.Minute, time.Now)}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	node := "node-1"
	a := &attempt{org: model.Organization{OrgID: "o"}, f: f, nowMs: 1, subKey: pub, nodeID: &node}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := s.issue(context.Background(), a, model.Approval{Tier: model.TierEndpoint}, &Response{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCachedViewNeverDecides checks that the view cache never changes an
// answer: quota, status and formation changes made after a cached
// enrollment apply to the very next one, on both backends, and a denial
// reached through a stale view is audited once.
func TestCachedViewNeverDecides(t *testing.T) {
	backendtest.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		ten := tenant.New(st, nil, tenant.Options{})
		svc := New(ten, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer svc.Close()
		if _, err := ten.CreateOrg(ctx, "o", "o"); err != nil {
			t.Fatal(err)
		}
		if _, err := ten.CreateFormation(ctx, "o", "f", model.PolicyOpen); err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		pk := hex.EncodeToString(pub)
		var n int
		enroll := func() (*Response, error) {
			n++
			node := "node-" + strconv.Itoa(n)
			return svc.Enroll(ctx, "o", "f", Request{PublicKey: &pk, NodeID: &node})
		}
		kind := func(err error) string {
			if err == nil {
				return "ok"
			}
			var e *errs.Error
			if errors.As(err, &e) {
				return strconv.Itoa(int(e.Kind))
			}
			return err.Error()
		}
		expect := func(step, want string) *Response {
			t.Helper()
			r, err := enroll()
			if got := kind(err); got != want {
				t.Fatalf("%s: got %s (%v), want %s", step, got, err, want)
			}
			return r
		}
		first := expect("first", "ok")

		// Rate limit lowered under the cached view: refused at once.
		q, _ := ten.GetOrg(ctx, "o")
		quotas := q.Quotas
		quotas.MaxEnrollmentsPerHour = 1
		if _, err := ten.UpdateOrg(ctx, "o", tenant.OrgPatch{Quotas: &quotas}); err != nil {
			t.Fatal(err)
		}
		expect("rate limit lowered", strconv.Itoa(int(errs.RateLimited)))
		quotas.MaxEnrollmentsPerHour = 1000
		if _, err := ten.UpdateOrg(ctx, "o", tenant.OrgPatch{Quotas: &quotas}); err != nil {
			t.Fatal(err)
		}
		expect("rate limit raised", "ok")

		if _, err := ten.SetFormationStatus(ctx, "o", "f", model.FormationSuspended); err != nil {
			t.Fatal(err)
		}
		expect("suspended", strconv.Itoa(int(errs.Conflict)))
		if _, err := ten.SetFormationStatus(ctx, "o", "f", model.FormationActive); err != nil {
			t.Fatal(err)
		}
		expect("resumed", "ok")

		// Re-created as Strict behind the service's back (no Forget): the
		// cached Open view must not approve, and the denial is audited once.
		if err := ten.DeleteFormation(ctx, "o", "f"); err != nil {
			t.Fatal(err)
		}
		strict, err := ten.CreateFormation(ctx, "o", "f", model.PolicyStrict)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := st.ListAudit(ctx, "o", nil, 1000)
		expect("re-created Strict", strconv.Itoa(int(errs.Forbidden)))
		after, _ := st.ListAudit(ctx, "o", nil, 1000)
		if len(after) != len(before)+1 || after[0].Decision.Denied == nil {
			t.Fatalf("strict denial: %d audit entries, was %d", len(after), len(before))
		}

		// Re-created Open: the certificate comes from the new authority.
		if err := ten.DeleteFormation(ctx, "o", "f"); err != nil {
			t.Fatal(err)
		}
		open, err := ten.CreateFormation(ctx, "o", "f", model.PolicyOpen)
		if err != nil {
			t.Fatal(err)
		}
		r := expect("re-created Open", "ok")
		if *r.MeshID != open.MeshID || *r.MeshID == *first.MeshID || *r.MeshID == strict.MeshID ||
			*r.AuthorityPublicKey == *first.AuthorityPublicKey {
			t.Fatalf("certificate from mesh %s (authority %s), want the new formation's %s", *r.MeshID,
				*r.AuthorityPublicKey, open.MeshID)
		}
	})
}
