package wasm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

func newHost(tb testing.TB, cfg Config) *Host {
	tb.Helper()
	h, err := NewHost(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func load(tb testing.TB, h *Host, b []byte) *Module {
	tb.Helper()
	m, err := h.Load(context.Background(), b)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func chain(tb testing.TB, h *Host, tenant string, bs ...Binding) *Chain {
	tb.Helper()
	c, err := h.NewChain(context.Background(), tenant, bs)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// testEvents returns n events whose timestamp is their index plus base.
func testEvents(n, base int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		k := base + i
		evs[i] = Event{
			Op: "upsert", OrgID: "org1", AppID: "app1", DocumentID: fmt.Sprintf("doc-%d", k),
			ChangeHash: fmt.Sprintf("%064x", k), ActorID: "api", TimestampMs: uint64(k),
			Body: []byte(fmt.Sprintf(`{"n":%d,"type":"order","secret":"s%d"}`, k, k)),
		}
	}
	return evs
}

func run(tb testing.TB, c *Chain, evs []Event) []Outcome {
	tb.Helper()
	outs, err := c.Run(context.Background(), evs)
	if err != nil {
		tb.Fatal(err)
	}
	if len(outs) != len(evs) {
		tb.Fatalf("%d outcomes for %d events", len(outs), len(evs))
	}
	return outs
}

func goGuest(t *testing.T) []byte { return wasmtest.BuildGo(t, "testdata/goguest") }

func TestValidateRules(t *testing.T) {
	h := newHost(t, Config{MaxModuleBytes: 64 << 10})
	big := append(wat(t, watKeep), make([]byte, 70<<10)...)
	tests := []struct {
		name, rule, mention string
		mod                 []byte
	}{
		{"not wasm", "magic", "magic", []byte("#!/bin/sh\necho hi")},
		{"too big", "size", "limit", big},
		{"missing gw_process", "missing_export", "gw_process", wasmtest.Wat2Wasm(t, watNoProcess)},
		{"command module", "command_module", "_start", wasmtest.Wat2Wasm(t, watCommand)},
		{"wasi path_open", "forbidden_import", "wasi_snapshot_preview1.path_open", wat(t, watForbidden)},
		{"custom host import", "forbidden_import", "env.exfiltrate", wat(t, watCustomImport)},
		{"truncated", "malformed", "", wat(t, watKeep)[:40]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Validate(tc.mod)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Rule != tc.rule {
				t.Fatalf("Validate: got %v, want rule %q", err, tc.rule)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
			if _, err := h.Load(context.Background(), tc.mod); !errors.As(err, &ve) {
				t.Errorf("Load accepted what Validate refused: %v", err)
			}
		})
	}
	_, err := h.Load(context.Background(), wasmtest.Wat2Wasm(t, strings.Replace(watCommand,
		`(func (export "_start"))`, "", 1)))
	if err != nil {
		t.Fatalf("well-typed module refused: %v", err)
	}
	badSig := strings.Replace(strings.Replace(watCommand, `(func (export "_start"))`, "", 1),
		`(func (export "gw_process") (param i32) (result i64) (i64.const -1))`,
		`(func (export "gw_process") (param i32 i32) (result i32) (i32.const -1))`, 1)
	_, err = h.Load(context.Background(), wasmtest.Wat2Wasm(t, badSig))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Rule != "export_signature" || !strings.Contains(err.Error(), "gw_process") {
		t.Errorf("wrong gw_process type: %v", err)
	}
	info, err := h.Validate(wat(t, watKeep))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.SHA256) != 64 || info.Size == 0 {
		t.Errorf("info = %+v", info)
	}
}

func TestLoadIsContentAddressed(t *testing.T) {
	h := newHost(t, Config{})
	a := load(t, h, wat(t, watKeep))
	b := load(t, h, append([]byte(nil), wat(t, watKeep)...))
	c := load(t, h, wat(t, watDropOdd))
	if a != b {
		t.Error("same bytes loaded twice gave two modules")
	}
	if a.SHA256() == c.SHA256() {
		t.Error("different modules share a digest")
	}
	ch := chain(t, h, "t", Binding{Name: "f", Module: c})
	if err := h.Unload(context.Background(), c.SHA256()); err == nil {
		t.Error("Unload of a bound module succeeded")
	}
	ch.Close()
	if err := h.Unload(context.Background(), c.SHA256()); err != nil {
		t.Errorf("Unload after the chain closed: %v", err)
	}
	if load(t, h, wat(t, watDropOdd)) == c {
		t.Error("Load after Unload returned the unloaded module")
	}
}

func TestVerdictsAndChainOrder(t *testing.T) {
	h := newHost(t, Config{})
	c := chain(t, h, "t1",
		Binding{Name: "drop-odd", Module: load(t, h, wat(t, watDropOdd))},
		Binding{Name: "upper", Module: load(t, h, goGuest(t)), Config: []byte(`{"mode":"upper"}`)},
		Binding{Name: "route", Module: load(t, h, wat(t, watVersion1))},
	)
	evs := testEvents(300, 0) // more than one guest batch
	outs := run(t, c, evs)
	for i, o := range outs {
		if i%2 == 1 {
			if o.Verdict != Drop || o.Filter != "drop-odd" {
				t.Fatalf("event %d: %+v, want drop by drop-odd", i, o)
			}
			continue
		}
		want := fmt.Sprintf(`{"doc":"DOC-%d"}`, i)
		if o.Verdict != Replace || string(o.Body) != want || o.Route != "v1" {
			t.Fatalf("event %d: %+v, want replace %s routed to v1", i, o, want)
		}
	}
}

func TestTrapEvery100thIsolatesPoisonEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHost(t, Config{Registerer: reg})
	c := chain(t, h, "t1", Binding{Name: "trap100", Module: load(t, h, wat(t, watTrap100))})
	evs := testEvents(1000, 1)
	outs := run(t, c, evs)
	for i, o := range outs {
		poison := evs[i].TimestampMs%100 == 0
		switch {
		case poison && (o.Verdict != Error || !strings.Contains(o.Err, "unreachable") || o.Filter != "trap100"):
			t.Fatalf("poison event %d: %+v", i, o)
		case !poison && o.Verdict != Keep:
			t.Fatalf("event %d: %+v, want keep", i, o)
		}
	}
	pm := c.links[0].pool.m
	if got := value(pm.out[Error]); got != 10 {
		t.Errorf("error verdict metric = %v, want 10", got)
	}
	if got := value(pm.eventsIn); got != 1000 {
		t.Errorf("events in = %v, want 1000", got)
	}
	if got := value(pm.traps); got < 10 {
		t.Errorf("traps = %v, want at least one per poison event", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"peat_filter_calls_total", "peat_filter_events_in_total", "peat_filter_events_out_total",
		"peat_filter_traps_total", "peat_filter_call_duration_seconds", "peat_filter_instances"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	if st := c.Status()[0]; st.Breaker != BreakerClosed {
		t.Errorf("isolated poison events tripped the breaker: %+v", st)
	}
	c.Close()
	if got := value(pm.instances); got != 0 {
		t.Errorf("instances after close = %v, want 0", got)
	}
}

func TestPolicies(t *testing.T) {
	h := newHost(t, Config{})
	mod := load(t, h, wat(t, watTrap100))
	for _, tc := range []struct {
		policy string
		want   Verdict
	}{{"", Error}, {"dead_letter", Error}, {"drop", Drop}, {"pass", Keep}} {
		t.Run(or(tc.policy, "default"), func(t *testing.T) {
			p, err := ParsePolicy(tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			c := chain(t, h, "t1", Binding{Name: "f", Module: mod, OnError: p})
			outs := run(t, c, testEvents(3, 99)) // timestamps 99, 100, 101
			if outs[0].Verdict != Keep || outs[2].Verdict != Keep {
				t.Fatalf("healthy events: %+v", outs)
			}
			if outs[1].Verdict != tc.want || outs[1].Err == "" {
				t.Fatalf("poison event: %+v, want %v with error text", outs[1], tc.want)
			}
		})
	}
	if _, err := ParsePolicy("retry"); err == nil {
		t.Error("ParsePolicy accepted an unknown policy")
	}
}

// healthyTenant keeps filtering batches for another tenant until stop is
// closed and returns the number of events it saw kept.
func healthyTenant(t *testing.T, h *Host, stop chan struct{}) func() int {
	c := chain(t, h, "healthy", Binding{Name: "keep", Module: load(t, h, wat(t, watKeep))})
	var kept atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(stop) }); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			outs, err := c.Run(context.Background(), testEvents(64, k*64))
			if err != nil {
				t.Error(err)
				return
			}
			for _, o := range outs {
				if o.Verdict == Keep {
					kept.Add(1)
				}
			}
		}
	}()
	return func() int {
		once.Do(func() { close(stop) })
		wg.Wait()
		return int(kept.Load())
	}
}

