package wasm

import (
	"testing"

	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

// watSpec is a hand-written gw/v1 test module (see wasmtest.WatModule).
type watSpec = wasmtest.WatModule

// Fault and behaviour modules. Timestamps in test events are the event index,
// so decisions keyed on them are deterministic.
var (
	watKeep = watSpec{}
	// watDropOdd drops events with an odd timestamp.
	watDropOdd = watSpec{Decide: `(i32.and (i32.wrap_i64 (i64.load offset=8 (local.get $rec))) (i32.const 1))`}
	// watTrap100 traps on every event whose timestamp is a multiple of 100.
	watTrap100 = watSpec{Decide: `(if (i64.eqz (i64.rem_u (i64.load offset=8 (local.get $rec)) (i64.const 100)))
	    (then unreachable)) (i32.const 0)`}
	// watSpin loops forever in gw_process.
	watSpin = watSpec{Prologue: `(loop $spin (br $spin))`}
	// watFib burns exponential time in recursion with no loop at all, so
	// only the function-entry tick can stop it.
	watFib = watSpec{
		Extra: `(func $fib (param $n i32) (result i32)
		  (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
		    (then (local.get $n))
		    (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
		                   (call $fib (i32.sub (local.get $n) (i32.const 2)))))))`,
		Prologue: `(drop (call $fib (i32.const 60)))`,
	}
	// watMemBomb grows memory until refused, then traps.
	watMemBomb = watSpec{Prologue: `(block $full (loop $grow
	    (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
	    (br $grow)))
	  unreachable`}
	// watBadVerdict answers verdict 9.
	watBadVerdict = watSpec{Decide: `(i32.const 9)`}
	// watForbidden imports a WASI filesystem call.
	watForbidden = watSpec{Imports: `(import "wasi_snapshot_preview1" "path_open"
	    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))`}
	// watCustomImport imports a host function the ABI does not grant.
	watCustomImport = watSpec{Imports: `(import "env" "exfiltrate" (func $x (param i32 i32)))`}
	watVersion1     = watSpec{Route: "0x3176"} // routes to "v1"
	watVersion2     = watSpec{Route: "0x3276"} // routes to "v2"
)

const (
	watNoProcess = wasmtest.NoProcessWat
	watCommand   = wasmtest.CommandWat
)

func wat(tb testing.TB, s watSpec) []byte { return s.Build(tb) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
