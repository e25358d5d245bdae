package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/sinks"
	"github.com/defenseunicorns/peat-gateway/core/store"
)

// Dead-letter error texts the worker itself writes.
const (
	heldMsg         = "held: an earlier change of this document is dead-lettered for this sink (replay delivers them in order)"
	filterErrPrefix = "filter: "
	gaveUpPrefix    = "gave up after "
)

type docKey struct{ app, doc string }

type itemState uint8

const (
	pending itemState = iota
	delivered
	dead    // dead-lettered (or, during a replay, failed for good)
	skipped // nothing to deliver: filtered out, or another sink's replay marker
)

// item is one event on its way through a worker.
type item struct {
	seq       int64
	ev        model.CdcEvent // what is delivered (after a Replace)
	orig      model.CdcEvent // what is dead-lettered on a filter failure
	state     itemState
	attempts  int
	err       string
	filterErr bool
}

func (it *item) key() docKey { return docKey{it.ev.AppID, it.ev.DocumentID} }

type chainEntry struct {
	chain []model.FilterRef
	at    time.Time
}

// worker delivers one sink.
type worker struct {
	d      *Dispatcher
	cfg    model.CdcSinkConfig
	kind   string
	spec   sinks.SinkSpec
	fp     string
	budget int
	lease  Lease
	m      sinkMetrics

	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	deleted bool // set by reconcile when the sink no longer exists

	drv    sinks.Driver
	cursor atomic.Int64 // in memory; the store's copy may lag by one flush
	// Delivered progress not yet written to the store (see commit).
	unsavedSeq       int64
	unsavedDelivered int64
	lastFlush        time.Time
	held             map[docKey]int64 // document -> seq of its first dead letter
	lastErr          string           // last_error as last written to the store
	chains           map[string]chainEntry

	fmu             sync.Mutex
	filterErrors    int64
	lastFilterError string

	// what reportFailures last logged, so a sink failing the same way for
	// hours logs twice a minute, not once per attempt
	loggedErr string
	loggedAt  time.Time
}

// failureLogEvery bounds how often a sink that keeps failing with the same
// error is logged; a new error is logged at once.
const failureLogEvery = 30 * time.Second

// reportFailures logs a delivery round's failures: the first of a kind at
// once, repeats at most every failureLogEvery. Metrics and the sink's status
// (last_error) record every one.
func (w *worker) reportFailures(lastErr string, failed, deadLettered int) {
	if failed == 0 {
		return
	}
	now := time.Now()
	if lastErr == w.loggedErr && now.Sub(w.loggedAt) < failureLogEvery && deadLettered == 0 {
		return
	}
	w.loggedErr, w.loggedAt = lastErr, now
	w.d.log.Warn("sink delivery failed", append(w.log(), "failed", failed, "dead_lettered", deadLettered, "error", lastErr)...)
}

func newWorker(d *Dispatcher, s model.CdcSinkConfig, lease Lease) *worker {
	kind := s.SinkType.Kind()
	spec := sinks.SinkSpec{OrgID: s.OrgID}
	switch {
	case s.SinkType.Nats != nil:
		spec.SubjectPrefix = s.SinkType.Nats.SubjectPrefix
	case s.SinkType.Kafka != nil:
		spec.Topic = s.SinkType.Kafka.Topic
	case s.SinkType.Webhook != nil:
		spec.URL, spec.Secret = s.SinkType.Webhook.URL, s.SinkType.Webhook.Secret
	}
	return &worker{
		d: d, cfg: s, kind: kind, spec: spec, fp: fingerprint(s), budget: d.o.budget(kind), lease: lease,
		m:    d.m.forSink(s.OrgID, s.SinkID, kind),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		held: map[docKey]int64{}, chains: map[string]chainEntry{},
	}
}

