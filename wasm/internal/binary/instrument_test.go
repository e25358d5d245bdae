package binary

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

// rich exercises everything the rewriter renumbers: an existing function
// import, calls, call_indirect through an element segment, ref.func in a
// global initialiser, exports, a start function and the name section.
const rich = `(module
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (type $unary (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $double $triple)
  (global $fref funcref (ref.func $double))
  (global $started (mut i32) (i32.const 0))
  (memory (export "memory") 1)
  (func $double (param i32) (result i32) (call $add (local.get 0) (local.get 0)))
  (func $triple (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3)))
  (func $init (global.set $started (i32.const 1)))
  (start $init)
  (func (export "started") (result i32) (global.get $started))
  (func (export "sum") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i32.add (local.get $acc)
        (call_indirect (type $unary) (local.get $i) (i32.and (local.get $i) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $acc))
  (func $boom (export "boom") unreachable))`

// bare has no import, global or type-less gaps to fill: the rewriter must
// create the import and global sections in the right order.
const bare = `(module
  (func (export "count") (param $n i32) (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $i)))`

func instantiate(t *testing.T, src []byte, ticks *int) api.Module {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { r.Close(ctx) })
	_, err := r.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithFunc(func(a, b uint32) uint32 { return a + b }).Export("add").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.NewHostModuleBuilder("gw").
		NewFunctionBuilder().WithFunc(func() { *ticks++ }).Export("tick").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Instantiate(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func instrumented(t *testing.T, wat string, interval int32) []byte {
	t.Helper()
	src := wasmtest.Wat2Wasm(t, wat)
	m, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Instrument(src, m, "gw", "tick", interval)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func call(t *testing.T, m api.Module, name string, args ...uint64) uint64 {
	t.Helper()
	res, err := m.ExportedFunction(name).Call(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

func TestInstrumentKeepsBehaviour(t *testing.T) {
	var plainTicks, ticks int
	plain := instantiate(t, wasmtest.Wat2Wasm(t, rich), &plainTicks)
	inst := instantiate(t, instrumented(t, rich, 16), &ticks)
	for _, n := range []uint64{0, 1, 7, 1000} {
		if got, want := call(t, inst, "sum", n), call(t, plain, "sum", n); got != want {
			t.Errorf("sum(%d) = %d instrumented, %d plain", n, got, want)
		}
	}
	if call(t, inst, "started") != 1 {
		t.Error("start function did not run after renumbering")
	}
	if ticks == 0 {
		t.Error("tick never called")
	}
	_, err := inst.ExportedFunction("boom").Call(context.Background())
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("trap %v does not name the function: name section not renumbered", err)
	}
}

func TestInstrumentTickRate(t *testing.T) {
	var ticks int
	m := instantiate(t, instrumented(t, bare, 100), &ticks)
	if got := call(t, m, "count", 10000); got != 10000 {
		t.Fatalf("count = %d", got)
	}
	// 10,000 loop headers plus one function entry, one tick per 100.
	if ticks != 100 {
		t.Errorf("ticks = %d, want 100", ticks)
	}
}

func TestParseRejects(t *testing.T) {
	good := wasmtest.Wat2Wasm(t, bare)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("(module)"),
		"version 2": append([]byte("\x00asm\x02\x00\x00\x00"), good[8:]...),
	} {
		if _, err := Parse(b); err != ErrNotWasm {
			t.Errorf("%s: %v, want ErrNotWasm", name, err)
		}
	}
	if _, err := Parse(good[:len(good)-3]); err == nil {
		t.Error("truncated module parsed")
	}
}

// FuzzInstrument checks that hostile bytes never panic the parser or the
// rewriter, and that whatever the rewriter accepts still parses.
func FuzzInstrument(f *testing.F) {
	f.Add(wasmtest.Wat2Wasm(f, bare))
	f.Add(wasmtest.Wat2Wasm(f, rich))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		out, err := Instrument(b, m, "gw", "tick", 1024)
		if err != nil {
			return
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("instrumented output does not parse: %v", err)
		}
	})
}
