package wasm

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

// benchEvents are CDC-shaped events with a ~300-byte body.
func benchEvents(n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{
			Op: "upsert", OrgID: "org-bench", AppID: "formation-1", DocumentID: fmt.Sprintf("customer:%d", i),
			ChangeHash: fmt.Sprintf("%064x", i), ActorID: "api", TimestampMs: 1714566896123 + uint64(i),
			Body: []byte(`{"id":1042,"email":"alice@example.com","name":"Alice Example","password":"hunter2",` +
				`"created_at":"2024-05-01T12:34:56Z","balance":1234.56,"address":{"street":"1 Main St","city":"Springfield",` +
				`"zip":"12345"},"card":{"number":"4111111111111111","exp":"12/29"},"type":"customer","tier":"gold"}`),
		}
	}
	return evs
}

func benchChain(b *testing.B, mod []byte, cfg string) *Chain {
	h := newHost(b, Config{})
	return chain(b, h, "bench", Binding{Name: "f", Module: load(b, h, mod), Config: []byte(cfg)})
}

func benchRun(b *testing.B, c *Chain, batch int) {
	evs := benchEvents(batch)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		outs, err := c.Run(ctx, evs)
		if err != nil || outs[0].Verdict == Error {
			b.Fatal(err, outs[0].Err)
		}
	}
	b.StopTimer()
	perEvent := float64(b.Elapsed().Nanoseconds()) / float64(b.N*batch)
	b.ReportMetric(perEvent, "ns/event")
	b.ReportMetric(1e9/perEvent, "events/s")
}

// BenchmarkGoKeep is the per-event cost of a keep-everything Go filter,
// amortised over guest batches (full host path: frame, call, verdicts).
func BenchmarkGoKeep(b *testing.B) {
	c := benchChain(b, wasmtest.BuildGo(b, "testdata/goguest"), `{"mode":"keep"}`)
	for _, n := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchRun(b, c, n) })
	}
}

// BenchmarkWatKeep is the same for a hand-written WAT filter.
func BenchmarkWatKeep(b *testing.B) {
	benchRun(b, benchChain(b, wat(b, watKeep), ""), 128)
}

// BenchmarkRedact runs the redact example (three paths, one nested).
func BenchmarkRedact(b *testing.B) {
	c := benchChain(b, wasmtest.BuildGo(b, "../filters/examples/redact"), `{"paths":["password","card.number","email"]}`)
	benchRun(b, c, 128)
}

// BenchmarkColdStart is upload to first filtered event: validate,
// instrument, compile (no cache), instantiate, init, one batch.
func BenchmarkColdStart(b *testing.B) {
	mod := wasmtest.BuildGo(b, "testdata/goguest")
	benchStart(b, mod, "")
}

