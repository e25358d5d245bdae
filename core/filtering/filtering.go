// Package filtering is the gateway side of tenant WebAssembly filters: it
// stores uploaded modules (validated by the wasm host first, versioned in the
// store under per-org quotas), keeps them compiled in one wasm.Host, and runs
// the filter chains the CDC dispatcher asks for (it implements cdc.Filter).
//
// A chain is the formation's chain (PUT .../formations/{app}/filters)
// followed by the sink's chain. One wasm.Chain is cached per (org, app, sink
// chain) and, when a module gets a new version or a formation chain changes,
// is swapped in place with Chain.Update, which takes effect at the next batch
// boundary: an event runs wholly on the old or wholly on the new version.
//
// Tenancy: every lookup is by (org, name) and every chain is created with the
// org as the wasm tenant, so one org can neither see, bind nor run another
// org's module, even when both uploaded identical bytes (the compiled code is
// shared, instances and breakers are not).
//
// Modules are loaded lazily, at the first batch that needs them (or by
// Preload); the host's directory compilation cache under
// PEAT_GATEWAY_DATA_DIR/wasm-cache makes that cheap after a restart.
package filtering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/config"
	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/wasm"
)

// Config configures a Service. Zero values take the defaults.
type Config struct {
	// MaxModuleBytes caps one module (PEAT_FILTER_MAX_BYTES).
	MaxModuleBytes int
	// MaxModules and MaxOrgBytes are the per-org quotas
	// (PEAT_FILTER_MAX_MODULES, PEAT_FILTER_MAX_ORG_BYTES).
	MaxModules  int
	MaxOrgBytes int64
	// CacheDir holds the compilation cache; empty means none.
	CacheDir string
	// Refresh is how often cached chains are compared with storage, so a
	// version uploaded through another replica, or a formation chain set
	// there, reaches this one (default 2 s; negative disables).
	Refresh time.Duration
	// IdleChain is how long an unused chain stays cached (default 10 min).
	IdleChain time.Duration
	// Host tunes the wasm host; MaxModuleBytes, CacheDir and Registerer
	// above take precedence over its fields.
	Host       wasm.Config
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Defaults for zero Config fields (the env defaults of core/config).
const (
	DefaultMaxModuleBytes = 8 << 20
	DefaultMaxModules     = 32
	DefaultMaxOrgBytes    = 64 << 20
	DefaultRefresh        = 2 * time.Second
	DefaultIdleChain      = 10 * time.Minute
	// MaxTestEvents bounds one dry run.
	MaxTestEvents = 10_000
)

// ConfigFrom derives a Config from the gateway's configuration: limits from
// the PEAT_FILTER_* variables, the compilation cache under the data dir.
func ConfigFrom(c config.Config) Config {
	return Config{
		MaxModuleBytes: c.FilterMaxBytes,
		MaxModules:     c.FilterMaxModules,
		MaxOrgBytes:    c.FilterMaxOrgBytes,
		CacheDir:       filepath.Join(c.DataDir, "wasm-cache"),
	}
}

// Service manages an org's filter modules and runs filter chains.
type Service struct {
	st   store.Store
	host *wasm.Host
	cfg  Config
	log  *slog.Logger
	now  func() time.Time

	mu       sync.RWMutex
	mods     map[modKey]*modEntry
	chains   map[chainKey]*chainEntry
	loaded   map[string]bool // digests this service loaded into the host
	putLocks map[modKey]*sync.Mutex
	// loadMu keeps sweep from unloading a digest between a host.Load that
	// returned it and the publication of that module (readers: Put,
	// reload; writer: sweep).
	loadMu sync.RWMutex

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type modKey struct{ org, name string }

// modEntry is the latest known version of one (org, name) module.
type modEntry struct {
	version int
	sha     string
	mod     *wasm.Module
}

// New opens the wasm host (with its compilation cache) and starts the
// refresher. Close releases both.
func New(ctx context.Context, st store.Store, cfg Config) (*Service, error) {
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if cfg.MaxModules <= 0 {
		cfg.MaxModules = DefaultMaxModules
	}
	if cfg.MaxOrgBytes <= 0 {
		cfg.MaxOrgBytes = DefaultMaxOrgBytes
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.IdleChain <= 0 {
		cfg.IdleChain = DefaultIdleChain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hc := cfg.Host
	hc.MaxModuleBytes = cfg.MaxModuleBytes
	if cfg.CacheDir != "" {
		hc.CacheDir = cfg.CacheDir
	}
	if cfg.Registerer != nil {
		hc.Registerer = cfg.Registerer
	}
	h, err := wasm.NewHost(ctx, hc)
	if err != nil {
		return nil, fmt.Errorf("wasm host: %w", err)
	}
	s := &Service{
		st: st, host: h, cfg: cfg, log: cfg.Logger.With("component", "filtering"), now: time.Now,
		mods: map[modKey]*modEntry{}, chains: map[chainKey]*chainEntry{}, loaded: map[string]bool{}, putLocks: map[modKey]*sync.Mutex{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if cfg.Refresh > 0 {
		go s.refreshLoop()
	} else {
		close(s.done)
	}
	return s, nil
}

// Host exposes the wasm host (metrics, benchmarks).
func (s *Service) Host() *wasm.Host { return s.host }

// Collectors returns the host's Prometheus collectors (when Config.Registerer
// was not set and the caller registers them itself).
func (s *Service) Collectors() []prometheus.Collector { return s.host.Collectors() }

// Close stops the refresher, the chains and the host; running guests are
// stopped at their next tick (bounded by ctx).
func (s *Service) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	s.mu.Lock()
	chains := s.chains
	s.chains = map[chainKey]*chainEntry{}
	s.mu.Unlock()
	for _, e := range chains {
		e.close()
	}
	return s.host.Close(ctx)
}

// ---- module management ----

// Module is a stored module version as the API shows it.
type Module = store.FilterModule

func orgNotFound(org string) error {
	return errs.New(errs.NotFound, "Organization '%s' not found", org)
}

func filterNotFound(org, name string) error {
	return errs.New(errs.NotFound, "Filter '%s' not found in org '%s'", name, org)
}

func internal(err error) error { return errs.Wrap(errs.Internal, err, "internal error") }

// invalidModule turns a host validation failure into a 400 naming the rule.
func invalidModule(err error) error {
	var ve *wasm.ValidationError
	if errors.As(err, &ve) {
		return errs.New(errs.Invalid, "invalid filter module (rule %s): %s", ve.Rule, ve.Detail)
	}
	return errs.Wrap(errs.Invalid, err, "invalid filter module: %s", err.Error())
}

func (s *Service) checkOrg(ctx context.Context, org string) error {
	if _, err := s.st.GetOrg(ctx, org); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return orgNotFound(org)
		}
		return internal(err)
	}
	return nil
}

// Put validates, compiles and stores a new version of the org's module
// name. created is true for the first version. Chains that bind the module
// switch to the new version at their next batch.
func (s *Service) Put(ctx context.Context, org, name string, wasmBytes []byte) (m Module, created bool, err error) {
	if err := model.ValidateToken("filter name", name); err != nil {
		return m, false, errs.New(errs.Invalid, "%s", err)
	}
	if err := s.checkOrg(ctx, org); err != nil {
		return m, false, err
	}
	if err := s.precheckQuota(ctx, org, name, len(wasmBytes)); err != nil {
		return m, false, err
	}
	// Validation and compilation come first so a bad module never reaches
	// storage (and compiling an accepted one now makes its first batch fast).
	s.loadMu.RLock()
	published := false
	defer func() {
		if !published {
			s.loadMu.RUnlock()
		}
	}()
	mod, err := s.host.Load(ctx, wasmBytes)
	if err != nil {
		return m, false, invalidModule(err)
	}
	k := modKey{org, name}
	// Marked before the store write so that, if the write fails, the next
	// sweep unloads the compiled code unless something else uses it.
	s.mu.Lock()
	s.loaded[mod.SHA256()] = true
	s.mu.Unlock()
	// Versions of one name are stored and published in order, so a slow
	// upload can never publish its version after a newer one.
	lk := s.putLock(k)
	lk.Lock()
	defer lk.Unlock()
	m, err = s.st.PutFilter(ctx, store.FilterModule{
		OrgID: org, Name: name, SHA256: mod.SHA256(), SizeBytes: len(wasmBytes),
		CreatedAt: uint64(s.now().UnixMilli()), Wasm: wasmBytes,
	}, s.cfg.MaxModules, s.cfg.MaxOrgBytes)
	switch {
	case errors.Is(err, store.ErrQuota):
		return m, false, errs.New(errs.Quota, "Organization '%s' has reached its filter module quota (%s)", org,
			strings.TrimPrefix(err.Error(), store.ErrQuota.Error()+": "))
	case errors.Is(err, store.ErrNotFound):
		return m, false, orgNotFound(org)
	case err != nil:
		return m, false, internal(err)
	}
	m.Wasm = nil
	s.mu.Lock()
	if cur := s.mods[k]; cur == nil || cur.version < m.Version {
		s.mods[k] = &modEntry{version: m.Version, sha: m.SHA256, mod: mod}
	}
	s.mu.Unlock()
	published = true
	s.loadMu.RUnlock()
	s.syncChains(ctx, func(e *chainEntry) bool { return e.uses(org, name) })
	return m, m.Version == 1, nil
}

// precheckQuota refuses an upload that is already over the org's quotas
// before it is compiled, so an org at its limit cannot make the gateway
// burn CPU on modules it will refuse. The store re-checks atomically.
func (s *Service) precheckQuota(ctx context.Context, org, name string, size int) error {
	if size > s.cfg.MaxModuleBytes {
		return nil // the host refuses it, naming the size rule, without compiling
	}
	list, err := s.st.ListFilters(ctx, org)
	if err != nil {
		return internal(err)
	}
	var others int64
	exists := false
	for _, m := range list {
		if m.Name == name {
			exists = true
			continue
		}
		others += int64(m.SizeBytes)
	}
	if !exists && len(list) >= s.cfg.MaxModules {
		return errs.New(errs.Quota, "Organization '%s' has reached its filter module quota (at most %d filter modules)", org, s.cfg.MaxModules)
	}
	if others+int64(size) > s.cfg.MaxOrgBytes {
		return errs.New(errs.Quota, "Organization '%s' has reached its filter module quota (filter modules may total at most %d bytes)", org, s.cfg.MaxOrgBytes)
	}
	return nil
}

func (s *Service) putLock(k modKey) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.putLocks[k]
	if l == nil {
		l = &sync.Mutex{}
		s.putLocks[k] = l
	}
	return l
}

// List returns the latest version of each of the org's modules.
func (s *Service) List(ctx context.Context, org string) ([]Module, error) {
	if err := s.checkOrg(ctx, org); err != nil {
		return nil, err
	}
	ms, err := s.st.ListFilters(ctx, org)
	if err != nil {
		return nil, internal(err)
	}
	return ms, nil
}

// Get returns the latest version's metadata.
func (s *Service) Get(ctx context.Context, org, name string) (Module, error) {
	if err := s.checkOrg(ctx, org); err != nil {
		return Module{}, err
	}
	m, err := s.st.GetFilter(ctx, org, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Module{}, filterNotFound(org, name)
		}
		return Module{}, internal(err)
	}
	m.Wasm = nil
	return m, nil
}

// Delete removes every version of a module. It is refused (409, naming the
// bindings) while a sink or a formation of the org binds it.
func (s *Service) Delete(ctx context.Context, org, name string) error {
	if err := s.checkOrg(ctx, org); err != nil {
		return err
	}
	var where []string
	sinks, err := s.st.ListSinks(ctx, org)
	if err != nil {
		return internal(err)
	}
	for _, sk := range sinks {
		if bound(sk.Filters, name) {
			where = append(where, "sink '"+sk.SinkID+"'")
		}
	}
	fs, err := s.st.ListFormations(ctx, org)
	if err != nil {
		return internal(err)
	}
	for _, f := range fs {
		chain, err := s.st.GetFormationFilters(ctx, org, f.AppID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return internal(err)
		}
		if bound(chain, name) {
			where = append(where, "formation '"+f.AppID+"'")
		}
	}
	if len(where) > 0 {
		return errs.New(errs.Conflict, "Filter '%s' is still bound to %s; unbind it first", name, strings.Join(where, ", "))
	}
	if err := s.st.DeleteFilter(ctx, org, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return filterNotFound(org, name)
		}
		return internal(err)
	}
	s.mu.Lock()
	delete(s.mods, modKey{org, name})
	s.mu.Unlock()
	return nil
}

