package wasmtest

import (
	"fmt"
	"strings"
	"testing"
)

// WatModule describes a hand-written gw/v1 module (filters/ABI.md) for tests
// of the host and of the gateway's filter wiring: the input arena sits at
// 64 KiB and the output frame right after the input.
type WatModule struct {
	// Imports adds import fields (e.g. a forbidden host function).
	Imports string
	// Decide is the body of a function from a record address to a verdict;
	// empty means keep (0), or replace (2) when Body is set.
	Decide string
	// Prologue runs at the start of every gw_process.
	Prologue string
	// Extra adds module fields (helper functions).
	Extra string
	// Route is a 2-byte route name as an i32 literal (e.g. "0x3176" = "v1");
	// empty means no route.
	Route string
	// Body is the replacement body every record points at.
	Body string
}

const watSkeleton = `(module
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
    {{BODYSTORES}}
    (if (i32.ne (i32.const {{ROUTE}}) (i32.const 0)) (then
      (local.set $rl (i32.const 2))
      (i32.store16 (i32.add (local.get $out) (i32.add (local.get $data) (i32.const {{BODYLEN}}))) (i32.const {{ROUTE}}))))
    (i32.store (local.get $out) (i32.const 0x314F5747))
    (i32.store offset=4 (local.get $out) (local.get $n))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $e (i32.add (i32.add (local.get $out) (i32.const 8)) (i32.mul (local.get $i) (i32.const 20))))
      (i64.store (local.get $e)
        (i64.extend_i32_u (call $decide (i32.add (i32.const 65552) (i32.mul (local.get $i) (i32.const 72))))))
      (i32.store offset=4 (local.get $e) (select (local.get $data) (i32.const 0) (i32.const {{BODYLEN}})))
      (i32.store offset=8 (local.get $e) (i32.const {{BODYLEN}}))
      (i32.store offset=12 (local.get $e) (select (i32.add (local.get $data) (i32.const {{BODYLEN}})) (i32.const 0) (local.get $rl)))
      (i32.store offset=16 (local.get $e) (local.get $rl))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.add (local.get $data) (i32.const {{BODYLEN}})) (local.get $rl))))))`

// Text renders the module as WAT.
func (m WatModule) Text() string {
	decide := m.Decide
	if decide == "" {
		decide = "(i32.const 0)"
		if m.Body != "" {
			decide = "(i32.const 2)"
		}
	}
	route := m.Route
	if route == "" {
		route = "0"
	}
	var stores strings.Builder
	for i := 0; i < len(m.Body); i++ {
		fmt.Fprintf(&stores, "(i32.store8 offset=%d (i32.add (local.get $out) (local.get $data)) (i32.const %d))\n", i, m.Body[i])
	}
	return strings.NewReplacer(
		"{{IMPORTS}}", m.Imports, "{{DECIDE}}", decide, "{{PROLOGUE}}", m.Prologue, "{{EXTRA}}", m.Extra,
		"{{ROUTE}}", route, "{{BODYSTORES}}", stores.String(), "{{BODYLEN}}", fmt.Sprint(len(m.Body)),
	).Replace(watSkeleton)
}

// Build assembles the module with wat2wasm.
func (m WatModule) Build(tb testing.TB) []byte { return Wat2Wasm(tb, m.Text()) }

// NoProcessWat is a module with every gw/v1 export but gw_process, for
// upload-validation tests.
const NoProcessWat = `(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0)))`

// CommandWat is a WASI command module (it exports _start), which the host
// refuses: filters must be reactors.
const CommandWat = `(module
  (memory (export "memory") 1)
  (func (export "_start"))
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0))
  (func (export "gw_process") (param i32) (result i64) (i64.const -1)))`
