package wasm

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// poolKey identifies instances that are interchangeable: same tenant,
// binding name, module, config and limits.
type poolKey struct {
	tenant, name, digest string
	configSum            [32]byte
	limitPages           uint32
	timeout              time.Duration
}

// pool keeps warm instances of one binding. Instances are single-threaded;
// the token channel bounds how many run at once.
type pool struct {
	key     poolKey
	host    *Host
	mod     *Module
	config  []byte
	tokens  chan struct{}
	refs    int // chains holding the pool; guarded by host.mu
	breaker breaker

	mu     sync.Mutex
	idle   []*instance
	leased map[*instance]struct{}
	live   int
	dead   bool
	done   chan struct{} // closed by shutdown

	m poolMetrics
}

// acquirePool returns the shared pool for b, creating and prewarming it (one
// instance, so config errors surface at bind time).
func (h *Host) acquirePool(ctx context.Context, tenant string, b *Binding) (*pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := poolKey{
		tenant: tenant, name: b.Name, digest: b.Module.info.SHA256,
		configSum: sha256.Sum256(b.Config), limitPages: b.MemoryLimitPages, timeout: b.Timeout,
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errHostClosed
	}
	if p, ok := h.pools[key]; ok {
		p.refs++
		h.mu.Unlock()
		return p, nil
	}
	h.mu.Unlock()

	p := &pool{
		key: key, host: h, mod: b.Module, config: append([]byte(nil), b.Config...),
		tokens: make(chan struct{}, h.cfg.MaxInstances), refs: 1,
		leased: map[*instance]struct{}{}, done: make(chan struct{}),
		breaker: breaker{threshold: h.cfg.BreakerThreshold, cooldown: h.cfg.BreakerCooldown},
		m:       h.metrics.forPool(tenant, b.Name, b.Module.info.SHA256),
	}
	in, err := p.create()
	if err != nil {
		return nil, err
	}
	p.put(in)

	h.mu.Lock()
	defer h.mu.Unlock()
	if prev, ok := h.pools[key]; ok { // a concurrent bind won; use its pool
		prev.refs++
		go p.shutdown(context.Background())
		return prev, nil
	}
	h.pools[key] = p
	return p, nil
}

// releasePool drops one reference; the last one closes the instances.
func (h *Host) releasePool(p *pool) {
	h.mu.Lock()
	p.refs--
	last := p.refs == 0 && h.pools[p.key] == p
	if last {
		delete(h.pools, p.key)
	}
	h.mu.Unlock()
	if last {
		p.shutdown(context.Background())
	}
}

func (p *pool) create() (*instance, error) {
	// Instances outlive the request that created them, so they must not
	// keep its context (or its values) alive.
	in, err := newInstance(context.Background(), p.host, p.mod, p.config,
		p.key.limitPages, p.key.timeout, max(10*p.key.timeout, 2*time.Second))
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.live++
	p.mu.Unlock()
	p.m.instances.Inc()
	return in, nil
}

// lease returns an idle instance or a new one, waiting while MaxInstances
// batches of this pool are running.
func (p *pool) lease(ctx context.Context) (*instance, error) {
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, errHostClosed
	}
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		<-p.tokens
		return nil, errHostClosed
	}
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.leased[in] = struct{}{}
		p.mu.Unlock()
		return in, nil
	}
	p.mu.Unlock()
	in, err := p.create()
	if err != nil {
		<-p.tokens
		return nil, err
	}
	p.mu.Lock()
	p.leased[in] = struct{}{}
	p.mu.Unlock()
	return in, nil
}

// give returns a leased instance; a failed or bloated one is closed instead.
func (p *pool) give(in *instance, healthy bool) {
	p.mu.Lock()
	delete(p.leased, in)
	p.mu.Unlock()
	if healthy && !in.pendingRecycling {
		p.put(in)
	} else {
		p.discard(in)
	}
	<-p.tokens
}

func (p *pool) put(in *instance) {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		p.discard(in)
		return
	}
	p.idle = append(p.idle, in)
	p.mu.Unlock()
}

func (p *pool) discard(in *instance) {
	in.close()
	p.mu.Lock()
	p.live--
	p.mu.Unlock()
	p.m.instances.Dec()
}

// shutdown closes idle instances; leased ones are closed when given back.
func (p *pool) shutdown(context.Context) {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	p.dead = true
	close(p.done)
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, in := range idle {
		p.discard(in)
	}
	p.m.breakerOpen.Set(0)
}

// drain stops running guests at their next tick and waits until every
// leased instance is back, so no guest runs while the runtime frees memory.
func (p *pool) drain(ctx context.Context) error {
	p.mu.Lock()
	for in := range p.leased {
		in.st.killed.Store(true)
	}
	p.mu.Unlock()
	for i := 0; i < cap(p.tokens); i++ {
		select {
		case p.tokens <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// breaker is a circuit breaker over consecutive failures: failed single-event
// calls (isolated poison events) and instances that cannot start; any
// successful call resets it. While open, calls are
// refused without touching the guest; after the cooldown one trial batch is
// let through (half-open) and its result closes or reopens the breaker.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu          sync.Mutex
	consecutive int
	openUntil   time.Time
	trial       bool
	trips       int
	lastError   string
}

// BreakerState is the externally visible state of a circuit breaker.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half_open"
)

// allow reports whether a guest call may run now.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.consecutive < b.threshold {
		return true
	}
	if now.Before(b.openUntil) || b.trial {
		return false
	}
	b.trial = true
	return true
}

// endTrial lets another call through after a half-open trial that neither
// succeeded nor failed on a single event (its batch is being split).
func (b *breaker) endTrial() {
	b.mu.Lock()
	b.trial = false
	b.mu.Unlock()
}

// record notes a call result and reports whether the breaker is now open.
func (b *breaker) record(ok bool, msg string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.trial = false
	if ok {
		b.consecutive = 0
		return false
	}
	b.lastError = msg
	b.consecutive++
	if b.consecutive >= b.threshold {
		if b.consecutive == b.threshold {
			b.trips++
		}
		b.openUntil = now.Add(b.cooldown)
		return true
	}
	return false
}

func (b *breaker) state(now time.Time) (BreakerState, int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.consecutive < b.threshold:
		return BreakerClosed, b.consecutive, b.lastError
	case now.Before(b.openUntil) && !b.trial:
		return BreakerOpen, b.consecutive, b.lastError
	default:
		return BreakerHalfOpen, b.consecutive, b.lastError
	}
}

type poolMetrics struct {
	calls, eventsIn, traps, timeouts prometheus.Counter
	out                              [4]prometheus.Counter
	duration                         prometheus.Observer
	instances, breakerOpen           prometheus.Gauge
}
