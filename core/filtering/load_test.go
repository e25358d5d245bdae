package filtering_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/filtering"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/store/sqlite"
)

// TestMaliciousModulesContained binds each fault module to org "evil" and
// checks that every evil event is accounted for (kept, dropped or failed
// with the dead-letter policy, never missing) while org "good" keeps
// filtering; good's per-batch latency is logged beside its baseline (no
// timing assertion: the machine is shared).
func TestMaliciousModulesContained(t *testing.T) {
	redact := goFilter(t, "redact")
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "good", "evil")
		svc := newService(t, st, nil)
		if _, _, err := svc.Put(ctx, "good", "redact", redact); err != nil {
			t.Fatal(err)
		}
		// The forbidden import never gets in.
		if _, _, err := svc.Put(ctx, "evil", "forbidden", wat(t, watForbidden)); err == nil {
			t.Fatal("module importing path_open was accepted")
		}
		goodChain := []model.FilterRef{{Name: "redact", Config: []byte(`{"paths":["password"]}`)}}
		goodBatch := func() time.Duration {
			start := time.Now()
			outs := svc.Apply(ctx, "good", goodChain, events("good", 0, 64))
			d := time.Since(start)
			for i, o := range outs {
				if o.Verdict != cdc.Replace {
					t.Errorf("good event %d: %+v", i, o)
				}
			}
			return d
		}
		measure := func(stop <-chan struct{}, minDur time.Duration) []time.Duration {
			var ds []time.Duration
			deadline := time.Now().Add(minDur)
			for {
				ds = append(ds, goodBatch())
				select {
				case <-stop:
					if time.Now().After(deadline) {
						return ds
					}
				default:
				}
				if stop == nil && time.Now().After(deadline) {
					return ds
				}
			}
		}
		goodBatch() // warm the pool
		base := measure(nil, time.Second)
		t.Logf("good tenant baseline: %s", pct(base))

		for _, tc := range []struct {
			name string
			spec watSpec
			n    int
			// failed reports whether event i must fail (the rest are kept).
			failed func(i int) bool
		}{
			{"infinite loop", watSpin, 256, func(int) bool { return true }},
			{"memory bomb", watMemBomb, 256, func(int) bool { return true }},
			{"trap every 100th", watTrap100, 2000, func(i int) bool { return i%100 == 0 }},
		} {
			if _, _, err := svc.Put(ctx, "evil", "bad", wat(t, tc.spec)); err != nil {
				t.Fatal(tc.name, err)
			}
			stop := make(chan struct{})
			var during []time.Duration
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); during = measure(stop, 500*time.Millisecond) }()
			evs := events("evil", 0, tc.n)
			start := time.Now()
			outs := make([]cdc.FilterOutcome, 0, tc.n)
			for lo := 0; lo < tc.n; lo += 128 { // the dispatcher's batch size in tests
				outs = append(outs, svc.Apply(ctx, "evil", []model.FilterRef{{Name: "bad"}}, evs[lo:min(lo+128, tc.n)])...)
			}
			took := time.Since(start)
			close(stop)
			wg.Wait()
			if len(outs) != tc.n {
				t.Fatalf("%s: %d outcomes for %d events", tc.name, len(outs), tc.n)
			}
			var kept, failed, breaker int
			for i, o := range outs {
				switch {
				case o.Verdict == cdc.Fail && o.Policy == cdc.DeadLetter && tc.failed(i):
					failed++
					if o.Err == "" {
						t.Fatalf("%s: event %d failed without an error", tc.name, i)
					}
					if strings.Contains(o.Err, "circuit breaker") {
						breaker++
					}
				case o.Verdict == cdc.Keep && !tc.failed(i):
					kept++
				default:
					t.Fatalf("%s: event %d: %+v", tc.name, i, o)
				}
			}
			st := svc.Status("evil", []model.FilterRef{{Name: "bad"}})
			t.Logf("%s: %d events in %s: %d kept, %d dead-lettered (%d refused by the open breaker); breaker %s; good tenant during: %s",
				tc.name, tc.n, took.Round(time.Millisecond), kept, failed, breaker, st[0].Bindings[0].Breaker, pct(during))
			// Reset for the next fault: a new binding (and breaker) via a new version.
			if _, _, err := svc.Put(ctx, "evil", "bad", wat(t, watKeep)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// pct summarises latencies.
func pct(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return "n=" + itoa(len(s)) + " p50=" + at(0.5).Round(time.Microsecond).String() +
		" p99=" + at(0.99).Round(time.Microsecond).String() + " max=" + s[len(s)-1].Round(time.Microsecond).String()
}

func itoa(n int) string { return strconv.Itoa(n) }

func openSQLite(tb testing.TB) (store.Store, error) {
	return sqlite.Open(ctx, filepath.Join(tb.TempDir(), "gw.db"))
}

// TestHotReloadUnderLoad swaps the module 20 times while 50,000 events run
// through the chain in batches from two concurrent workers: every event
// gets exactly one outcome, produced by exactly one version (each batch is
// uniform), versions never go backwards within a worker, and every version
// is seen.
func TestHotReloadUnderLoad(t *testing.T) {
	const total, batch, swaps = 50_000, 250, 20
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		svc := newService(t, st, nil)
		mods := make([][]byte, swaps+1)
		for v := 1; v <= swaps+1; v++ {
			mods[v-1] = wat(t, watVersion(v))
		}
		if _, _, err := svc.Put(ctx, "acme", "stamp", mods[0]); err != nil {
			t.Fatal(err)
		}
		chain := []model.FilterRef{{Name: "stamp"}}
		all := events("acme", 0, total)
		versionOf := make([]int, total)
		// Workers may run segment k (of swaps+1) only once k swaps are done,
		// and swap k+1 starts halfway through segment k: every swap lands
		// while batches are in flight, and every version gets events.
		const seg = total / (swaps + 1)
		var next, done, swapped atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan string, 4)
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				last := 0
				for {
					lo := int(next.Add(batch)) - batch
					if lo >= total {
						return
					}
					hi := min(lo+batch, total)
					for int64(lo) >= (swapped.Load()+1)*seg && swapped.Load() < swaps {
						time.Sleep(100 * time.Microsecond)
					}
					outs := svc.Apply(ctx, "acme", chain, all[lo:hi])
					if len(outs) != hi-lo {
						errc <- "outcome count"
						return
					}
					bv := 0
					for j, o := range outs {
						var b struct{ V int }
						if o.Verdict != cdc.Replace || json.Unmarshal(o.Event.Patches, &b) != nil || b.V == 0 {
							errc <- "bad outcome " + string(o.Event.Patches)
							return
						}
						if versionOf[lo+j] != 0 {
							errc <- "event processed twice"
							return
						}
						versionOf[lo+j] = b.V
						if j == 0 {
							bv = b.V
						} else if b.V != bv {
							errc <- "batch mixed versions"
							return
						}
					}
					if bv < last {
						errc <- "version went backwards"
						return
					}
					last = bv
					done.Add(int64(hi - lo))
				}
			}()
		}
		start := time.Now()
		for v := 2; v <= swaps+1; v++ {
			for done.Load() < int64(v-2)*seg+seg/2 {
				time.Sleep(100 * time.Microsecond)
			}
			if m, _, err := svc.Put(ctx, "acme", "stamp", mods[v-1]); err != nil || m.Version != v {
				t.Fatalf("swap to v%d: %+v %v", v, m, err)
			}
			swapped.Add(1)
		}
		wg.Wait()
		took := time.Since(start)
		close(errc)
		for e := range errc {
			t.Fatal(e)
		}
		seen := map[int]int{}
		for i, v := range versionOf {
			if v == 0 {
				t.Fatalf("event %d lost", i)
			}
			seen[v]++
		}
		if len(seen) != swaps+1 {
			t.Fatalf("saw %d versions, want %d: %v", len(seen), swaps+1, seen)
		}
		t.Logf("%d events, %d swaps in %s (%.0f events/s incl. store writes of each version)", total, swaps, took.Round(time.Millisecond), float64(total)/took.Seconds())
	})
}

