// Package wasm runs tenant filter modules (ABI gw/v1, filters/ABI.md) on
// wazero, isolated from each other and from the gateway.
//
// Usage:
//
//	h, _ := wasm.NewHost(ctx, wasm.Config{MaxModuleBytes: maxFromEnv, CacheDir: dir})
//	mod, err := h.Load(ctx, uploaded)           // validate, instrument, compile (content-addressed)
//	chain, err := h.NewChain(ctx, orgID, []wasm.Binding{{Name: "redact", Module: mod, Config: cfg}})
//	outcomes, err := chain.Run(ctx, events)     // one Outcome per event
//	err = chain.Update(ctx, newBindings)        // hot reload at the next batch boundary
//
// Modules are validated at upload (size, wasm header, gw/v1 exports, reactor
// shape, import allowlist; a *ValidationError names the rule), rewritten so
// the host can stop them (see RATIONALE.md), compiled once and kept compiled;
// an optional directory cache makes restarts cheap. Instances are pooled per
// (tenant, binding name, module, config, limits) and each has its export
// handles looked up once.
//
// A trap, timeout or malformed answer discards the instance and splits the
// batch until the poison event stands alone; it gets the module's error and
// the binding's on_error policy, the others their verdicts. A circuit breaker
// per pool refuses calls after repeated failures (Chain.Status). Every input
// event always gets exactly one Outcome.
//
// The package imports nothing from the gateway core.
package wasm