func (w *worker) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	w.cancel = cancel
	if w.lease != nil {
		go func() {
			select {
			case <-w.lease.Lost():
				w.d.log.Warn("lost the delivery lock of a sink; another replica takes over", "org", w.cfg.OrgID, "sink_id", w.cfg.SinkID)
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	go w.run(ctx)
}

// stop cancels the worker and waits for it to finish.
func (w *worker) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	<-w.done
}

func (w *worker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) cursorNow() int64 { return w.cursor.Load() }

func (w *worker) filterStats() (int64, string) {
	w.fmu.Lock()
	defer w.fmu.Unlock()
	return w.filterErrors, w.lastFilterError
}

func (w *worker) log() []any {
	return []any{"org", w.cfg.OrgID, "sink_id", w.cfg.SinkID, "kind", w.kind}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *worker) backoff(attempt int) time.Duration {
	return sinks.Backoff(attempt, w.d.o.BackoffBase, w.d.o.BackoffMax)
}

func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	defer func() {
		if w.lease != nil {
			w.lease.Release()
		}
	}()
	w.m.owned.Set(1)
	defer w.m.owned.Set(0)
	if !w.init(ctx) {
		return
	}
	defer w.drv.Close()
	defer func() {
		// Save what was delivered so a restart repeats less.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.flush(cctx)
	}()
	org, sink := w.cfg.OrgID, w.cfg.SinkID
	for fails := 0; ctx.Err() == nil; {
		evs, err := w.d.st.ReadOutbox(ctx, org, w.cursor.Load(), w.d.o.BatchSize)
		if err != nil {
			if ctx.Err() == nil {
				w.d.log.Warn("read outbox failed", append(w.log(), "error", err)...)
				sleep(ctx, w.backoff(fails))
				fails++
			}
			continue
		}
		fails = 0
		if len(evs) == 0 {
			if err := w.idle(ctx); isNotFound(err) {
				return
			}
			continue
		}
		// This sink's replay marker is a barrier: everything committed
		// before it is handled first, then the replay, then the rest.
		cut := len(evs)
		for i := range evs {
			if replayTarget(&evs[i].Event) == sink {
				cut = i
				break
			}
		}
		var err2 error
		if cut == 0 {
			err2 = w.replay(ctx, evs[0].Seq)
		} else {
			err2 = w.deliver(ctx, evs[:cut])
		}
		if err2 != nil {
			if isNotFound(err2) {
				return // the org (and so the sink) is gone
			}
			if ctx.Err() == nil {
				w.d.log.Warn("sink delivery round failed", append(w.log(), "error", err2)...)
				sleep(ctx, w.backoff(0))
			}
			continue
		}
		if cut == len(evs) && len(evs) < w.d.o.BatchSize {
			// Caught up with everything committed before the read: a later
			// commit has poked wake, so reading again now would only find
			// nothing (one query per batch saved under load).
			if len(evs) < gatherBelow && len(w.wake) > 0 && w.d.o.Gather > 0 {
				// Commits arrived while this round delivered: the writers
				// are busy, so let a few more commits land before the
				// next read rather than read and deliver each on its own.
				if !sleep(ctx, w.d.o.Gather) {
					continue
				}
			}
			if err := w.idle(ctx); isNotFound(err) {
				return
			}
		}
	}
}

// gatherBelow is the round size under which a busy worker gathers (see
// Options.Gather): a round this large already amortises its read.
const gatherBelow = 64

