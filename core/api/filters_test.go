package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/api"
	"github.com/defenseunicorns/peat-gateway/core/filtering"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/wasm/wasmtest"
)

// keepWat is the smallest gw/v1 module: it keeps every event.
const keepWat = `(module
  (memory (export "memory") 2)
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param $size i32) (result i32)
    (if (i32.lt_u (i32.shl (memory.size) (i32.const 16)) (i32.add (i32.const 131072) (i32.shl (local.get $size) (i32.const 1))))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 15)) (i32.const 2))))))
    (i32.const 65536))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0))
  (func (export "gw_process") (param $len i32) (result i64)
    (local $n i32) (local $out i32) (local $i i32)
    (local.set $n (i32.load (i32.const 65540)))
    (local.set $out (i32.and (i32.add (i32.add (i32.const 65536) (local.get $len)) (i32.const 7)) (i32.const -8)))
    (i32.store (local.get $out) (i32.const 0x314F5747))
    (i32.store offset=4 (local.get $out) (local.get $n))
    (memory.fill (i32.add (local.get $out) (i32.const 8)) (i32.const 0) (i32.mul (local.get $n) (i32.const 20)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const 8) (i32.mul (local.get $n) (i32.const 20)))))))`

// hostImportWat imports a host function the ABI does not grant.
const hostImportWat = `(module
  (import "env" "exfiltrate" (func (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "gw_abi_v1"))
  (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gw_init") (param i32) (result i64) (i64.const 0))
  (func (export "gw_process") (param i32) (result i64) (i64.const -1)))`

// startFilters runs the API with the filters module on a fresh Service.
func startFilters(t *testing.T, st store.Store, mod func(*filtering.Config)) *gw {
	t.Helper()
	cfg := filtering.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Refresh: -1}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := filtering.New(context.Background(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svc.Close(ctx)
	})
	return start(t, st, nil, api.FiltersModule(svc))
}

// upload PUTs a module with the given Content-Type.
func (g *gw) upload(path string, body []byte, ct string) resp {
	g.t.Helper()
	req, err := http.NewRequest("PUT", g.base+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, hdr: res.Header, body: b}
}

type moduleJSON struct {
	Name      string `json:"name"`
	OrgID     string `json:"org_id"`
	SHA256    string `json:"sha256"`
	SizeBytes int    `json:"size_bytes"`
	Version   int    `json:"version"`
	CreatedAt uint64 `json:"created_at"`
}