func TestRunawayModulesAreStopped(t *testing.T) {
	tests := []struct {
		name string
		mod  func(t *testing.T) []byte
		cfg  string
	}{
		{"wat infinite loop", func(t *testing.T) []byte { return wat(t, watSpin) }, ""},
		{"wat loop-free recursion", func(t *testing.T) []byte { return wat(t, watFib) }, ""},
		{"go infinite loop", goGuest, `{"mode":"spin"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Config{})
			mod := load(t, h, tc.mod(t))
			stop := make(chan struct{})
			healthy := healthyTenant(t, h, stop)
			c := chain(t, h, "evil", Binding{Name: "spin", Module: mod, Config: []byte(tc.cfg)})

			start := time.Now()
			outs := run(t, c, testEvents(1, 0))
			took := time.Since(start)
			if outs[0].Verdict != Error || !strings.Contains(outs[0].Err, "time budget") {
				t.Fatalf("outcome %+v, want a time-budget error", outs[0])
			}
			// The budget is 100 ms; a generous bound keeps this stable on a
			// loaded 2-core machine.
			if took > time.Second {
				t.Errorf("runaway call took %v", took)
			}
			t.Logf("runaway stopped after %v", took)

			// A spinning guest must not block GC stop-the-world.
			done := make(chan time.Duration)
			go func() {
				c.Run(context.Background(), testEvents(1, 0))
			}()
			go func() {
				time.Sleep(20 * time.Millisecond)
				s := time.Now()
				runtime.GC()
				done <- time.Since(s)
			}()
			select {
			case d := <-done:
				t.Logf("GC during a spinning guest took %v", d)
			case <-time.After(5 * time.Second):
				t.Fatal("GC stalled behind a spinning guest")
			}
			if n := healthy(); n == 0 {
				t.Error("the healthy tenant made no progress while the runaway ran")
			}
		})
	}
}

func TestMemoryBombIsContained(t *testing.T) {
	tests := []struct {
		name string
		mod  func(t *testing.T) []byte
		cfg  string
	}{
		{"wat memory.grow loop", func(t *testing.T) []byte { return wat(t, watMemBomb) }, ""},
		{"go allocation loop", goGuest, `{"mode":"oom"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Config{})
			stop := make(chan struct{})
			healthy := healthyTenant(t, h, stop)
			c := chain(t, h, "evil", Binding{Name: "bomb", Module: load(t, h, tc.mod(t)), Config: []byte(tc.cfg), MemoryLimitPages: 256})
			outs := run(t, c, testEvents(4, 0))
			for i, o := range outs {
				if o.Verdict != Error || o.Err == "" {
					t.Fatalf("event %d: %+v, want error", i, o)
				}
			}
			t.Logf("memory bomb error: %.200s", outs[0].Err)
			if n := healthy(); n == 0 {
				t.Error("the healthy tenant made no progress")
			}
		})
	}
}