// BenchmarkWarmRestart is the same on a new host whose compilation cache
// directory was filled by an earlier process.
func BenchmarkWarmRestart(b *testing.B) {
	mod := wasmtest.BuildGo(b, "testdata/goguest")
	dir := b.TempDir()
	h, err := NewHost(context.Background(), Config{CacheDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	load(b, h, mod)
	_ = h.Close(context.Background())
	benchStart(b, mod, dir)
}

func benchStart(b *testing.B, mod []byte, dir string) {
	ctx := context.Background()
	evs := benchEvents(1)
	for b.Loop() {
		h, err := NewHost(ctx, Config{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		m, err := h.Load(ctx, mod)
		if err != nil {
			b.Fatal(err)
		}
		c, err := h.NewChain(ctx, "t", []Binding{{Name: "f", Module: m}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(ctx, evs); err != nil {
			b.Fatal(err)
		}
		c.Close()
		_ = h.Close(ctx)
	}
}

// BenchmarkTimeLimit compares the time-limit mechanisms on the same batch of
// 128 events through gw_process of the Go keep filter, called directly:
// none (unsafe), wazero's WithCloseOnContextDone, and the tick
// instrumentation the host uses.
func BenchmarkTimeLimit(b *testing.B) {
	mod := wasmtest.BuildGo(b, "testdata/goguest")
	evs := benchEvents(128)
	for _, mode := range []string{"none", "close_on_ctx_done", "tick"} {
		b.Run(mode, func(b *testing.B) {
			if mode == "tick" {
				benchRun(b, benchChain(b, mod, ""), 128)
				return
			}
			ctx := context.Background()
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(mode != "none"))
			defer r.Close(ctx)
			wasi_snapshot_preview1.MustInstantiate(ctx, r)
			cm, err := r.CompileModule(ctx, mod)
			if err != nil {
				b.Fatal(err)
			}
			m, err := r.InstantiateModule(ctx, cm, newInstanceConfig(&capBuffer{}))
			if err != nil {
				b.Fatal(err)
			}
			size := frameSize(evs)
			alloc, process := m.ExportedFunction(exportAlloc), m.ExportedFunction(exportProcess)
			stack := []uint64{uint64(size)}
			if err := alloc.CallWithStack(ctx, stack); err != nil {
				b.Fatal(err)
			}
			ptr := uint32(stack[0])
			res := make([]result, len(evs))
			b.ResetTimer()
			for b.Loop() {
				cctx := ctx
				var cancel context.CancelFunc
				if mode != "none" {
					cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
				}
				dst, _ := m.Memory().Read(ptr, uint32(size))
				encodeFrame(dst, evs)
				stack[0] = uint64(size)
				if err := process.CallWithStack(cctx, stack); err != nil {
					b.Fatal(err)
				}
				out, _ := m.Memory().Read(uint32(stack[0]>>32), uint32(stack[0]))
				if err := decodeOutput(out, res); err != nil {
					b.Fatal(err)
				}
				if cancel != nil {
					cancel()
				}
			}
			b.StopTimer()
			perEvent := float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(evs))
			b.ReportMetric(perEvent, "ns/event")
		})
	}
}

// BenchmarkTightLoop is the worst case for the tick: a WAT loop of 10,000
// iterations with almost no work per iteration.
func BenchmarkTightLoop(b *testing.B) {
	const loopWat = `(module
	  (memory (export "memory") 1)
	  (func (export "_initialize"))
	  (func (export "gw_abi_v1"))
	  (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
	  (func (export "gw_init") (param i32) (result i64) (i64.const 0))
	  (func (export "gw_process") (param i32) (result i64) (i64.const -1))
	  (func (export "count") (result i32) (local $i i32)
	    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
	      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
	    (local.get $i)))`
	src := wasmtest.Wat2Wasm(b, loopWat)
	for _, mode := range []string{"none", "close_on_ctx_done", "tick"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			h := newHost(b, Config{})
			code := src
			rc := wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(mode == "close_on_ctx_done")
			r := h.rt
			if mode != "tick" {
				r = wazero.NewRuntimeWithConfig(ctx, rc)
				defer r.Close(ctx)
			} else {
				m := load(b, h, src)
				_ = m
				code = nil
			}
			var fn func() error
			if code != nil {
				m, err := r.Instantiate(ctx, code)
				if err != nil {
					b.Fatal(err)
				}
				f := m.ExportedFunction("count")
				stack := make([]uint64, 1)
				fn = func() error { return f.CallWithStack(ctx, stack) }
			} else {
				in, err := newInstance(ctx, h, h.modules[mustSum(b, h, src)], nil, 16, time.Second, time.Second)
				if err != nil {
					b.Fatal(err)
				}
				f := in.mod.ExportedFunction("count")
				stack := make([]uint64, 1)
				fn = func() error { return f.CallWithStack(in.ctx, stack) }
			}
			for b.Loop() {
				if err := fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustSum(b *testing.B, h *Host, src []byte) string {
	info, err := h.Validate(src)
	if err != nil {
		b.Fatal(err)
	}
	return info.SHA256
}