func TestFilterUploadAPI(t *testing.T) {
	keep := wasmtest.Wat2Wasm(t, keepWat)
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := startFilters(t, st, func(c *filtering.Config) { c.MaxModules = 2; c.MaxModuleBytes = 4 << 20 })
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")

		r := g.must(g.upload("/orgs/acme/filters/keep", keep, "application/wasm"), 201, "")
		var m moduleJSON
		r.decode(t, &m)
		if m.Name != "keep" || m.OrgID != "acme" || m.Version != 1 || m.SizeBytes != len(keep) || len(m.SHA256) != 64 || m.CreatedAt == 0 {
			t.Fatalf("v1 %+v", m)
		}
		var raw map[string]any
		r.decode(t, &raw)
		if len(raw) != 6 {
			t.Fatalf("response fields %v", raw)
		}
		keep2 := wasmtest.Wat2Wasm(t, strings.Replace(keepWat, "(module", "(module (func $v2)", 1))
		r = g.must(g.upload("/orgs/acme/filters/keep", keep2, "application/wasm"), 200, "")
		r.decode(t, &m)
		if m.Version != 2 || m.SizeBytes != len(keep2) {
			t.Fatalf("v2 %+v", m)
		}
		g.must(g.upload("/orgs/acme/filters/other", keep, "application/json"), 415, "application/wasm")
		g.must(g.upload("/orgs/acme/filters/other", []byte("hello"), "application/wasm"), 400, "rule magic")
		g.must(g.upload("/orgs/acme/filters/other", wasmtest.Wat2Wasm(t, hostImportWat), "application/wasm"), 400, "rule forbidden_import")
		g.must(g.upload("/orgs/acme/filters/other", []byte("\x00asm\x01\x00\x00\x00"), "application/wasm"), 400, "rule missing_export")
		g.must(g.upload("/orgs/acme/filters/other", bytes.Repeat([]byte{0}, 5<<20), "application/wasm"), 400, "rule size")
		g.must(g.upload("/orgs/acme/filters/bad.name", keep, "application/wasm"), 400, "invalid characters")
		g.must(g.upload("/orgs/nope/filters/keep", keep, "application/wasm"), 404, "Organization 'nope' not found")
		g.must(g.upload("/orgs/acme/filters/second", keep, "application/wasm"), 201, "")
		g.must(g.upload("/orgs/acme/filters/third", keep, "application/wasm"), 429, "quota")

		r = g.must(g.do("GET", "/orgs/acme/filters", nil), 200, "")
		var list []moduleJSON
		r.decode(t, &list)
		if len(list) != 2 || list[0].Name != "keep" || list[0].Version != 2 || list[1].Name != "second" {
			t.Fatalf("list %+v", list)
		}
		r = g.must(g.do("GET", "/orgs/acme/filters/keep", nil), 200, "")
		r.decode(t, &m)
		if m.Version != 2 {
			t.Fatalf("get %+v", m)
		}
		g.must(g.do("GET", "/orgs/acme/filters/nope", nil), 404, "Filter 'nope' not found in org 'acme'")
		g.must(g.do("GET", "/orgs/nope/filters", nil), 404, "Organization 'nope' not found")

		// Bound modules cannot be deleted; the message says where.
		r = g.must(g.do("POST", "/orgs/acme/sinks", `{"sink_type":{"Nats":{"subject_prefix":"cdc"}},"filters":["second"]}`), 201, "")
		var sink struct {
			SinkID string `json:"sink_id"`
		}
		r.decode(t, &sink)
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet"}`), 201, "")
		g.must(g.do("PUT", "/orgs/acme/formations/fleet/filters", `{"filters":["keep",{"name":"second","on_error":"drop"}]}`), 200, "")
		g.must(g.do("DELETE", "/orgs/acme/filters/second", nil), 409, "sink '"+sink.SinkID+"', formation 'fleet'")
		g.must(g.do("DELETE", "/orgs/acme/filters/keep", nil), 409, "formation 'fleet'")
		g.must(g.do("PUT", "/orgs/acme/formations/fleet/filters", `{"filters":[]}`), 200, "")
		r = g.must(g.do("DELETE", "/orgs/acme/filters/keep", nil), 200, "")
		if len(r.body) != 0 {
			t.Fatalf("DELETE body %q", r.body)
		}
		g.must(g.do("DELETE", "/orgs/acme/filters/keep", nil), 404, "Filter 'keep' not found")
	})
}

func TestFormationFiltersAPI(t *testing.T) {
	keep := wasmtest.Wat2Wasm(t, keepWat)
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := startFilters(t, st, nil)
		g.must(g.do("POST", "/orgs", `{"org_id":"acme","display_name":"Acme"}`), 200, "")
		g.must(g.do("POST", "/orgs/acme/formations", `{"app_id":"fleet"}`), 201, "")
		g.must(g.upload("/orgs/acme/filters/keep", keep, "application/wasm"), 201, "")
		r := g.must(g.do("GET", "/orgs/acme/formations/fleet/filters", nil), 200, "")
		if strings.TrimSpace(string(r.body)) != `{"filters":[]}` {
			t.Fatalf("unset chain %s", r.body)
		}
		body := `{"filters":["keep",{"name":"keep","config":{"a":1},"on_error":"pass"}]}`
		g.must(g.do("PUT", "/orgs/acme/formations/fleet/filters", body), 200, "")
		r = g.must(g.do("GET", "/orgs/acme/formations/fleet/filters", nil), 200, "")
		if want := `{"filters":[{"name":"keep"},{"name":"keep","config":{"a":1},"on_error":"pass"}]}`; string(r.body) != want {
			t.Fatalf("chain %s, want %s", r.body, want)
		}
		g.must(g.do("PUT", "/orgs/acme/formations/fleet/filters", `{"filters":["nope"]}`), 400, "Filter 'nope' not found in org 'acme'")
		g.must(g.do("PUT", "/orgs/acme/formations/fleet/filters", `{"filters":[{"name":"keep","on_error":"boom"}]}`), 400, "on_error")
		g.must(g.do("PUT", "/orgs/acme/formations/fleet/filters", `{}`), 422, "missing field `filters`")
		g.must(g.do("PUT", "/orgs/acme/formations/ghost/filters", `{"filters":[]}`), 404, "Formation 'ghost' not found")
		g.must(g.do("GET", "/orgs/acme/formations/ghost/filters", nil), 404, "Formation 'ghost' not found")
	})
}

type testResults struct {
	Results []struct {
		Verdict string           `json:"verdict"`
		Event   *json.RawMessage `json:"event"`
		Error   *string          `json:"error"`
		Route   string           `json:"route"`
	} `json:"results"`
}