func bound(chain []model.FilterRef, name string) bool {
	return slices.ContainsFunc(chain, func(r model.FilterRef) bool { return r.Name == name })
}

// module returns the compiled latest version of (org, name), loading it
// from storage on first use.
func (s *Service) module(ctx context.Context, org, name string) (*modEntry, error) {
	k := modKey{org, name}
	s.mu.RLock()
	e := s.mods[k]
	s.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	return s.reload(ctx, k)
}

// reload reads (org, name) from storage and compiles it if its digest is
// new to the host.
func (s *Service) reload(ctx context.Context, k modKey) (*modEntry, error) {
	m, err := s.st.GetFilter(ctx, k.org, k.name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, filterNotFound(k.org, k.name)
		}
		return nil, internal(err)
	}
	s.loadMu.RLock()
	defer s.loadMu.RUnlock()
	mod, err := s.host.Load(ctx, m.Wasm)
	if err != nil {
		// Stored modules passed validation when uploaded; this means a
		// host with stricter limits than the one that accepted it.
		return nil, errs.Wrap(errs.Invalid, err, "stored filter '%s' version %d no longer loads: %v", k.name, m.Version, err)
	}
	e := &modEntry{version: m.Version, sha: m.SHA256, mod: mod}
	s.mu.Lock()
	s.loaded[mod.SHA256()] = true
	if cur := s.mods[k]; cur != nil && cur.version >= e.version {
		e = cur
	} else {
		s.mods[k] = e
	}
	s.mu.Unlock()
	return e, nil
}

