// Package cdc delivers the transactional outbox to the CDC sinks.
//
// Every enabled sink has its own worker that reads its org's outbox after
// the sink's durable cursor, in commit order and in batches, runs the filter
// chain, hands the batch to the sink's driver (core/sinks) and retries what
// failed with jittered exponential backoff. The cursor only moves past a
// prefix of events that are delivered, dead-lettered or filtered out, in the
// same transaction that records the dead letters, so a crash at any point
// redelivers (at-least-once; consumers dedupe by change_hash) and never
// skips. Workers are independent: a slow or dead sink holds back only its own
// cursor, while the outbox keeps everything until every sink has passed it
// (bounded by PEAT_OUTBOX_MAX_ROWS at the writers, and by retention).
//
// Per-document order on a sink also holds across failures: once an event of
// a document is dead-lettered for a sink, the document is "held" for that
// sink and its later events are dead-lettered behind it (without attempts)
// until the dead letters are replayed. Replay therefore re-delivers a
// document's changes in their original order and never after a newer one.
//
// Replay is durable and works across replicas: the API appends a small
// marker event to the org's outbox naming the sink (Op "replay"); other sinks
// skip it, and the sink's worker, on reaching it in commit order, delivers
// the sink's un-replayed dead letters (in dead-letter order) through the
// same driver, retry budget and backoff, then marks them replayed. If any of
// them still fails with a retryable error, none is marked (the delivered ones
// come again on the next replay: duplicates, never a loss) and the documents
// stay held.
//
// Sinks created, disabled, re-enabled, changed or deleted at run time take
// effect within a second (a reconcile loop over ListAllSinks), or at once
// through Reconcile. With several replicas on one Postgres, a SinkLocker
// makes sure one sink is delivered by one replica at a time, with fail-over.
package cdc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// OpReplay marks an outbox event that asks one sink to replay its dead
// letters; it is never delivered to any sink.
const OpReplay = "replay"