func TestGoPanicCostsOnlyItsEvent(t *testing.T) {
	h := newHost(t, Config{})
	c := chain(t, h, "t1", Binding{Name: "p", Module: load(t, h, goGuest(t)), Config: []byte(`{"mode":"panic"}`)})
	outs := run(t, c, testEvents(30, 0))
	for i, o := range outs {
		bad := i == 13
		if bad != (o.Verdict == Error) {
			t.Fatalf("event %d: %+v", i, o)
		}
		if bad && !strings.Contains(o.Err, "nil map") {
			t.Errorf("panic text missing: %q", o.Err)
		}
	}
}

func TestConfigRejectedAtBind(t *testing.T) {
	h := newHost(t, Config{})
	_, err := h.NewChain(context.Background(), "t1", []Binding{{Name: "r", Module: load(t, h, goGuest(t)), Config: []byte(`{"mode":"reject"}`)}})
	if err == nil || !strings.Contains(err.Error(), "refused on purpose") {
		t.Fatalf("NewChain: %v, want the guest's config error", err)
	}
}

func TestCircuitBreakerOpensAndRecovers(t *testing.T) {
	h := newHost(t, Config{BreakerThreshold: 3, BreakerCooldown: 200 * time.Millisecond})
	mod := load(t, h, wat(t, watBadVerdict))
	c := chain(t, h, "t1", Binding{Name: "bad", Module: mod})
	// Every call fails: bisecting the batch of 4 isolates three events, which
	// opens the breaker; the fourth is refused without a guest call.
	outs := run(t, c, testEvents(4, 0))
	for i, o := range outs {
		if o.Verdict != Error {
			t.Fatalf("event %d: %+v", i, o)
		}
	}
	if !strings.Contains(outs[3].Err, "circuit breaker") || !strings.Contains(outs[0].Err, "unknown verdict") {
		t.Errorf("outcomes %+v", outs)
	}
	st := c.Status()[0]
	if st.Breaker != BreakerOpen || !strings.Contains(st.LastError, "unknown verdict") {
		t.Fatalf("status %+v, want open breaker with the module error", st)
	}
	calls := value(c.links[0].pool.m.calls)
	outs = run(t, c, testEvents(2, 0))
	if !strings.Contains(outs[0].Err, "circuit breaker") {
		t.Errorf("open breaker outcome: %+v", outs[0])
	}
	if value(c.links[0].pool.m.calls) != calls {
		t.Error("guest was called while the breaker was open")
	}
	time.Sleep(250 * time.Millisecond)
	if got := c.Status()[0].Breaker; got != BreakerHalfOpen {
		t.Errorf("after cooldown breaker is %s, want half_open", got)
	}
	// Swap in a fixed module under the same name: a new pool, closed breaker.
	if err := c.Update(context.Background(), []Binding{{Name: "bad", Module: load(t, h, wat(t, watKeep))}}); err != nil {
		t.Fatal(err)
	}
	if outs := run(t, c, testEvents(2, 0)); outs[0].Verdict != Keep {
		t.Errorf("after fix: %+v", outs[0])
	}
	if got := c.Status()[0].Breaker; got != BreakerClosed {
		t.Errorf("breaker %s after fix", got)
	}
}