// checkRefs validates a binding list: names, policies, existence in the org
// (by (org, name) only), and that each module accepts its config.
func (s *Service) checkRefs(ctx context.Context, org string, refs []model.FilterRef) error {
	var bindings []wasm.Binding
	for _, r := range refs {
		if err := model.ValidateToken("filter name", r.Name); err != nil {
			return errs.New(errs.Invalid, "%s", err)
		}
		pol, ok := policyOf(r.OnError)
		if !ok {
			return errs.New(errs.Invalid, "filter '%s': on_error must be one of dead_letter, drop, pass", r.Name)
		}
		if len(r.Config) > 0 && strings.TrimSpace(string(r.Config))[0] != '{' {
			return errs.New(errs.Invalid, "filter '%s': config must be a JSON object", r.Name)
		}
		e, err := s.module(ctx, org, r.Name)
		if err != nil {
			if errs.KindOf(err) == errs.NotFound {
				return errs.New(errs.Invalid, "Filter '%s' not found in org '%s'", r.Name, org)
			}
			return err
		}
		bindings = append(bindings, wasm.Binding{Name: r.Name, Module: e.mod, Config: r.Config, OnError: pol})
	}
	if len(bindings) == 0 {
		return nil
	}
	// Instantiating once runs each module's gw_init with its config, so a
	// config the module refuses is a 400 now rather than dead letters later.
	c, err := s.host.NewChain(ctx, org, bindings)
	if err != nil {
		return errs.New(errs.Invalid, "filter chain rejected: %v", err)
	}
	c.Close()
	return nil
}