func TestFilterDryRunAPI(t *testing.T) {
	redact := wasmtest.BuildGo(t, "../../filters/examples/redact")
	drop := wasmtest.BuildGo(t, "../../filters/examples/drop")
	eachBackend(t, func(t *testing.T, st store.Store) {
		g := startFilters(t, st, nil)
		for _, org := range []string{"acme", "beta"} {
			g.must(g.do("POST", "/orgs", `{"org_id":"`+org+`","display_name":"x"}`), 200, "")
		}
		g.must(g.upload("/orgs/acme/filters/redact", redact, "application/wasm"), 201, "")
		g.must(g.upload("/orgs/acme/filters/drop", drop, "application/wasm"), 201, "")
		ev := `{"app_id":"fleet","document_id":"d1","change_hash":"h1","actor_id":"a","timestamp_ms":1,"patches":{"user":"x","password":"p"}}`

		// Wrapper with config.
		r := g.must(g.do("POST", "/orgs/acme/filters/redact/test", `{"events":[`+ev+`,{"document_id":"d2","patches":{"user":"y"}}],"config":{"paths":["password"]}}`), 200, "")
		var res testResults
		r.decode(t, &res)
		if len(res.Results) != 2 || res.Results[0].Verdict != "replace" || res.Results[1].Verdict != "keep" || res.Results[0].Error != nil {
			t.Fatalf("results %s", r.body)
		}
		var got struct {
			OrgID   string          `json:"org_id"`
			Patches json.RawMessage `json:"patches"`
		}
		if err := json.Unmarshal(*res.Results[0].Event, &got); err != nil || string(got.Patches) != `{"user":"x"}` || got.OrgID != "acme" {
			t.Fatalf("replaced event %s", *res.Results[0].Event)
		}
		// One bare event with ?config=.
		r = g.must(g.do("POST", "/orgs/acme/filters/redact/test?config="+url.QueryEscape(`{"paths":["user"],"mask":"*"}`), ev), 200, "")
		r.decode(t, &res)
		if len(res.Results) != 1 || res.Results[0].Verdict != "replace" || !strings.Contains(string(*res.Results[0].Event), `"user":"*"`) {
			t.Fatalf("single %s", r.body)
		}
		// An array, with the drop example.
		r = g.must(g.do("POST", "/orgs/acme/filters/drop/test?config="+url.QueryEscape(`{"field":"op","equals":"delete"}`),
			`[{"document_id":"a","op":"delete"},{"document_id":"b"}]`), 200, "")
		r.decode(t, &res)
		if len(res.Results) != 2 || res.Results[0].Verdict != "drop" || res.Results[0].Event != nil || res.Results[1].Verdict != "keep" {
			t.Fatalf("drop %s", r.body)
		}
		g.must(g.do("POST", "/orgs/acme/filters/redact/test", ev), 400, "rejected")
		g.must(g.do("POST", "/orgs/acme/filters/redact/test?config=%7Bnope", ev), 400, "config")
		g.must(g.do("POST", "/orgs/acme/filters/redact/test", `{"org_id":"beta","patches":{}}`), 400, "org_id")
		g.must(g.do("POST", "/orgs/acme/filters/redact/test", `"x"`), 422, "Failed to deserialize")
		g.must(g.do("POST", "/orgs/acme/filters/nope/test", ev), 404, "Filter 'nope' not found")
		// Org beta can neither see, test, bind nor delete acme's module.
		g.must(g.do("GET", "/orgs/beta/filters/redact", nil), 404, "not found in org 'beta'")
		g.must(g.do("POST", "/orgs/beta/filters/redact/test", ev), 404, "not found in org 'beta'")
		g.must(g.do("POST", "/orgs/beta/formations", `{"app_id":"fleet"}`), 201, "")
		g.must(g.do("PUT", "/orgs/beta/formations/fleet/filters", `{"filters":["redact"]}`), 400, "not found in org 'beta'")
		g.must(g.do("POST", "/orgs/beta/sinks", `{"sink_type":{"Nats":{"subject_prefix":"cdc"}},"filters":["redact"]}`), 400, "not found in org 'beta'")
		g.must(g.do("DELETE", "/orgs/beta/filters/redact", nil), 404, "not found")
		r = g.must(g.do("GET", "/orgs/beta/filters", nil), 200, "")
		if strings.TrimSpace(string(r.body)) != "[]" {
			t.Fatalf("beta list %s", r.body)
		}
	})
}