func TestHotReloadEachEventOnce(t *testing.T) {
	h := newHost(t, Config{})
	v1, v2 := load(t, h, wat(t, watVersion1)), load(t, h, wat(t, watVersion2))
	c := chain(t, h, "t1", Binding{Name: "f", Module: v1})
	const total, batch, swaps = 50000, 100, 20
	var wg sync.WaitGroup
	seen := make([]string, total)
	var processed atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for lo := w * batch; lo < total; lo += 2 * batch {
				evs := testEvents(batch, lo)
				outs, err := c.Run(context.Background(), evs)
				if err != nil {
					t.Error(err)
					return
				}
				for i, o := range outs {
					if o.Verdict != Keep {
						t.Errorf("event %d: %+v", lo+i, o)
					}
					seen[lo+i] = o.Route
				}
				processed.Add(batch)
			}
		}(w)
	}
	for s := 0; s < swaps; s++ {
		for processed.Load() < int64((s+1)*total/(swaps+1)) {
			time.Sleep(time.Millisecond)
		}
		next := v2
		if s%2 == 1 {
			next = v1
		}
		if err := c.Update(context.Background(), []Binding{{Name: "f", Module: next}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	counts := map[string]int{}
	for i, r := range seen {
		if r != "v1" && r != "v2" {
			t.Fatalf("event %d processed by %q", i, r)
		}
		counts[r]++
	}
	if counts["v1"] == 0 || counts["v2"] == 0 {
		t.Errorf("versions seen: %v", counts)
	}
	t.Logf("versions: %v", counts)
}

func TestTenantsDoNotSharePools(t *testing.T) {
	h := newHost(t, Config{})
	mod := load(t, h, wat(t, watKeep))
	a := chain(t, h, "a", Binding{Name: "f", Module: mod})
	b := chain(t, h, "b", Binding{Name: "f", Module: mod})
	if a.links[0].pool == b.links[0].pool {
		t.Fatal("two tenants share an instance pool")
	}
	a2 := chain(t, h, "a", Binding{Name: "f", Module: mod})
	if a.links[0].pool != a2.links[0].pool {
		t.Error("same tenant, module and config did not share a pool")
	}
}

func TestCompilationCacheSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	mod := goGuest(t)
	for i := 0; i < 2; i++ {
		h, err := NewHost(context.Background(), Config{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		m := load(t, h, mod)
		t.Logf("load %d took %v", i, time.Since(start))
		c, err := h.NewChain(context.Background(), "t", []Binding{{Name: "k", Module: m, Config: []byte(`{"mode":"keep"}`)}})
		if err != nil {
			t.Fatal(err)
		}
		if outs := run(t, c, testEvents(3, 0)); outs[2].Verdict != Keep {
			t.Fatalf("outcome %+v", outs[2])
		}
		c.Close()
		if err := h.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunAfterCloseAndCancel(t *testing.T) {
	h := newHost(t, Config{})
	c := chain(t, h, "t", Binding{Name: "k", Module: load(t, h, wat(t, watKeep))})
	c.Close()
	if _, err := c.Run(context.Background(), testEvents(1, 0)); err == nil {
		t.Error("Run on a closed chain succeeded")
	}
}

// value reads a counter or gauge without a registry round trip.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.GetCounter().GetValue()
	}
	return d.GetGauge().GetValue()
}

func TestEveryEventAccountedForUnderRunaway(t *testing.T) {
	h := newHost(t, Config{BreakerThreshold: 3})
	c := chain(t, h, "evil", Binding{Name: "spin", Module: load(t, h, wat(t, watSpin)), Timeout: 20 * time.Millisecond})
	start := time.Now()
	outs := run(t, c, testEvents(500, 0))
	for i, o := range outs {
		if o.Verdict != Error || o.Err == "" {
			t.Fatalf("event %d: %+v", i, o)
		}
	}
	// The breaker bounds the damage: three timed-out calls, then refusals.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("500 events against a spinning module took %v", took)
	}
	if st := c.Status()[0]; st.Breaker != BreakerOpen {
		t.Errorf("status %+v", st)
	}
}

func TestCloseStopsRunningGuests(t *testing.T) {
	h, err := NewHost(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.NewChain(context.Background(), "t", []Binding{{Name: "spin", Module: load(t, h, wat(t, watSpin)), Timeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), testEvents(1, 0))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the guest start spinning
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Run interrupted by Close returned outcomes")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if _, err := c.Run(context.Background(), testEvents(1, 0)); err == nil {
		t.Error("Run after Close succeeded")
	}
}