func policyOf(s string) (wasm.Policy, bool) {
	switch s {
	case "", "dead_letter":
		return wasm.DeadLetter, true
	case "drop":
		return wasm.DropOnError, true
	case "pass":
		return wasm.Pass, true
	}
	return 0, false
}

// SetFormationChain sets the chain that runs before every sink of the
// formation. Running chains switch at their next batch.
func (s *Service) SetFormationChain(ctx context.Context, org, app string, refs []model.FilterRef) ([]model.FilterRef, error) {
	if err := s.checkOrg(ctx, org); err != nil {
		return nil, err
	}
	if refs == nil {
		refs = []model.FilterRef{}
	}
	if err := s.checkRefs(ctx, org, refs); err != nil {
		return nil, err
	}
	if err := s.st.SetFormationFilters(ctx, org, app, refs); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errs.New(errs.NotFound, "Formation '%s' not found in org '%s'", app, org)
		}
		return nil, internal(err)
	}
	// The dispatcher re-reads formation chains every few seconds; the new
	// binding list is a new cached chain, the old one is swept when idle.
	return refs, nil
}

// FormationChain returns the formation's chain (empty when unset).
func (s *Service) FormationChain(ctx context.Context, org, app string) ([]model.FilterRef, error) {
	if err := s.checkOrg(ctx, org); err != nil {
		return nil, err
	}
	refs, err := s.st.GetFormationFilters(ctx, org, app)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errs.New(errs.NotFound, "Formation '%s' not found in org '%s'", app, org)
		}
		return nil, internal(err)
	}
	return refs, nil
}