// Options tune the dispatcher. Zero values take the defaults.
type Options struct {
	// BatchSize is the most events read and handed to a driver at once
	// (default 512).
	BatchSize int
	// PollInterval is how often an idle worker looks at the outbox without
	// a Notify (writes made by another replica); default 500 ms.
	PollInterval time.Duration
	// ReconcileInterval is how often the sink list is re-read (default 1 s).
	ReconcileInterval time.Duration
	// RetryBudget is the number of attempts per event, by sink kind
	// (sinks.KindWebhook, ...), before a retryable failure is dead-lettered.
	// A kind not listed takes DefaultRetryBudget; 0 retries forever.
	RetryBudget map[string]int
	// BackoffBase and BackoffMax bound the jittered exponential backoff
	// between attempts (default 100 ms and 30 s). A target's Retry-After
	// wins when longer (capped at 10 × BackoffMax).
	BackoffBase, BackoffMax time.Duration
	// CommitInterval bounds how long delivered progress may stay in memory
	// before the cursor is written (default 100 ms); dead letters and errors
	// are written at once.
	CommitInterval time.Duration
	// Gather is how long a worker that finished a small round and was
	// already woken again (changes were committed while it delivered) waits
	// before reading, so that under load one read and one driver call carry
	// the events of several commits instead of one or two (default 5 ms;
	// negative: never wait). An idle worker woken by a commit reads at once,
	// so at moderate rates delivery latency is unchanged.
	Gather time.Duration
	// StartFromNow makes a sink that has never run start at the org's
	// current last event instead of the retained history.
	StartFromNow bool
	// Retention is how long delivered events stay in the outbox (so that a
	// new sink can start from history); default 7 days.
	Retention time.Duration
	// OutboxMaxRows is the writers' outbox bound (PEAT_OUTBOX_MAX_ROWS).
	// Retention counts retained rows, delivered or not, so when the outbox
	// holds half of it, every row all sinks have passed is pruned whatever
	// its age: history is kept only while it does not crowd out writes.
	OutboxMaxRows int64
	// PruneInterval is how often the outbox is pruned (default 1 min).
	PruneInterval time.Duration
	// GaugeInterval is how often pending and outbox-depth gauges are
	// refreshed (they cost a count query); default 10 s.
	GaugeInterval time.Duration
	// Filter runs tenant filter chains; nil means none.
	Filter Filter
	// Locker serialises sink delivery across replicas; nil for a single
	// process (SQLite).
	Locker SinkLocker
	// Registerer receives the per-sink metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// DefaultRetryBudget is the attempts per event for a kind absent from
// Options.RetryBudget: a webhook gives up after 10 attempts (its receiver
// may reject an event for good), while NATS and Kafka retry forever, since
// a down broker is an outage the outbox exists to ride out (store and
// forward) and its events must not be dead-lettered for it.
var DefaultRetryBudget = map[string]int{sinks.KindWebhook: 10, sinks.KindNats: 0, sinks.KindKafka: 0}

func (o *Options) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.ReconcileInterval <= 0 {
		o.ReconcileInterval = time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.CommitInterval <= 0 {
		o.CommitInterval = 100 * time.Millisecond
	}
	if o.Gather == 0 {
		o.Gather = 5 * time.Millisecond
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Minute
	}
	if o.GaugeInterval <= 0 {
		o.GaugeInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) budget(kind string) int {
	if n, ok := o.RetryBudget[kind]; ok {
		return n
	}
	return DefaultRetryBudget[kind]
}

// Dispatcher runs one worker per enabled sink.
type Dispatcher struct {
	st  store.Store
	f   *sinks.Factory
	o   Options
	log *slog.Logger
	m   *metrics

	mu      sync.RWMutex
	workers map[string]*worker            // by sink id
	byOrg   map[string]map[string]*worker // org -> sink id -> worker
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	closed  bool

	recon    chan struct{}
	reconMu  sync.Mutex // one reconcile at a time
	loops    sync.WaitGroup
	stopOnce sync.Once
}

// New returns a dispatcher over st delivering through drivers built by f.
// Nothing runs before Start.
func New(st store.Store, f *sinks.Factory, opts Options) *Dispatcher {
	opts.defaults()
	return &Dispatcher{
		st: st, f: f, o: opts, log: opts.Logger.With("component", "cdc"),
		m:       newMetrics(opts.Registerer),
		workers: map[string]*worker{},
		byOrg:   map[string]map[string]*worker{},
		recon:   make(chan struct{}, 1),
	}
}

// Start runs the reconcile, prune and gauge loops until ctx ends or Close.
// The first reconcile runs before Start returns, so the sinks that exist
// are being delivered when it does (unless the store is unreachable, in
// which case the loop keeps trying).
func (d *Dispatcher) Start(ctx context.Context) {
	d.mu.Lock()
	if d.started || d.closed {
		d.mu.Unlock()
		return
	}
	d.started = true
	d.ctx, d.cancel = context.WithCancel(ctx)
	d.mu.Unlock()
	if err := d.reconcile(d.ctx); err != nil {
		d.log.Warn("initial sink reconcile failed; retrying", "error", err)
	}
	d.loops.Add(3)
	go d.reconcileLoop()
	go d.pruneLoop()
	go d.gaugeLoop()
}

// Notify wakes the workers of the given orgs (call after committing
// outbox events). It never blocks.
func (d *Dispatcher) Notify(orgIDs ...string) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, org := range orgIDs {
		for _, w := range d.byOrg[org] {
			w.poke()
		}
	}
}

// Reconcile asks for an immediate re-read of the sink list (call after
// creating, changing or deleting a sink). It never blocks.
func (d *Dispatcher) Reconcile() {
	select {
	case d.recon <- struct{}{}:
	default:
	}
}

// Close stops every worker and loop and waits for them. Events in flight
// are not acknowledged to the cursor and will be delivered again.
func (d *Dispatcher) Close() {
	d.stopOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		cancel := d.cancel
		ws := make([]*worker, 0, len(d.workers))
		for _, w := range d.workers {
			ws = append(ws, w)
		}
		d.workers, d.byOrg = map[string]*worker{}, map[string]map[string]*worker{}
		d.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		for _, w := range ws {
			w.stop()
		}
		d.loops.Wait()
	})
}

func (d *Dispatcher) reconcileLoop() {
	defer d.loops.Done()
	t := time.NewTicker(d.o.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		case <-d.recon:
		}
		if err := d.reconcile(d.ctx); err != nil && d.ctx.Err() == nil {
			d.log.Warn("sink reconcile failed", "error", err)
		}
	}
}

// fingerprint changes whenever a sink must be restarted to see its new
// configuration.
func fingerprint(s model.CdcSinkConfig) string {
	t, _ := json.Marshal(s.SinkType)
	f, _ := json.Marshal(s.Filters)
	secret := ""
	if s.SinkType.Webhook != nil {
		secret = s.SinkType.Webhook.Secret
	}
	return string(t) + "|" + secret + "|" + string(f)
}

