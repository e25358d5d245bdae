package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/defenseunicorns/peat-gateway/wasm/internal/binary"
)

// Defaults for zero Config and Binding fields.
const (
	DefaultMaxModuleBytes   = 16 << 20
	DefaultMaxMemoryPages   = 1024 // 64 MiB ceiling for any binding
	DefaultMemoryLimitPages = 512  // 32 MiB per instance
	DefaultCallTimeout      = 100 * time.Millisecond
	DefaultMaxBatch         = 128
	DefaultBreakerThreshold = 5
	DefaultBreakerCooldown  = 30 * time.Second
)

// tickInterval is how many loop iterations or function entries pass between
// two host tick calls; RATIONALE.md gives the measurements behind it.
const tickInterval = 1024

// Config configures a Host.
type Config struct {
	// MaxModuleBytes caps uploaded modules (the gateway passes
	// PEAT_FILTER_MAX_BYTES). Zero means DefaultMaxModuleBytes.
	MaxModuleBytes int
	// MaxMemoryPages is the ceiling for any binding's memory_limit_pages
	// (64 KiB pages). Zero means DefaultMaxMemoryPages.
	MaxMemoryPages uint32
	// CacheDir, when set, keeps compiled native code on disk so a restart
	// skips most of the compile time.
	CacheDir string
	// MaxInstances bounds the instances of one pool, i.e. how many batches
	// of one binding run at once. Zero means GOMAXPROCS.
	MaxInstances int
	// MaxBatch is the most events passed to one guest call; larger Run
	// batches are split. Zero means DefaultMaxBatch.
	MaxBatch int
	// CompileWorkers is how many goroutines compile one module (uploads
	// only). Zero means GOMAXPROCS.
	CompileWorkers int
	// BreakerThreshold is the number of consecutive failures (an event
	// isolated as the cause of a trap, timeout or bad output, or an
	// instance that cannot start) that opens a pool's circuit breaker.
	BreakerThreshold int
	// BreakerCooldown is how long an open breaker refuses calls before it
	// lets one trial batch through.
	BreakerCooldown time.Duration
	// Registerer, when set, receives the host's collectors.
	Registerer prometheus.Registerer
}

// Host runs gw/v1 filter modules. It is safe for concurrent use.
type Host struct {
	cfg     Config
	rt      wazero.Runtime
	cache   wazero.CompilationCache
	metrics *metrics

	mu      sync.Mutex
	modules map[string]*Module
	pools   map[poolKey]*pool
	closed  bool
}

