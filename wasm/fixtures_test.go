package wasm

import (
	"strings"
	"testing"

	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

// abiSkeleton is a hand-written gw/v1 module: the input arena sits at 64 KiB,
// the output frame right after the input. {{DECIDE}} is the body of a function
// from a record address to a verdict, {{PROLOGUE}} runs at the start of every
// gw_process, {{ROUTE}} is a 2-byte route name as an i32 (0 = none) and
// {{EXTRA}} adds module fields.
const abiSkeleton = `(module
  {{IMPORTS}}
  (memory (export "memory") 2)
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 131072) (i32.shl (local.get $size) (i32.const 1))))
    (block $ok
      (br_if $ok (i32.ge_u (i32.shl (memory.size) (i32.const 16)) (local.get $need)))
      (if (i32.eq (memory.grow (i32.sub (i32.add (i32.shr_u (local.get $need) (i32.const 16)) (i32.const 1)) (memory.size)))
                  (i32.const -1))
        (then (return (i32.const 0)))))
    (i32.const 65536))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0))
  (func $decide (param $rec i32) (result i32) {{DECIDE}})
  {{EXTRA}}
  (func (export "gw_process") (param $len i32) (result i64)
    (local $n i32) (local $i i32) (local $out i32) (local $e i32) (local $data i32) (local $rl i32)
    {{PROLOGUE}}
    (local.set $n (i32.load (i32.const 65540)))
    (local.set $out (i32.and (i32.add (i32.add (i32.const 65536) (local.get $len)) (i32.const 7)) (i32.const -8)))
    (local.set $data (i32.add (i32.const 8) (i32.mul (local.get $n) (i32.const 20))))
    (if (i32.ne (i32.const {{ROUTE}}) (i32.const 0)) (then
      (local.set $rl (i32.const 2))
      (i32.store16 (i32.add (local.get $out) (local.get $data)) (i32.const {{ROUTE}}))))
    (i32.store (local.get $out) (i32.const 0x314F5747))
    (i32.store offset=4 (local.get $out) (local.get $n))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $e (i32.add (i32.add (local.get $out) (i32.const 8)) (i32.mul (local.get $i) (i32.const 20))))
      (i64.store (local.get $e)
        (i64.extend_i32_u (call $decide (i32.add (i32.const 65552) (i32.mul (local.get $i) (i32.const 72))))))
      (i32.store offset=8 (local.get $e) (i32.const 0))
      (i32.store offset=12 (local.get $e) (select (local.get $data) (i32.const 0) (local.get $rl)))
      (i32.store offset=16 (local.get $e) (local.get $rl))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $data) (local.get $rl))))))`

type watSpec struct {
	imports, decide, prologue, extra, route string
}

func (s watSpec) text() string {
	r := strings.NewReplacer(
		"{{IMPORTS}}", s.imports,
		"{{DECIDE}}", or(s.decide, "(i32.const 0)"),
		"{{PROLOGUE}}", s.prologue,
		"{{EXTRA}}", s.extra,
		"{{ROUTE}}", or(s.route, "0"),
	)
	return r.Replace(abiSkeleton)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Fault and behaviour modules. Timestamps in test events are the event index,
// so decisions keyed on them are deterministic.
var (
	watKeep = watSpec{}
	// watDropOdd drops events with an odd timestamp.
	watDropOdd = watSpec{decide: `(i32.and (i32.wrap_i64 (i64.load offset=8 (local.get $rec))) (i32.const 1))`}
	// watTrap100 traps on every event whose timestamp is a multiple of 100.
	watTrap100 = watSpec{decide: `(if (i64.eqz (i64.rem_u (i64.load offset=8 (local.get $rec)) (i64.const 100)))
	    (then unreachable)) (i32.const 0)`}
	// watSpin loops forever in gw_process.
	watSpin = watSpec{prologue: `(loop $spin (br $spin))`}
	// watFib burns exponential time in recursion with no loop at all, so
	// only the function-entry tick can stop it.
	watFib = watSpec{
		extra: `(func $fib (param $n i32) (result i32)
		  (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
		    (then (local.get $n))
		    (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
		                   (call $fib (i32.sub (local.get $n) (i32.const 2)))))))`,
		prologue: `(drop (call $fib (i32.const 60)))`,
	}
	// watMemBomb grows memory until refused, then traps.
	watMemBomb = watSpec{prologue: `(block $full (loop $grow
	    (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
	    (br $grow)))
	  unreachable`}
	// watBadVerdict answers verdict 9.
	watBadVerdict = watSpec{decide: `(i32.const 9)`}
	// watForbidden imports a WASI filesystem call.
	watForbidden = watSpec{imports: `(import "wasi_snapshot_preview1" "path_open"
	    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))`}
	// watCustomImport imports a host function the ABI does not grant.
	watCustomImport = watSpec{imports: `(import "env" "exfiltrate" (func $x (param i32 i32)))`}
	watVersion1     = watSpec{route: "0x3176"} // routes to "v1"
	watVersion2     = watSpec{route: "0x3276"} // routes to "v2"
)

const watNoProcess = `(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0)))`

const watCommand = `(module
  (memory (export "memory") 1)
  (func (export "_start"))
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0))
  (func (export "gw_process") (param i32) (result i64) (i64.const -1)))`

func wat(tb testing.TB, s watSpec) []byte { return wasmtest.Wat2Wasm(tb, s.text()) }
