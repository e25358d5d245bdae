package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

var (
	errHostClosed  = errors.New("wasm host closed")
	errChainClosed = errors.New("filter chain closed")
)

// Binding attaches a module, with its config and limits, to a chain.
type Binding struct {
	// Name identifies the binding in outcomes, status and metrics
	// (usually the filter name).
	Name string
	// Module is a module returned by Host.Load.
	Module *Module
	// Config is the JSON handed to the guest's gw_init.
	Config []byte
	// OnError applies to events the filter fails on.
	OnError Policy
	// MemoryLimitPages caps each instance's linear memory in 64 KiB pages.
	// Zero means DefaultMemoryLimitPages; it may not exceed the host's
	// MaxMemoryPages.
	MemoryLimitPages uint32
	// Timeout is the time budget of one guest batch call. Zero means
	// DefaultCallTimeout.
	Timeout time.Duration
}

// Chain runs an ordered list of bindings over batches of events. Run may be
// called concurrently; Update swaps the bindings between batches.
type Chain struct {
	host     *Host
	tenant   string
	maxBatch int

	mu     sync.RWMutex // Run holds it shared for a whole batch
	links  []*link
	closed bool
}

type link struct {
	b    Binding
	pool *pool
}

// NewChain binds modules for one tenant. Each binding gets (or shares) a pool
// keyed by tenant, name, module, config and limits, prewarmed with one
// instance so a config the guest rejects fails here.
func (h *Host) NewChain(ctx context.Context, tenant string, bindings []Binding) (*Chain, error) {
	c := &Chain{host: h, tenant: tenant, maxBatch: h.cfg.MaxBatch}
	links, err := c.bind(ctx, bindings)
	if err != nil {
		return nil, err
	}
	c.links = links
	return c, nil
}

func (c *Chain) bind(ctx context.Context, bindings []Binding) ([]*link, error) {
	links := make([]*link, 0, len(bindings))
	fail := func(err error) ([]*link, error) {
		for _, l := range links {
			c.host.releasePool(l.pool)
		}
		return nil, err
	}
	for _, b := range bindings {
		if b.Module == nil {
			return fail(fmt.Errorf("binding %q: no module", b.Name))
		}
		if b.MemoryLimitPages == 0 {
			b.MemoryLimitPages = min(DefaultMemoryLimitPages, c.host.cfg.MaxMemoryPages)
		}
		if b.MemoryLimitPages > c.host.cfg.MaxMemoryPages {
			return fail(fmt.Errorf("binding %q: memory_limit_pages %d above the host maximum %d", b.Name, b.MemoryLimitPages, c.host.cfg.MaxMemoryPages))
		}
		if b.Module.minPages > b.MemoryLimitPages {
			return fail(fmt.Errorf("binding %q: module needs %d pages of memory at start, above memory_limit_pages %d", b.Name, b.Module.minPages, b.MemoryLimitPages))
		}
		if b.Timeout <= 0 {
			b.Timeout = DefaultCallTimeout
		}
		p, err := c.host.acquirePool(ctx, c.tenant, &b)
		if err != nil {
			return fail(fmt.Errorf("binding %q: %w", b.Name, err))
		}
		links = append(links, &link{b: b, pool: p})
	}
	return links, nil
}

// Update replaces the chain's bindings. New pools are built first; the swap
// waits for in-flight batches, so every batch (and every event) runs wholly
// on the old or wholly on the new bindings.
func (c *Chain) Update(ctx context.Context, bindings []Binding) error {
	links, err := c.bind(ctx, bindings)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		for _, l := range links {
			c.host.releasePool(l.pool)
		}
		return errChainClosed
	}
	old := c.links
	c.links = links
	c.mu.Unlock()
	for _, l := range old {
		c.host.releasePool(l.pool)
	}
	return nil
}