// idle waits for a wake-up (Notify) or the poll interval, writing progress
// kept in memory once it is CommitInterval old.
func (w *worker) idle(ctx context.Context) error {
	deadline := time.Now().Add(w.d.o.PollInterval)
	for {
		unsaved := w.unsavedSeq != 0 || w.unsavedDelivered != 0
		if unsaved && time.Since(w.lastFlush) >= w.d.o.CommitInterval {
			if err := w.flush(ctx); err != nil {
				return err
			}
			unsaved = false
		}
		wait := time.Until(deadline)
		if unsaved {
			wait = min(wait, w.d.o.CommitInterval-time.Since(w.lastFlush))
		}
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-w.wake:
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// init builds the driver and loads the durable state; false when ctx ended.
func (w *worker) init(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		drv, err := w.d.f.New(w.kind, w.spec)
		if err == nil {
			w.drv = drv
			break
		}
		w.d.log.Warn("sink driver unavailable", append(w.log(), "error", err)...)
		w.recordError(ctx, "sink unavailable: "+err.Error())
		if !sleep(ctx, w.backoff(attempt)) {
			return false
		}
	}
	for attempt := 0; ; attempt++ {
		err := w.loadState(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			w.drv.Close()
			return false
		}
		w.d.log.Warn("load sink state failed", append(w.log(), "error", err)...)
		if !sleep(ctx, w.backoff(attempt)) {
			w.drv.Close()
			return false
		}
	}
}

func (w *worker) loadState(ctx context.Context) error {
	st := w.d.st
	p, err := st.GetProgress(ctx, w.cfg.SinkID)
	if err != nil {
		return err
	}
	if w.d.o.StartFromNow && p == (store.SinkProgress{}) {
		// Never run before: start at the org's current end, and record it
		// so a restart does not move the start again.
		last, err := st.LastSeq(ctx, w.cfg.OrgID)
		if err != nil {
			return err
		}
		if err := st.Advance(ctx, w.cfg.OrgID, w.cfg.SinkID, last, 0, nil, "", uint64(time.Now().UnixMilli())); err != nil {
			return err
		}
		p.Cursor = last
	}
	w.cursor.Store(p.Cursor)
	w.lastErr = p.LastError
	return w.loadHeld(ctx)
}

// loadHeld rebuilds the held documents from the un-replayed dead letters.
func (w *worker) loadHeld(ctx context.Context) error {
	dls, err := pendingDeadLetters(ctx, w.d.st, w.cfg.OrgID, w.cfg.SinkID)
	if err != nil {
		return err
	}
	held := make(map[docKey]int64, len(dls))
	for _, dl := range dls {
		k := docKey{dl.Event.AppID, dl.Event.DocumentID}
		if s, ok := held[k]; !ok || dl.Seq < s {
			held[k] = dl.Seq
		}
	}
	w.held = held
	return nil
}

// recordError writes last_error when it changed (it costs a write).
func (w *worker) recordError(ctx context.Context, msg string) {
	if msg == w.lastErr {
		return
	}
	if err := w.d.st.SetLastError(ctx, w.cfg.SinkID, msg); err == nil {
		w.lastErr = msg
	}
}

// batch is a run of outbox events being delivered; next is the index of
// the first event the durable cursor has not passed yet.
type batch struct {
	items []item
	next  int
}

// deliver takes one batch of outbox events to the sink (or to its dead
// letters) and moves the cursor past all of it.
func (w *worker) deliver(ctx context.Context, evs []store.OutboxEvent) error {
	b := &batch{items: make([]item, len(evs))}
	var filt []int
	for i := range evs {
		it := &b.items[i]
		*it = item{seq: evs[i].Seq, ev: evs[i].Event, orig: evs[i].Event}
		if replayTarget(&it.ev) != "" {
			it.state = skipped // another sink's replay marker
			continue
		}
		filt = append(filt, i)
	}
	if err := w.applyFilters(ctx, b.items, filt); err != nil {
		return err
	}
	return w.rounds(ctx, b, w.held, func(ctx context.Context, lastErr string) error {
		return w.commit(ctx, b, lastErr)
	})
}

// rounds attempts the pending items until none is left: delivered ones are
// done; a permanent failure, or a retryable one past the budget, is final
// (dead); later items of a document with a final failure are held behind
// it. After every round, progress is handed to commit.
func (w *worker) rounds(ctx context.Context, b *batch, held map[docKey]int64, commit func(context.Context, string) error) error {
	for round := 0; ; round++ {
		hold(b.items, held)
		var idx []int
		for i := range b.items {
			if b.items[i].state == pending {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return commit(ctx, "")
		}
		evs := make([]model.CdcEvent, len(idx))
		for j, i := range idx {
			evs[j] = b.items[i].ev
		}
		res := w.drv.Deliver(ctx, evs)
		now := time.Now()
		cancelled := ctx.Err() != nil
		var lastErr string
		var wait time.Duration
		var failed, deadLettered int
		for j, r := range res {
			it := &b.items[idx[j]]
			switch {
			case r.Err == nil:
				it.state = delivered
				w.m.delivered.Inc()
				if it.ev.TimestampMs > 0 {
					w.m.latency.Observe(max(0, now.Sub(time.UnixMilli(int64(it.ev.TimestampMs))).Seconds()))
				}
			case cancelled || errors.Is(r.Err, sinks.ErrBlocked):
				// Not an attempt of this event: it waits for its
				// predecessor (or for the next run).
			default:
				w.m.failed.Inc()
				it.attempts++
				failed++
				lastErr = r.Err.Error()
				switch {
				case r.Permanent:
					it.state, it.err = dead, r.Err.Error()
					deadLettered++
				case w.budget > 0 && it.attempts >= w.budget:
					it.state, it.err = dead, fmt.Sprintf(gaveUpPrefix+"%d attempts: %v", it.attempts, r.Err)
					deadLettered++
				}
				wait = max(wait, r.RetryAfter)
			}
		}
		w.reportFailures(lastErr, failed, deadLettered)
		hold(b.items, held)
		if cancelled {
			// Record what was delivered so a restart repeats less.
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := commit(cctx, lastErr)
			cancel()
			if err != nil {
				return err
			}
			return ctx.Err()
		}
		if err := commit(ctx, lastErr); err != nil {
			return err
		}
		if !anyPending(b.items) {
			return nil
		}
		d := w.backoff(round)
		if wait > d {
			d = min(wait, 10*w.d.o.BackoffMax)
		}
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

func anyPending(items []item) bool {
	for i := range items {
		if items[i].state == pending {
			return true
		}
	}
	return false
}

// hold dead-letters pending items of documents that have an earlier dead
// letter, and records the documents of new dead letters in held.
func hold(items []item, held map[docKey]int64) {
	for i := range items {
		it := &items[i]
		k := it.key()
		switch it.state {
		case dead:
			if s, ok := held[k]; !ok || it.seq < s {
				held[k] = it.seq
			}
		case pending:
			if s, ok := held[k]; ok && s < it.seq {
				it.state, it.err = dead, heldMsg
			}
		}
	}
}

// commit moves the durable cursor past the finished prefix of the batch,
// with its dead letters, in one store transaction; with nothing to move it
// only records a changed last_error.
func (w *worker) commit(ctx context.Context, b *batch, lastErr string) error {
	j := b.next
	for j < len(b.items) && b.items[j].state != pending {
		j++
	}
	if j == b.next {
		if lastErr != "" {
			w.recordError(ctx, lastErr)
		}
		return nil
	}
	var n int64
	var dls []store.DeadLetter
	now := uint64(time.Now().UnixMilli())
	for _, it := range b.items[b.next:j] {
		switch it.state {
		case delivered:
			n++
		case dead:
			ev := it.ev
			if it.filterErr {
				ev = it.orig
			}
			dls = append(dls, store.DeadLetter{SinkID: w.cfg.SinkID, Seq: it.seq, Error: it.err, Attempts: it.attempts, CreatedAt: now, Event: ev})
		}
	}
	seq := b.items[j-1].seq
	if lastErr == "" && len(dls) > 0 {
		lastErr = dls[len(dls)-1].Error
	}
	if len(dls) == 0 && lastErr == w.lastErr && time.Since(w.lastFlush) < w.d.o.CommitInterval {
		// Only deliveries: keep them in memory until the next flush, so a
		// busy sink writes its cursor a few times a second instead of once
		// per batch (on SQLite those writes queue behind document commits).
		// A crash repeats at most CommitInterval of deliveries.
		w.unsavedSeq, w.unsavedDelivered = seq, w.unsavedDelivered+n
		w.cursor.Store(seq)
		b.next = j
		return nil
	}
	if err := w.advance(ctx, seq, w.unsavedDelivered+n, dls, lastErr, now); err != nil {
		return err
	}
	w.m.dead.Add(float64(len(dls)))
	b.next = j
	return nil
}

// flush writes progress kept in memory by commit.
func (w *worker) flush(ctx context.Context) error {
	if w.unsavedSeq == 0 && w.unsavedDelivered == 0 {
		return nil
	}
	return w.advance(ctx, w.unsavedSeq, w.unsavedDelivered, nil, w.lastErr, uint64(time.Now().UnixMilli()))
}

// advance retries store.Advance until it succeeds, the org is gone or ctx
// ends: the events are delivered, so redelivering them for a transient
// store error would only add duplicates.
func (w *worker) advance(ctx context.Context, seq, delivered int64, dls []store.DeadLetter, lastErr string, now uint64) error {
	return w.advanceReplay(ctx, seq, delivered, 0, dls, lastErr, now)
}

// advanceReplay is advance that also marks the dead letters up to
// replayedThrough replayed (store.AdvanceReplay); 0 marks none.
func (w *worker) advanceReplay(ctx context.Context, seq, delivered, replayedThrough int64, dls []store.DeadLetter, lastErr string, now uint64) error {
	for attempt := 0; ; attempt++ {
		var err error
		if replayedThrough > 0 {
			err = w.d.st.AdvanceReplay(ctx, w.cfg.OrgID, w.cfg.SinkID, max(seq, w.unsavedSeq), delivered, replayedThrough, dls, lastErr, now)
		} else {
			err = w.d.st.Advance(ctx, w.cfg.OrgID, w.cfg.SinkID, max(seq, w.unsavedSeq), delivered, dls, lastErr, now)
		}
		if err == nil {
			if seq > w.cursor.Load() {
				w.cursor.Store(seq)
			}
			w.lastErr = lastErr
			w.unsavedSeq, w.unsavedDelivered, w.lastFlush = 0, 0, time.Now()
			return nil
		}
		if isNotFound(err) || ctx.Err() != nil {
			return err
		}
		w.d.log.Warn("advance sink cursor failed; retrying", append(w.log(), "error", err)...)
		if !sleep(ctx, w.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// chain returns the filter chain for events of app: the formation's chain,
// then the sink's. Formation chains are cached briefly, since they are
// read for every batch.
func (w *worker) chain(ctx context.Context, app string) ([]model.FilterRef, error) {
	e, ok := w.chains[app]
	if !ok || time.Since(e.at) > 2*time.Second {
		c, err := w.d.st.GetFormationFilters(ctx, w.cfg.OrgID, app)
		if err != nil && !isNotFound(err) {
			return nil, err
		}
		e = chainEntry{chain: c, at: time.Now()}
		w.chains[app] = e
	}
	if len(e.chain) == 0 {
		return w.cfg.Filters, nil
	}
	out := make([]model.FilterRef, 0, len(e.chain)+len(w.cfg.Filters))
	return append(append(out, e.chain...), w.cfg.Filters...), nil
}

// applyFilters runs the filter chains over items[idx] (grouped by
// formation, whose chain they share) and applies the verdicts.
func (w *worker) applyFilters(ctx context.Context, items []item, idx []int) error {
	f := w.d.o.Filter
	if f == nil || len(idx) == 0 {
		return nil
	}
	byApp := map[string][]int{}
	var apps []string
	for _, i := range idx {
		a := items[i].ev.AppID
		if _, ok := byApp[a]; !ok {
			apps = append(apps, a)
		}
		byApp[a] = append(byApp[a], i)
	}
	for _, app := range apps {
		chain, err := w.chain(ctx, app)
		if err != nil {
			return err
		}
		if len(chain) == 0 {
			continue
		}
		group := byApp[app]
		evs := make([]model.CdcEvent, len(group))
		for j, i := range group {
			evs[j] = items[i].ev
		}
		outs := f.Apply(ctx, w.cfg.OrgID, chain, evs)
		if ctx.Err() != nil {
			// An interrupted run reports every event failed; none of it
			// may be recorded (the batch is read again next time).
			return ctx.Err()
		}
		for j, i := range group {
			it := &items[i]
			var o FilterOutcome
			if len(outs) == len(group) {
				o = outs[j]
			} else {
				o = FilterOutcome{Verdict: Fail, Policy: DeadLetter,
					Err: fmt.Sprintf("filter engine returned %d outcomes for %d events", len(outs), len(group))}
			}
			switch o.Verdict {
			case Keep:
			case Replace:
				it.ev = o.Event
			case Drop:
				it.state = skipped
				w.m.filtered.Inc()
			case Fail:
				w.fmu.Lock()
				w.filterErrors++
				w.lastFilterError = o.Err
				w.fmu.Unlock()
				switch o.Policy {
				case DropEvent:
					it.state = skipped
					w.m.filtered.Inc()
				case Pass:
				default:
					it.state, it.err, it.filterErr = dead, filterErrPrefix+o.Err, true
				}
			}
		}
	}
	return nil
}

// replay delivers the sink's un-replayed dead letters (the marker at seq
// asked for it) and then moves the cursor past the marker.
func (w *worker) replay(ctx context.Context, seq int64) error {
	if err := w.flush(ctx); err != nil {
		return err
	}
	dls, err := pendingDeadLetters(ctx, w.d.st, w.cfg.OrgID, w.cfg.SinkID)
	if err != nil {
		return err
	}
	b := &batch{items: make([]item, len(dls))}
	var refilter []int
	for i, dl := range dls {
		b.items[i] = item{seq: dl.Seq, ev: dl.Event, orig: dl.Event}
		if strings.HasPrefix(dl.Error, filterErrPrefix) {
			// A filter failure gets the chain again: the module may be fixed.
			refilter = append(refilter, i)
		}
	}
	if err := w.applyFilters(ctx, b.items, refilter); err != nil {
		return err
	}
	// Deliver chunk by chunk; a final failure holds the document's later
	// letters (the local held map), and a chunk whose failures are not
	// permanent means the sink is still down: stop there.
	held := map[docKey]int64{}
	noCommit := func(context.Context, string) error { return nil }
	var lastErr string
	for start := 0; start < len(b.items); start += w.d.o.BatchSize {
		end := min(start+w.d.o.BatchSize, len(b.items))
		chunk := &batch{items: b.items[start:end]}
		if err := w.rounds(ctx, chunk, held, noCommit); err != nil {
			return err
		}
		down := false
		for _, it := range chunk.items {
			if it.state == dead && it.err != heldMsg {
				lastErr = it.err
				down = down || strings.HasPrefix(it.err, gaveUpPrefix)
			}
		}
		if down {
			for i := end; i < len(b.items); i++ {
				if b.items[i].state == pending {
					b.items[i].state, b.items[i].err = dead, "replay stopped: "+lastErr
				}
			}
			break
		}
	}
	var n int64
	var again []store.DeadLetter
	now := uint64(time.Now().UnixMilli())
	for i, it := range b.items {
		switch it.state {
		case delivered:
			n++
		case dead:
			dl := dls[i]
			dl.ID, dl.Replayed, dl.RawEvent, dl.CreatedAt = 0, false, nil, now
			dl.Error, dl.Attempts = it.err, dls[i].Attempts+it.attempts
			if it.filterErr {
				dl.Event = it.orig
			}
			again = append(again, dl)
		}
	}
	if n == 0 && len(again) > 0 {
		// Nothing got through: leave the letters as they are (taking and
		// re-inserting them would only churn ids); the documents stay held.
		return w.advance(ctx, seq, 0, nil, "replay failed: "+lastErr, now)
	}
	// The replayed letters are marked, the ones that failed again go back
	// as new dead letters, and the cursor moves past the marker, all in one
	// transaction: a crash before it commits replays them all again.
	var through int64
	for _, dl := range dls {
		through = max(through, dl.ID)
	}
	if lastErr != "" && len(again) == 0 {
		lastErr = ""
	}
	if len(again) > 0 && lastErr == "" {
		lastErr = again[len(again)-1].Error
	}
	if err := w.advanceReplay(ctx, seq, n, through, again, lastErr, now); err != nil {
		return err
	}
	w.m.dead.Add(float64(len(again)))
	return w.loadHeld(ctx)
}
