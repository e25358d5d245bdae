package filtering

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/cdc"
	"github.com/defenseunicorns/peat-gateway/core/errs"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/wasm"
)

// buildRetry is how long a chain that could not be built (module missing,
// config refused, instance cannot start) fails its events before the next
// attempt, so a broken binding does not recompile or re-instantiate on every
// batch.
const buildRetry = 5 * time.Second

var _ cdc.Filter = (*Service)(nil)

// chainKey identifies one cached chain: the org and the binding list (the
// formation's chain then the sink's) in canonical JSON.
type chainKey struct{ org, chain string }

// chainEntry owns one wasm.Chain. Its state is swapped atomically so Apply
// never takes a lock on the hot path.
type chainEntry struct {
	svc  *Service
	key  chainKey
	refs []model.FilterRef // immutable: a changed chain is another entry

	mu       sync.Mutex // serialises build and sync
	state    atomic.Pointer[chainState]
	lastUsed atomic.Int64 // unix nanos
}

// chainState is an immutable snapshot of what a chain runs.
type chainState struct {
	chain *wasm.Chain // nil when err is set
	sig   string      // module digests: equal sig means nothing to swap
	err   error       // build failure
	retry time.Time
	// swapErr is the last failed hot swap (the chain kept its previous
	// bindings); failedSig stops the same swap being retried every refresh.
	swapErr   error
	failedSig string
}

func canonical(refs []model.FilterRef) string {
	if len(refs) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(refs)
	return string(b)
}

// uses reports whether the chain binds the org's module name.
func (e *chainEntry) uses(org, name string) bool {
	return e.key.org == org && bound(e.refs, name)
}

func (e *chainEntry) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.state.Load(); st != nil && st.chain != nil {
		st.chain.Close()
	}
}

// desired resolves the bindings the chain should run now: each module at
// its latest known version.
func (e *chainEntry) desired(ctx context.Context) ([]wasm.Binding, string, error) {
	bindings := make([]wasm.Binding, 0, len(e.refs))
	sig := ""
	for _, r := range e.refs {
		pol, ok := policyOf(r.OnError)
		if !ok {
			return nil, "", fmt.Errorf("filter '%s': unknown on_error %q", r.Name, r.OnError)
		}
		me, err := e.svc.module(ctx, e.key.org, r.Name)
		if err != nil {
			return nil, "", err
		}
		bindings = append(bindings, wasm.Binding{Name: r.Name, Module: me.mod, Config: r.Config, OnError: pol})
		sig += me.sha + "|"
	}
	return bindings, sig, nil
}