// Close releases the chain's pools after in-flight batches finish.
func (c *Chain) Close() {
	c.mu.Lock()
	old := c.links
	c.links, c.closed = nil, true
	c.mu.Unlock()
	for _, l := range old {
		c.host.releasePool(l.pool)
	}
}

// Run filters events through every binding in order and returns one Outcome
// per event, in input order. Events a filter drops or dead-letters leave the
// chain there; the rest see earlier replacements. The error is non-nil only
// when ctx ends or the chain is closed; the batch then has no outcomes and
// should be retried.
func (c *Chain) Run(ctx context.Context, events []Event) ([]Outcome, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errChainClosed
	}
	outs := make([]Outcome, len(events))
	// alive lists events still in the chain; bodies holds replacements. The
	// common case (nothing dropped or replaced yet) hands the caller's slice
	// to the guest without copying it.
	var alive []int
	var bodies [][]byte
	var batch []Event
	rp := resultPool.Get().(*[]result)
	defer resultPool.Put(rp)
	for _, l := range c.links {
		n := len(events)
		if alive != nil {
			n = len(alive)
		}
		if n == 0 {
			break
		}
		in := events
		if alive != nil || bodies != nil {
			batch = batch[:0]
			for j := 0; j < n; j++ {
				i := j
				if alive != nil {
					i = alive[j]
				}
				e := events[i]
				if bodies != nil && bodies[i] != nil {
					e.Body = bodies[i]
				}
				batch = append(batch, e)
			}
			in = batch
		}
		if cap(*rp) < n {
			*rp = make([]result, n)
		}
		res := (*rp)[:n]
		clear(res)
		if err := l.run(ctx, c.maxBatch, in, res); err != nil {
			return nil, err
		}
		var next []int
		keep := func(i int) {
			if next != nil {
				next = append(next, i)
			}
		}
		stop := func(j int) {
			if next == nil { // first event leaving the chain: materialise the list
				next = make([]int, 0, n)
				for k := 0; k < j; k++ {
					if alive != nil {
						next = append(next, alive[k])
					} else {
						next = append(next, k)
					}
				}
			}
		}
		for j := range res {
			i := j
			if alive != nil {
				i = alive[j]
			}
			r := &res[j]
			switch r.verdict {
			case Keep, Replace:
				if r.verdict == Replace {
					if bodies == nil {
						bodies = make([][]byte, len(events))
					}
					bodies[i] = r.body
					outs[i].Verdict = Replace
				}
				if r.route != "" {
					outs[i].Route = r.route
				}
				keep(i)
			case Drop:
				stop(j)
				outs[i] = Outcome{Verdict: Drop, Filter: l.b.Name}
			case Error:
				switch l.b.OnError {
				case DropOnError:
					stop(j)
					outs[i] = Outcome{Verdict: Drop, Filter: l.b.Name, Err: r.err}
				case Pass:
					outs[i].Filter, outs[i].Err = l.b.Name, r.err
					keep(i)
				default:
					stop(j)
					outs[i] = Outcome{Verdict: Error, Filter: l.b.Name, Err: r.err}
				}
			}
		}
		if next != nil {
			alive = next
		}
	}
	for i := range outs {
		if outs[i].Verdict == Replace {
			outs[i].Body = bodies[i]
		}
	}
	return outs, nil
}

var resultPool = sync.Pool{New: func() any { return new([]result) }}

// run processes events in guest batches of at most maxBatch.
func (l *link) run(ctx context.Context, maxBatch int, events []Event, res []result) error {
	p := l.pool
	for lo := 0; lo < len(events); lo += maxBatch {
		hi := min(lo+maxBatch, len(events))
		if err := p.call(ctx, events[lo:hi], res[lo:hi], 0); err != nil {
			return err
		}
	}
	p.m.eventsIn.Add(float64(len(events)))
	for i := range res {
		p.m.out[res[i].verdict].Inc()
	}
	return nil
}