// TestColdAndWarmStart reports upload-to-first-event (cold, empty cache)
// and restart-to-first-event (warm, compilation cache on disk) for the Go
// redact filter.
func TestColdAndWarmStart(t *testing.T) {
	redact := goFilter(t, "redact")
	eachBackend(t, func(t *testing.T, st store.Store) {
		mkOrg(t, st, "acme")
		dir := t.TempDir()
		chain := []model.FilterRef{{Name: "redact", Config: []byte(`{"paths":["password"]}`)}}
		first := func(svc *filtering.Service) {
			if o := svc.Apply(ctx, "acme", chain, events("acme", 0, 1)); o[0].Verdict != cdc.Replace {
				t.Fatalf("first event: %+v", o[0])
			}
		}
		open := func() *filtering.Service {
			s, err := filtering.New(ctx, st, filtering.Config{Logger: quiet, Refresh: -1, CacheDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		closeSvc := func(s *filtering.Service) {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.Close(c); err != nil {
				t.Fatal(err)
			}
		}
		svc := open()
		start := time.Now()
		if _, _, err := svc.Put(ctx, "acme", "redact", redact); err != nil {
			t.Fatal(err)
		}
		upload := time.Since(start)
		first(svc)
		cold := time.Since(start)
		closeSvc(svc)

		svc = open()
		start = time.Now()
		first(svc)
		warm := time.Since(start)
		closeSvc(svc)

		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		svc = open()
		start = time.Now()
		first(svc)
		noCache := time.Since(start)
		closeSvc(svc)
		t.Logf("redact (%d bytes): cold upload→first event %s (upload incl. validate+compile+store %s); warm restart→first event %s with the compilation cache, %s without",
			len(redact), cold.Round(time.Millisecond), upload.Round(time.Millisecond), warm.Round(time.Millisecond), noCache.Round(time.Millisecond))
	})
}

// BenchmarkApply measures the per-event cost of Service.Apply (the
// dispatcher's call) in batches of 128 with a keep-everything WAT filter,
// the Go redact filter, and no filter.
func BenchmarkApply(b *testing.B) {
	for _, tc := range []struct {
		name  string
		chain func(b *testing.B, svc *filtering.Service) []model.FilterRef
	}{
		{"unfiltered", func(*testing.B, *filtering.Service) []model.FilterRef { return nil }},
		{"keep-wat", func(b *testing.B, svc *filtering.Service) []model.FilterRef {
			if _, _, err := svc.Put(ctx, "acme", "keep", wat(b, watKeep)); err != nil {
				b.Fatal(err)
			}
			return []model.FilterRef{{Name: "keep"}}
		}},
		{"redact-go", func(b *testing.B, svc *filtering.Service) []model.FilterRef {
			if _, _, err := svc.Put(ctx, "acme", "redact", goFilter(b, "redact")); err != nil {
				b.Fatal(err)
			}
			return []model.FilterRef{{Name: "redact", Config: []byte(`{"paths":["password"]}`)}}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st, err := openSQLite(b)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			mkOrg(b, st, "acme")
			svc := newService(b, st, nil)
			chain := tc.chain(b, svc)
			evs := events("acme", 0, 128)
			svc.Apply(ctx, "acme", chain, evs)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				svc.Apply(ctx, "acme", chain, evs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}