// Preload compiles every module bound by an enabled sink or a formation of
// any org, so the first batch after a restart does not pay for it. Errors
// are logged and skipped (a module that does not load fails its events
// later, by policy).
func (s *Service) Preload(ctx context.Context) error {
	sinks, err := s.st.ListAllSinks(ctx)
	if err != nil {
		return err
	}
	want := map[modKey]bool{}
	for _, sk := range sinks {
		if sk.Enabled {
			for _, r := range sk.Filters {
				want[modKey{sk.OrgID, r.Name}] = true
			}
		}
	}
	refs, err := s.st.ListFormationRefs(ctx)
	if err != nil {
		return err
	}
	for _, f := range refs {
		chain, err := s.st.GetFormationFilters(ctx, f.OrgID, f.AppID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		for _, r := range chain {
			want[modKey{f.OrgID, r.Name}] = true
		}
	}
	keys := make([]modKey, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].org+"/"+keys[i].name < keys[j].org+"/"+keys[j].name })
	for _, k := range keys {
		if _, err := s.module(ctx, k.org, k.name); err != nil {
			s.log.Warn("preloading filter failed", "org", k.org, "filter", k.name, "error", err)
		}
	}
	return nil
}

// ---- refresh ----

func (s *Service) refreshLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.refresh(ctx)
		cancel()
	}
}

// refresh brings cached modules up to date with storage (versions uploaded
// through other replicas), hot-swaps the chains that bind them, closes idle chains and unloads digests nothing refers to.
func (s *Service) refresh(ctx context.Context) {
	s.mu.RLock()
	orgs := map[string]bool{}
	for k := range s.mods {
		orgs[k.org] = true
	}
	s.mu.RUnlock()

	changed := map[string]bool{} // org/name of modules that changed
	for org := range orgs {
		list, err := s.st.ListFilters(ctx, org)
		if err != nil {
			continue
		}
		latest := map[string]store.FilterModule{}
		for _, m := range list {
			latest[m.Name] = m
		}
		s.mu.RLock()
		var stale, gone []modKey
		for k, e := range s.mods {
			if k.org != org {
				continue
			}
			if m, ok := latest[k.name]; ok && m.Version != e.version {
				stale = append(stale, k)
			} else if !ok {
				gone = append(gone, k)
			}
		}
		s.mu.RUnlock()
		if len(gone) > 0 {
			// Deleted (through another replica): forget it so its code can
			// be unloaded once no chain binds it.
			s.mu.Lock()
			for _, k := range gone {
				delete(s.mods, k)
			}
			s.mu.Unlock()
		}
		for _, k := range stale {
			s.mu.Lock()
			delete(s.mods, k)
			s.mu.Unlock()
			if _, err := s.reload(ctx, k); err != nil {
				s.log.Warn("reloading filter failed", "org", k.org, "filter", k.name, "error", err)
			}
			changed[k.org+"/"+k.name] = true
		}
	}
	if len(changed) > 0 {
		s.syncChains(ctx, func(e *chainEntry) bool {
			for _, r := range e.refs {
				if changed[e.key.org+"/"+r.Name] {
					return true
				}
			}
			return false
		})
	}
	s.sweep(ctx)
}

// sweep closes chains idle for longer than IdleChain and unloads compiled
// modules that no cached module version refers to any more.
func (s *Service) sweep(ctx context.Context) {
	cutoff := s.now().Add(-s.cfg.IdleChain).UnixNano()
	var idle []*chainEntry
	s.mu.Lock()
	for k, e := range s.chains {
		if e.lastUsed.Load() < cutoff {
			delete(s.chains, k)
			idle = append(idle, e)
		}
	}
	s.mu.Unlock()
	for _, e := range idle {
		e.close()
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	s.mu.Lock()
	used := map[string]bool{}
	for _, e := range s.mods {
		used[e.sha] = true
	}
	var unload []string
	for sha := range s.loaded {
		if !used[sha] {
			unload = append(unload, sha)
		}
	}
	s.mu.Unlock()
	for _, sha := range unload {
		// Fails while a chain still binds the digest (e.g. one that refused
		// the new version); the next sweep tries again.
		if err := s.host.Unload(ctx, sha); err == nil {
			s.mu.Lock()
			delete(s.loaded, sha)
			s.mu.Unlock()
		}
	}
}