// call runs one guest batch. When the guest fails (trap, timeout, bad
// output) the instance is discarded and the batch is split in halves until
// the failing event stands alone; it alone gets an Error result carrying the
// module's error, the others their real verdicts.
//
// After a timeout each half gets its share of the parent's budget (never
// less than a sixteenth of the binding's timeout): a module that spins on
// every event would otherwise burn the full budget on each of the 2n-1
// calls of the search, about 25 s of a core for a batch of 128 at 100 ms,
// instead of roughly one budget per level. budget 0 means the full timeout.
func (p *pool) call(ctx context.Context, events []Event, res []result, budget time.Duration) error {
	if !p.breaker.allow(time.Now()) {
		_, n, last := p.breaker.state(time.Now())
		msg := fmt.Sprintf("filter disabled by circuit breaker after %d consecutive failures; last error: %s", n, last)
		for i := range res {
			res[i] = result{verdict: Error, err: msg}
		}
		return nil
	}
	in, err := p.lease(ctx)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, errHostClosed) {
			return err
		}
		// The instance could not even start (e.g. _initialize spun past its
		// budget); no event is to blame, so all of them carry the error.
		p.countFailure(err)
		p.tripBreaker(err)
		for i := range res {
			res[i] = result{verdict: Error, err: err.Error()}
		}
		return nil
	}
	start := time.Now()
	err = in.run(events, res, budget)
	p.m.duration.Observe(time.Since(start).Seconds())
	p.m.calls.Inc()
	shutdown := in.st.killed.Load()
	p.give(in, err == nil)
	if err != nil && shutdown {
		// Stopped by Host.Close, not by its own fault: no verdict, the
		// caller retries the batch elsewhere or after restart.
		return errHostClosed
	}
	if err == nil {
		p.breaker.record(true, "", time.Now())
		p.m.breakerOpen.Set(0)
		return nil
	}
	p.countFailure(err)
	if len(events) == 1 {
		p.tripBreaker(err)
		res[0] = result{verdict: Error, err: err.Error()}
		return nil
	}
	// Only isolated poison events count towards the breaker: the failed
	// halves on the way down are one fault, not several.
	p.breaker.endTrial()
	mid := len(events) / 2
	lo, hi := budget, budget
	var f *failure
	if errors.As(err, &f) && f.reason == "timeout" {
		full := budget
		if full <= 0 {
			full = p.key.timeout
		}
		floor := p.key.timeout / 16
		lo = max(full*time.Duration(mid)/time.Duration(len(events)), floor)
		hi = max(full*time.Duration(len(events)-mid)/time.Duration(len(events)), floor)
	}
	if err := p.call(ctx, events[:mid], res[:mid], lo); err != nil {
		return err
	}
	return p.call(ctx, events[mid:], res[mid:], hi)
}

func (p *pool) countFailure(err error) {
	var f *failure
	if errors.As(err, &f) && f.reason == "timeout" {
		p.m.timeouts.Inc()
	} else {
		p.m.traps.Inc()
	}
}

func (p *pool) tripBreaker(err error) {
	if p.breaker.record(false, err.Error(), time.Now()) {
		p.m.breakerOpen.Set(1)
	}
}

// BindingStatus is the health of one binding of a chain.
type BindingStatus struct {
	Name   string
	SHA256 string
	// Breaker is closed (healthy), open (calls refused) or half_open.
	Breaker             BreakerState
	ConsecutiveFailures int
	LastError           string
	// Instances is the number of live instances in the binding's pool.
	Instances int
}

// Status reports each binding's breaker and pool.
func (c *Chain) Status() []BindingStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]BindingStatus, 0, len(c.links))
	now := time.Now()
	for _, l := range c.links {
		st, n, last := l.pool.breaker.state(now)
		l.pool.mu.Lock()
		live := l.pool.live
		l.pool.mu.Unlock()
		out = append(out, BindingStatus{
			Name: l.b.Name, SHA256: l.b.Module.info.SHA256, Breaker: st,
			ConsecutiveFailures: n, LastError: last, Instances: live,
		})
	}
	return out
}