// reconcile starts workers for enabled sinks without one, and stops those
// whose sink is gone, disabled or changed (a changed one restarts).
func (d *Dispatcher) reconcile(ctx context.Context) error {
	d.reconMu.Lock()
	defer d.reconMu.Unlock()
	all, err := d.st.ListAllSinks(ctx)
	if err != nil {
		return err
	}
	want := make(map[string]model.CdcSinkConfig, len(all))
	for _, s := range all {
		if s.Enabled {
			want[s.SinkID] = s
		}
	}
	exists := make(map[string]bool, len(all))
	for _, s := range all {
		exists[s.SinkID] = true
	}

	var stop []*worker
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	for id, w := range d.workers {
		s, ok := want[id]
		if ok && fingerprint(s) == w.fp && !w.exited() {
			continue
		}
		d.removeLocked(w)
		w.deleted = !exists[id]
		stop = append(stop, w)
	}
	var start []model.CdcSinkConfig
	var errs []error
	for id, s := range want {
		if _, ok := d.workers[id]; !ok {
			start = append(start, s)
		}
	}
	d.mu.Unlock()

	for _, w := range stop {
		w.stop()
		if w.deleted {
			d.m.drop(w.cfg.OrgID, w.cfg.SinkID, w.kind)
		}
	}
	for _, s := range start {
		var lease Lease
		if d.o.Locker != nil {
			l, ok, err := d.o.Locker.TryLockSink(ctx, s.SinkID)
			if err != nil {
				// Without the lock this replica must not deliver; the
				// next reconcile tries again.
				errs = append(errs, fmt.Errorf("lock sink %s: %w", s.SinkID, err))
				continue
			}
			if !ok {
				continue // another replica delivers it
			}
			lease = l
		}
		w := newWorker(d, s, lease)
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			if lease != nil {
				lease.Release()
			}
			return nil
		}
		d.workers[s.SinkID] = w
		if d.byOrg[s.OrgID] == nil {
			d.byOrg[s.OrgID] = map[string]*worker{}
		}
		d.byOrg[s.OrgID][s.SinkID] = w
		// Started under the lock, so Close never waits for a worker that
		// was registered but not yet running.
		w.start(d.ctx)
		d.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (d *Dispatcher) removeLocked(w *worker) {
	delete(d.workers, w.cfg.SinkID)
	if m := d.byOrg[w.cfg.OrgID]; m != nil {
		delete(m, w.cfg.SinkID)
		if len(m) == 0 {
			delete(d.byOrg, w.cfg.OrgID)
		}
	}
}

func (d *Dispatcher) pruneLoop() {
	defer d.loops.Done()
	t := time.NewTicker(d.o.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := uint64(time.Now().Add(-d.o.Retention).UnixMilli())
		if d.o.OutboxMaxRows > 0 {
			if n, err := d.st.OutboxDepth(d.ctx); err == nil && n >= d.o.OutboxMaxRows/2 {
				cutoff = uint64(time.Now().UnixMilli())
			}
		}
		if n, err := d.st.Prune(d.ctx, cutoff); err != nil {
			if d.ctx.Err() == nil {
				d.log.Warn("outbox prune failed", "error", err)
			}
		} else if n > 0 {
			d.log.Debug("outbox pruned", "rows", n)
		}
	}
}

func (d *Dispatcher) gaugeLoop() {
	defer d.loops.Done()
	t := time.NewTicker(d.o.GaugeInterval)
	defer t.Stop()
	for {
		if n, err := d.st.OutboxDepth(d.ctx); err == nil {
			d.m.outboxDepth.Set(float64(n))
		}
		d.mu.RLock()
		ws := make([]*worker, 0, len(d.workers))
		for _, w := range d.workers {
			ws = append(ws, w)
		}
		d.mu.RUnlock()
		for _, w := range ws {
			if n, err := d.st.CountAfter(d.ctx, w.cfg.OrgID, w.cursorNow()); err == nil {
				w.m.pending.Set(float64(n))
			}
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Delivering reports whether this replica runs the sink's worker.
func (d *Dispatcher) Delivering(sinkID string) bool {
	d.mu.RLock()
	w := d.workers[sinkID]
	d.mu.RUnlock()
	return w != nil && !w.exited()
}

// Status is a sink's delivery state as GET .../sinks/{id}/status shows it.
type Status struct {
	SinkID    string `json:"sink_id"`
	Delivered int64  `json:"delivered"`
	// Pending counts the org's retained events after the sink's cursor.
	Pending int64 `json:"pending"`
	// DeadLettered counts events ever dead-lettered (replay does not
	// lower it).
	DeadLettered    int64   `json:"dead_lettered"`
	LastError       *string `json:"last_error"`
	LastDeliveredAt *uint64 `json:"last_delivered_at"`
	// Cursor is the outbox seq the sink has durably passed.
	Cursor  int64 `json:"cursor"`
	Enabled bool  `json:"enabled"`
	// FilterErrors counts filter-chain failures seen by this replica since
	// it started delivering the sink, with the latest message.
	FilterErrors    int64   `json:"filter_errors,omitempty"`
	LastFilterError *string `json:"last_filter_error,omitempty"`
}

// Status reports a sink's delivery state (store.ErrNotFound for an unknown
// sink of the org).
func (d *Dispatcher) Status(ctx context.Context, org, sinkID string) (Status, error) {
	s, err := d.st.GetSink(ctx, org, sinkID)
	if err != nil {
		return Status{}, err
	}
	p, err := d.st.GetProgress(ctx, sinkID)
	if err != nil {
		return Status{}, err
	}
	pending, err := d.st.CountAfter(ctx, org, p.Cursor)
	if err != nil {
		return Status{}, err
	}
	st := Status{SinkID: sinkID, Delivered: p.Delivered, Pending: pending, DeadLettered: p.DeadLettered,
		Cursor: p.Cursor, Enabled: s.Enabled}
	if p.LastError != "" {
		e := p.LastError
		st.LastError = &e
	}
	if p.LastDeliveredAt != 0 {
		t := p.LastDeliveredAt
		st.LastDeliveredAt = &t
	}
	d.mu.RLock()
	w := d.workers[sinkID]
	d.mu.RUnlock()
	if w != nil {
		n, msg := w.filterStats()
		st.FilterErrors = n
		if msg != "" {
			st.LastFilterError = &msg
		}
	}
	return st, nil
}

// DeadLetters lists a sink's dead letters, oldest first.
func (d *Dispatcher) DeadLetters(ctx context.Context, org, sinkID string, limit int) ([]store.DeadLetter, error) {
	if _, err := d.st.GetSink(ctx, org, sinkID); err != nil {
		return nil, err
	}
	return d.st.ListDeadLetters(ctx, org, sinkID, limit)
}

// pendingDeadLetters returns a sink's un-replayed dead letters, oldest first.
func pendingDeadLetters(ctx context.Context, st store.Store, org, sinkID string) ([]store.DeadLetter, error) {
	all, err := st.ListDeadLetters(ctx, org, sinkID, 1<<31-1)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, dl := range all {
		if !dl.Replayed {
			out = append(out, dl)
		}
	}
	return out, nil
}

// replayRequest is the payload of a replay marker.
type replayRequest struct {
	SinkID string `json:"sink_id"`
}

// Replay queues the sink's un-replayed dead letters for delivery and
// returns how many there are. The request is durable (an outbox marker), so
// it survives a restart and reaches the replica that delivers the sink; the
// letters are delivered when the sink's worker reaches the marker, after
// every event committed before it.
func (d *Dispatcher) Replay(ctx context.Context, org, sinkID string) (int, error) {
	if _, err := d.st.GetSink(ctx, org, sinkID); err != nil {
		return 0, err
	}
	dls, err := pendingDeadLetters(ctx, d.st, org, sinkID)
	if err != nil {
		return 0, err
	}
	if len(dls) == 0 {
		return 0, nil
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	body, _ := json.Marshal(replayRequest{SinkID: sinkID})
	ev := model.CdcEvent{
		OrgID: org, AppID: "-", DocumentID: sinkID,
		ChangeHash: "replay-" + hex.EncodeToString(nonce[:]), ActorID: "peat-gateway",
		TimestampMs: uint64(time.Now().UnixMilli()), Patches: body, Op: OpReplay,
	}
	if _, err := d.st.AppendEvent(ctx, ev); err != nil {
		return 0, err
	}
	d.Notify(org)
	return len(dls), nil
}

// replayTarget returns the sink a replay marker addresses ("" if ev is not one).
func replayTarget(ev *model.CdcEvent) string {
	if ev.Op != OpReplay {
		return ""
	}
	var r replayRequest
	if json.Unmarshal(ev.Patches, &r) != nil || r.SinkID == "" {
		return "-" // malformed: addresses nobody, skipped by all
	}
	return r.SinkID
}

// isNotFound reports a missing org or sink.
func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