// NewHost creates a host with one wazero runtime (compiler engine, no
// context-done checks: time limits come from the tick instrumentation).
func NewHost(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if cfg.MaxMemoryPages == 0 {
		cfg.MaxMemoryPages = DefaultMaxMemoryPages
	}
	if cfg.MaxMemoryPages > 32768 {
		// Output pointers travel in the high half of an i64 whose sign marks
		// failure, so guest memory must stay below 2 GiB.
		return nil, errors.New("MaxMemoryPages above 32768 (2 GiB) is not supported")
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.CompileWorkers <= 0 {
		cfg.CompileWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.BreakerThreshold <= 0 {
		cfg.BreakerThreshold = DefaultBreakerThreshold
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = DefaultBreakerCooldown
	}
	rc := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(cfg.MaxMemoryPages).
		WithCloseOnContextDone(false)
	h := &Host{cfg: cfg, modules: map[string]*Module{}, pools: map[poolKey]*pool{}}
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache: %w", err)
		}
		h.cache = c
		rc = rc.WithCompilationCache(c)
	}
	h.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, h.rt); err != nil {
		_ = h.rt.Close(ctx)
		return nil, err
	}
	_, err := h.rt.NewHostModuleBuilder(tickModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(tick), nil, nil).Export(tickName).
		Instantiate(ctx)
	if err != nil {
		_ = h.rt.Close(ctx)
		return nil, err
	}
	h.metrics = newMetrics()
	if cfg.Registerer != nil {
		for _, c := range h.metrics.collectors() {
			if err := cfg.Registerer.Register(c); err != nil {
				_ = h.rt.Close(ctx)
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return h, nil
}

// Collectors returns the host's Prometheus collectors, for callers that
// register them themselves instead of passing Config.Registerer.
func (h *Host) Collectors() []prometheus.Collector { return h.metrics.collectors() }

// Close stops running guests at their next tick, waits for them (bounded by
// ctx), then closes every pool and the runtime. Chain.Run afterwards fails.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	pools := h.pools
	h.pools = map[poolKey]*pool{}
	h.mu.Unlock()
	var err error
	for _, p := range pools {
		p.shutdown(ctx)
		err = errors.Join(err, p.drain(ctx))
	}
	if err != nil {
		// Guests are still running; freeing their memory now would crash.
		return fmt.Errorf("closing wasm host: %w", err)
	}
	err = h.rt.Close(ctx)
	if h.cache != nil {
		err = errors.Join(err, h.cache.Close(ctx))
	}
	return err
}

// Info describes a validated module.
type Info struct {
	// SHA256 is the lower-case hex digest of the uploaded bytes; modules
	// are content-addressed by it.
	SHA256 string
	// Size is the uploaded size in bytes.
	Size int
	// Imports lists "module.name" of every import, sorted.
	Imports []string
	// Exports lists every export name, sorted.
	Exports []string
}

// ValidationError says which upload rule a module broke.
type ValidationError struct {
	// Rule is a stable identifier: "size", "magic", "malformed",
	// "command_module", "missing_export", "forbidden_import",
	// "memory", "instrument", "compile" or "export_signature" (the last
	// three are only checked by Load).
	Rule string
	// Detail is a human-readable explanation naming the offending item.
	Detail string
}

// Error implements error.
func (e *ValidationError) Error() string { return "invalid filter module: " + e.Detail }

// ABI names (filters/ABI.md).
const (
	exportMarker  = "gw_abi_v1"
	exportAlloc   = "gw_alloc"
	exportInit    = "gw_init"
	exportProcess = "gw_process"
	exportMemory  = "memory"
	exportReactor = "_initialize"
	tickModule    = "gw"
	tickName      = "tick"
)

// allowedWASI is what the Go wasip1 runtime imports (plus the fd_* calls `os`
// pulls in). With no preopens, args or environment granted, the fd calls can
// only reach stdout/stderr, which the host captures. Anything else (path_open,
// sockets, ...) is refused at upload.
var allowedWASI = map[string]bool{
	"args_get": true, "args_sizes_get": true, "environ_get": true, "environ_sizes_get": true,
	"clock_time_get": true, "clock_res_get": true, "fd_write": true, "fd_close": true,
	"fd_fdstat_get": true, "fd_fdstat_set_flags": true, "fd_prestat_get": true,
	"fd_prestat_dir_name": true, "proc_exit": true, "random_get": true,
	"sched_yield": true, "poll_oneoff": true,
}

// Validate checks the upload rules without compiling: size, wasm header,
// required gw/v1 exports, reactor shape and the import allowlist. Load
// additionally compiles, which catches malformed function bodies.
func (h *Host) Validate(wasmBytes []byte) (Info, error) {
	info, _, err := h.validate(wasmBytes)
	return info, err
}

func (h *Host) validate(b []byte) (Info, *binary.Module, error) {
	sum := sha256.Sum256(b)
	info := Info{SHA256: hex.EncodeToString(sum[:]), Size: len(b)}
	if len(b) > h.cfg.MaxModuleBytes {
		return info, nil, &ValidationError{"size", fmt.Sprintf("module is %d bytes, above the %d-byte limit", len(b), h.cfg.MaxModuleBytes)}
	}
	m, err := binary.Parse(b)
	if errors.Is(err, binary.ErrNotWasm) {
		return info, nil, &ValidationError{"magic", err.Error()}
	}
	if err != nil {
		return info, nil, &ValidationError{"malformed", err.Error()}
	}
	exports := map[string]byte{}
	for _, e := range m.Exports {
		exports[e.Name] = e.Kind
		info.Exports = append(info.Exports, e.Name)
	}
	for _, i := range m.Imports {
		info.Imports = append(info.Imports, i.Module+"."+i.Name)
	}
	sort.Strings(info.Exports)
	sort.Strings(info.Imports)
	if _, ok := exports["_start"]; ok || m.HasStart {
		return info, nil, &ValidationError{"command_module", "module is a WASI command (exports _start or has a start function); build a reactor with -buildmode=c-shared"}
	}
	required := []struct {
		name string
		kind byte
	}{{exportReactor, binary.KindFunc}, {exportMemory, binary.KindMemory}, {exportMarker, binary.KindFunc},
		{exportAlloc, binary.KindFunc}, {exportInit, binary.KindFunc}, {exportProcess, binary.KindFunc}}
	var missing []string
	for _, r := range required {
		if k, ok := exports[r.name]; !ok || k != r.kind {
			missing = append(missing, r.name)
		}
	}
	if len(missing) > 0 {
		return info, nil, &ValidationError{"missing_export", "missing required export(s) " + strings.Join(missing, ", ") + " (gw/v1 ABI)"}
	}
	for _, i := range m.Imports {
		switch {
		case i.Kind == binary.KindMemory:
			return info, nil, &ValidationError{"memory", fmt.Sprintf("imported memory %s.%s is not allowed; the module must define its own", i.Module, i.Name)}
		case i.Module == "wasi_snapshot_preview1" && i.Kind == binary.KindFunc && allowedWASI[i.Name]:
		default:
			return info, nil, &ValidationError{"forbidden_import", fmt.Sprintf("import %s.%s is not granted to filters", i.Module, i.Name)}
		}
	}
	return info, m, nil
}

// Module is a validated, instrumented and compiled filter module. It stays
// compiled for the life of the Host.
type Module struct {
	info     Info
	compiled wazero.CompiledModule
	minPages uint32
}

// Info describes the module.
func (m *Module) Info() Info { return m.info }

// SHA256 is the module's content address.
func (m *Module) SHA256() string { return m.info.SHA256 }

// Load validates, instruments and compiles a module, or returns the already
// loaded module with the same SHA-256.
func (h *Host) Load(ctx context.Context, wasmBytes []byte) (*Module, error) {
	info, bm, err := h.validate(wasmBytes)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if m, ok := h.modules[info.SHA256]; ok {
		h.mu.Unlock()
		return m, nil
	}
	h.mu.Unlock()
	inst, err := binary.Instrument(wasmBytes, bm, tickModule, tickName, tickInterval)
	if err != nil {
		return nil, &ValidationError{"instrument", err.Error()}
	}
	cm, err := h.rt.CompileModule(experimental.WithCompilationWorkers(ctx, h.cfg.CompileWorkers), inst)
	if err != nil {
		return nil, &ValidationError{"compile", err.Error()}
	}
	if err := checkSignatures(cm); err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	m := &Module{info: info, compiled: cm, minPages: bm.MemoryMinPages}
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev, ok := h.modules[info.SHA256]; ok { // lost a race with a concurrent Load
		_ = cm.Close(ctx)
		return prev, nil
	}
	h.modules[info.SHA256] = m
	return m, nil
}

// abiSignatures are the gw/v1 export types; calls pass raw stacks, so a
// mismatch must be refused before any call.
var abiSignatures = map[string][2][]api.ValueType{
	exportReactor: {nil, nil},
	exportMarker:  {nil, nil},
	exportAlloc:   {{api.ValueTypeI32}, {api.ValueTypeI32}},
	exportInit:    {{api.ValueTypeI32}, {api.ValueTypeI64}},
	exportProcess: {{api.ValueTypeI32}, {api.ValueTypeI64}},
}

func checkSignatures(cm wazero.CompiledModule) error {
	defs := cm.ExportedFunctions()
	for name, sig := range abiSignatures {
		d, ok := defs[name]
		if !ok || !sameTypes(d.ParamTypes(), sig[0]) || !sameTypes(d.ResultTypes(), sig[1]) {
			return &ValidationError{"export_signature", fmt.Sprintf("export %s must have type (%s) -> (%s)", name, typeList(sig[0]), typeList(sig[1]))}
		}
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func typeList(ts []api.ValueType) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = api.ValueTypeName(t)
	}
	return strings.Join(names, ", ")
}

// Unload forgets a loaded module and frees its compiled code. It fails while
// a chain still binds the module; a later Load compiles it again.
func (h *Host) Unload(ctx context.Context, sha256Hex string) error {
	h.mu.Lock()
	m, ok := h.modules[sha256Hex]
	if !ok {
		h.mu.Unlock()
		return fmt.Errorf("module %s is not loaded", sha256Hex)
	}
	for k := range h.pools {
		if k.digest == sha256Hex {
			h.mu.Unlock()
			return fmt.Errorf("module %s is still bound", sha256Hex)
		}
	}
	delete(h.modules, sha256Hex)
	h.mu.Unlock()
	return m.compiled.Close(ctx)
}

// newInstanceConfig grants WASI nothing but clocks, randomness and captured
// stdout/stderr: no args, no environment, no filesystem, no sleep.
func newInstanceConfig(stderr *capBuffer) wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(exportReactor).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStdout(stderr).
		WithStderr(stderr)
}