// current returns a usable state, building the chain on first use and
// after a failed build once buildRetry has passed.
func (e *chainEntry) current(ctx context.Context) *chainState {
	e.lastUsed.Store(time.Now().UnixNano())
	st := e.state.Load()
	if st != nil && (st.err == nil || time.Now().Before(st.retry)) {
		return st
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.state.Load(); st != nil && (st.err == nil || time.Now().Before(st.retry)) {
		return st
	}
	st = e.build(ctx)
	e.state.Store(st)
	return st
}

func (e *chainEntry) build(ctx context.Context) *chainState {
	bindings, sig, err := e.desired(ctx)
	if err == nil {
		var c *wasm.Chain
		if c, err = e.svc.host.NewChain(ctx, e.key.org, bindings); err == nil {
			return &chainState{chain: c, sig: sig}
		}
	}
	e.svc.log.Warn("filter chain cannot be built; its events are dead-lettered", "org", e.key.org, "chain", e.key.chain, "error", err)
	return &chainState{err: err, retry: time.Now().Add(buildRetry)}
}

// sync brings a built chain to the desired bindings with Chain.Update (the
// swap happens between batches, so no event runs on both versions). A chain
// in the failed state is rebuilt at once instead.
func (e *chainEntry) sync(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state.Load()
	if st == nil {
		return // never used: the first batch builds it from scratch
	}
	if st.chain == nil {
		e.state.Store(e.build(ctx))
		return
	}
	bindings, sig, err := e.desired(ctx)
	if err == nil && (sig == st.sig || sig == st.failedSig) {
		return
	}
	if err == nil {
		err = st.chain.Update(ctx, bindings)
	}
	next := *st
	if err != nil {
		// Keep running the previous bindings: a new version whose gw_init
		// refuses this binding's config must not stop delivery.
		e.svc.log.Warn("filter chain hot swap failed; previous version stays", "org", e.key.org, "chain", e.key.chain, "error", err)
		next.swapErr, next.failedSig = err, sig
	} else {
		next.sig, next.swapErr, next.failedSig = sig, nil, ""
	}
	e.state.Store(&next)
}

// syncChains hot-swaps every cached chain match selects.
func (s *Service) syncChains(ctx context.Context, match func(*chainEntry) bool) {
	s.mu.RLock()
	var es []*chainEntry
	for _, e := range s.chains {
		if match(e) {
			es = append(es, e)
		}
	}
	s.mu.RUnlock()
	for _, e := range es {
		e.sync(ctx)
	}
}

func (s *Service) entry(org string, refs []model.FilterRef) *chainEntry {
	k := chainKey{org, canonical(refs)}
	s.mu.RLock()
	e := s.chains[k]
	s.mu.RUnlock()
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e = s.chains[k]; e == nil {
		e = &chainEntry{svc: s, key: k, refs: append([]model.FilterRef(nil), refs...)}
		s.chains[k] = e
	}
	return e
}

// Apply implements cdc.Filter: it runs chain (the dispatcher passes the
// formation's chain followed by the sink's) over events and returns one
// outcome per event. Failures carry the failing binding's on_error policy;
// an event a "pass" filter failed on is reported as a Fail with policy Pass
// when nothing later replaced it, so the sink's filter-error counters see
// it. When ctx ends mid-batch every event is a Fail with policy DeadLetter
// and the message "filter run interrupted"; the dispatcher should discard a
// batch whose ctx ended rather than record it.
func (s *Service) Apply(ctx context.Context, org string, chain []model.FilterRef, events []model.CdcEvent) []cdc.FilterOutcome {
	out := make([]cdc.FilterOutcome, len(events))
	if len(events) == 0 || len(chain) == 0 {
		return out // zero outcomes are Keep
	}
	fail := func(msg string) []cdc.FilterOutcome {
		for j := range out {
			out[j] = cdc.FilterOutcome{Verdict: cdc.Fail, Err: msg, Policy: cdc.DeadLetter}
		}
		return out
	}
	in := make([]wasm.Event, len(events))
	for j := range events {
		in[j] = toWasm(&events[j])
	}
	e := s.entry(org, chain)
	var outs []wasm.Outcome
	for attempt := 0; ; attempt++ {
		st := e.current(ctx)
		if st.err != nil {
			// Nothing ran: fail safe (dead letter) rather than deliver
			// events a redact filter never saw; replay retries the chain.
			return fail("filter chain unavailable: " + st.err.Error())
		}
		var err error
		outs, err = st.chain.Run(ctx, in)
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt > 0 {
			return fail("filter run interrupted: " + err.Error())
		}
		// The chain was closed under us (idle sweep racing a batch):
		// forget it and build a fresh one, once.
		s.mu.Lock()
		if s.chains[e.key] == e {
			delete(s.chains, e.key)
		}
		s.mu.Unlock()
		e = s.entry(org, chain)
	}
	for j, o := range outs {
		out[j] = convert(&events[j], o)
	}
	return out
}

func toWasm(ev *model.CdcEvent) wasm.Event {
	return wasm.Event{Op: ev.Op, OrgID: ev.OrgID, AppID: ev.AppID, DocumentID: ev.DocumentID,
		ChangeHash: ev.ChangeHash, ActorID: ev.ActorID, TimestampMs: ev.TimestampMs, Body: ev.Patches}
}

// convert maps a chain outcome to the dispatcher's. The wasm chain already
// applied each binding's policy; errors it absorbed (drop, pass) are turned
// back into Fail outcomes with the matching policy so they are counted,
// without changing what is delivered.
func convert(ev *model.CdcEvent, o wasm.Outcome) cdc.FilterOutcome {
	errMsg := func() string { return fmt.Sprintf("filter '%s': %s", o.Filter, o.Err) }
	switch o.Verdict {
	case wasm.Keep:
		if o.Err != "" {
			return cdc.FilterOutcome{Verdict: cdc.Fail, Err: errMsg(), Policy: cdc.Pass}
		}
		return cdc.FilterOutcome{Verdict: cdc.Keep}
	case wasm.Replace:
		if !json.Valid(o.Body) {
			// Patches is raw JSON in every sink's payload: a filter's
			// malformed replacement must not reach the wire.
			return cdc.FilterOutcome{Verdict: cdc.Fail, Policy: cdc.DeadLetter,
				Err: fmt.Sprintf("filter chain replaced the body with invalid JSON (%d bytes)", len(o.Body))}
		}
		r := *ev
		r.Patches = json.RawMessage(o.Body)
		return cdc.FilterOutcome{Verdict: cdc.Replace, Event: r}
	case wasm.Drop:
		if o.Err != "" {
			return cdc.FilterOutcome{Verdict: cdc.Fail, Err: errMsg(), Policy: cdc.DropEvent}
		}
		return cdc.FilterOutcome{Verdict: cdc.Drop}
	default: // Error: only the dead_letter policy leaves it as an error
		return cdc.FilterOutcome{Verdict: cdc.Fail, Err: errMsg(), Policy: cdc.DeadLetter}
	}
}

// ---- dry run ----

// TestResult is one event's dry-run result.
type TestResult struct {
	// Verdict is keep, drop, replace or error.
	Verdict string `json:"verdict"`
	// Event is what would be delivered (the replacement for replace, the
	// input for keep); null for drop and error.
	Event *model.CdcEvent `json:"event"`
	// Error is the module's message for error (null otherwise).
	Error *string `json:"error"`
	// Route is the sink the filter routed the event to, if any.
	Route string `json:"route,omitempty"`
}

// Test runs the org's module name over events with config and reports each
// verdict; nothing is delivered. It runs in its own pool (binding name
// "<name>#test"), so a dry run of poison events cannot open the breaker of
// the live bindings.
func (s *Service) Test(ctx context.Context, org, name string, config json.RawMessage, events []model.CdcEvent) ([]TestResult, error) {
	if err := s.checkOrg(ctx, org); err != nil {
		return nil, err
	}
	if len(events) > MaxTestEvents {
		return nil, errs.New(errs.Invalid, "at most %d events per test", MaxTestEvents)
	}
	if len(config) > 0 && config[0] != '{' {
		return nil, errs.New(errs.Invalid, "config must be a JSON object")
	}
	me, err := s.module(ctx, org, name)
	if err != nil {
		return nil, err
	}
	c, err := s.host.NewChain(ctx, org, []wasm.Binding{{Name: name + "#test", Module: me.mod, Config: config}})
	if err != nil {
		return nil, errs.New(errs.Invalid, "filter '%s' rejected the test: %v", name, err)
	}
	defer c.Close()
	in := make([]wasm.Event, len(events))
	for i := range events {
		in[i] = toWasm(&events[i])
	}
	outs, err := c.Run(ctx, in)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, errs.Wrap(errs.Unavailable, err, "filter test interrupted")
		}
		return nil, internal(err)
	}
	res := make([]TestResult, len(outs))
	for i, o := range outs {
		r := TestResult{Verdict: o.Verdict.String(), Route: o.Route}
		switch o.Verdict {
		case wasm.Keep:
			ev := events[i]
			r.Event = &ev
		case wasm.Replace:
			ev := events[i]
			if json.Valid(o.Body) {
				ev.Patches = json.RawMessage(o.Body)
				r.Event = &ev
			} else {
				msg := fmt.Sprintf("filter replaced the body with invalid JSON: %q", truncate(o.Body, 200))
				r.Verdict, r.Error = "error", &msg
			}
		case wasm.Error:
			msg := o.Err
			r.Error = &msg
		}
		res[i] = r
	}
	return res, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// ---- status ----

// BindingStatus is the health of one filter binding on a delivery path.
type BindingStatus struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Breaker is closed, open or half_open.
	Breaker             string  `json:"breaker"`
	ConsecutiveFailures int     `json:"consecutive_failures"`
	LastError           *string `json:"last_error"`
	Instances           int     `json:"instances"`
}

// ChainStatus reports one cached chain.
type ChainStatus struct {
	// Filters is the chain's binding list (formation chain, then sink's).
	Filters  []model.FilterRef `json:"filters"`
	Bindings []BindingStatus   `json:"bindings"`
	// Error is set while the chain cannot be built (its events are
	// dead-lettered) or when the last hot swap failed (the previous
	// versions still run).
	Error *string `json:"error"`
}

// Status reports every chain of the org that ends with the sink's chain
// (one per formation chain in use) and has run on this replica: breaker and
// pool state of each binding. The lead merges it into
// GET .../sinks/{id}/status.
func (s *Service) Status(org string, sinkChain []model.FilterRef) []ChainStatus {
	s.mu.RLock()
	var es []*chainEntry
	for k, e := range s.chains {
		if k.org == org && endsWith(e.refs, sinkChain) {
			es = append(es, e)
		}
	}
	s.mu.RUnlock()
	sort.Slice(es, func(i, j int) bool { return es[i].key.chain < es[j].key.chain })
	out := []ChainStatus{}
	for _, e := range es {
		st := e.state.Load()
		if st == nil {
			continue
		}
		cs := ChainStatus{Filters: e.refs, Bindings: []BindingStatus{}}
		if st.err != nil {
			msg := st.err.Error()
			cs.Error = &msg
		} else if st.swapErr != nil {
			msg := "hot swap failed, previous versions still run: " + st.swapErr.Error()
			cs.Error = &msg
		}
		if st.chain != nil {
			for _, b := range st.chain.Status() {
				bs := BindingStatus{Name: b.Name, SHA256: b.SHA256, Breaker: string(b.Breaker),
					ConsecutiveFailures: b.ConsecutiveFailures, Instances: b.Instances}
				if b.LastError != "" {
					msg := b.LastError
					bs.LastError = &msg
				}
				cs.Bindings = append(cs.Bindings, bs)
			}
		}
		out = append(out, cs)
	}
	return out
}

func endsWith(chain, suffix []model.FilterRef) bool {
	if len(suffix) > len(chain) {
		return false
	}
	return canonical(chain[len(chain)-len(suffix):]) == canonical(suffix)
}
