// Package docs is the CDC source over HTTP: it keeps each document's current
// state and turns every change of content into one outbox event, committed in
// the same transaction as the new state.
//
// Writes are group-committed. Put and Delete validate and canonicalise in the
// caller's goroutine, then queue the write for a committer goroutine that
// takes everything queued (up to Options.MaxBatch) and applies it with one
// store.WriteDocuments call: one transaction, one fsync, however many writers.
// A caller gets its result only after that transaction has committed, so no
// change is ever acknowledged before it is durable. Writes are queued in
// arrival order and a committer applies its batches one after another, so
// writes to one document apply in the order they arrived.
package docs

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/defenseunicorns/peat-gateway/core/errs"
	batching "github.com/defenseunicorns/peat-gateway/core/internal/batch"
	"github.com/defenseunicorns/peat-gateway/core/model"
	"github.com/defenseunicorns/peat-gateway/core/store"
	"github.com/defenseunicorns/peat-gateway/core/tenant"
)

// DefaultActor is the actor_id of a change whose writer named none.
const DefaultActor = "api"

// MaxActorLen bounds actor_id; it travels in every event of the change.
const MaxActorLen = 256

// Options tune a Service. The zero value is usable.
type Options struct {
	// MaxBatch bounds the writes in one transaction (default 256).
	MaxBatch int
	// QueueSize bounds writes waiting per committer (default 4×MaxBatch);
	// beyond it writers wait, which is the back-pressure on HTTP clients.
	QueueSize int
	// Committers is the number of committer goroutines (default 1). Orgs are
	// spread over them by hash, so one org's writes always share a committer
	// and keep their order. One suits SQLite, whose writes are serial
	// anyway, and a Postgres on the same small machine (measured: fewer,
	// larger transactions win there); a Postgres server with cores to spare
	// can run several orgs' transactions in parallel.
	Committers int
	// CommitTimeout bounds one batch's transaction (default 30s).
	CommitTimeout time.Duration
	// QuotaTTL is how long an org's document quota is cached (default 1s;
	// negative disables the cache). The quota is enforced atomically by the
	// store; the cache only saves reading the org on every write, at the
	// price of a quota change taking up to QuotaTTL to apply.
	QuotaTTL time.Duration
	// OutboxLimit bounds an org's retained outbox rows (0 = unbounded);
	// beyond it changes are refused with 507 (PEAT_OUTBOX_MAX_ROWS).
	OutboxLimit int64
	// Registerer receives the service's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// OnCommit is called after each committed batch that emitted events, with
	// the distinct orgs that got them, so the dispatcher can wake at once
	// rather than poll. It runs on the committer goroutine: it must not block.
	OnCommit func(orgIDs []string)
	Logger   *slog.Logger
	// Now is the clock for event timestamps (default time.Now).
	Now func() time.Time
}

// Result is the answer to one Put or Delete: the body of the HTTP reply.
type Result struct {
	DocumentID string `json:"document_id"`
	ChangeHash string `json:"change_hash"`
	Changed    bool   `json:"changed"`
	// Version is the document's version after the write.
	Version uint64 `json:"-"`
	// Seq is the outbox sequence of the emitted event (0 when unchanged).
	Seq int64 `json:"-"`
}

// Document is a stored document.
type Document struct {
	DocumentID string
	// Body is the canonical JSON of the document.
	Body       json.RawMessage
	Version    uint64
	ChangeHash string
	UpdatedAt  uint64
}

// TestRequest is the body of POST /orgs/{org}/cdc/test.
type TestRequest struct {
	AppID      string
	DocumentID string
	// ActorID defaults to "test-actor".
	ActorID string
	// Patches is any JSON (nil or empty: null).
	Patches json.RawMessage
}

// TestResult is the reply of POST /orgs/{org}/cdc/test.
type TestResult struct {
	Published  bool   `json:"published"`
	ChangeHash string `json:"change_hash"`
}

// Service accepts document changes. Create it with New and Close it before
// closing the store.
type Service struct {
	st   store.Store
	ten  *tenant.Service
	opts Options
	log  *slog.Logger
	m    *metrics

	// mu guards closed against in-flight enqueues: submit holds it shared
	// while sending, so Close (exclusive) cannot close a queue under a sender.
	mu     sync.RWMutex
	closed bool
	queues []chan *pending
	wg     sync.WaitGroup

	onCommit atomic.Pointer[func([]string)]
	quotas   sync.Map // org id -> *quotaEntry
}

type quotaEntry struct {
	docLimit uint32
	expires  int64 // unix nanoseconds
}

// pending is one queued write and, once done is closed, its outcome.
type pending struct {
	w    store.DocumentWrite
	res  store.DocumentResult
	err  error
	done chan struct{}
}

// New starts the committers. st must be the store ten uses.
func New(st store.Store, ten *tenant.Service, opts Options) *Service {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4 * opts.MaxBatch
	}
	if opts.Committers <= 0 {
		opts.Committers = 1
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 30 * time.Second
	}
	if opts.QuotaTTL == 0 {
		opts.QuotaTTL = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Service{st: st, ten: ten, opts: opts, log: opts.Logger}
	if opts.OnCommit != nil {
		s.SetOnCommit(opts.OnCommit)
	}
	s.queues = make([]chan *pending, opts.Committers)
	for i := range s.queues {
		s.queues[i] = make(chan *pending, opts.QueueSize)
	}
	s.m = newMetrics(opts.Registerer, func() float64 {
		n := 0
		for _, q := range s.queues {
			n += len(q)
		}
		return float64(n)
	})
	for _, q := range s.queues {
		s.wg.Add(1)
		go s.commitLoop(q)
	}
	return s
}

// SetOnCommit replaces the commit hook (see Options.OnCommit); nil removes it.
// It exists because the dispatcher may be built after the Service.
func (s *Service) SetOnCommit(f func(orgIDs []string)) {
	if f == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&f)
}

// Close stops accepting writes, commits everything already queued, and
// returns when every queued writer has its answer. Later writes get 503.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, q := range s.queues {
		close(q)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Put stores body (a JSON object) as the document's full new state.
func (s *Service) Put(ctx context.Context, orgID, appID, docID, actor string, body []byte) (Result, error) {
	if err := validateDocID(docID); err != nil {
		s.m.reject(opUpsert, reasonInvalid)
		return Result{}, err
	}
	if err := validateActor(actor); err != nil {
		s.m.reject(opUpsert, reasonInvalid)
		return Result{}, err
	}
	canon, err := Canonicalize(body)
	if err != nil {
		s.m.reject(opUpsert, reasonInvalid)
		if errors.Is(err, ErrNotObject) {
			return Result{}, errs.New(errs.Unprocessable, "%s", err)
		}
		return Result{}, errs.New(errs.Invalid, "Failed to parse the document body as JSON: %s", err)
	}
	return s.write(ctx, store.DocumentWrite{OrgID: orgID, AppID: appID, DocID: docID, ActorID: actorOr(actor), Body: canon})
}

// Delete removes a document, emitting a delete event (404 if it does not exist).
func (s *Service) Delete(ctx context.Context, orgID, appID, docID, actor string) (Result, error) {
	if err := validateDocID(docID); err != nil {
		s.m.reject(opDelete, reasonInvalid)
		return Result{}, err
	}
	if err := validateActor(actor); err != nil {
		s.m.reject(opDelete, reasonInvalid)
		return Result{}, err
	}
	return s.write(ctx, store.DocumentWrite{OrgID: orgID, AppID: appID, DocID: docID, ActorID: actorOr(actor), Delete: true})
}

// Get returns a live document.
func (s *Service) Get(ctx context.Context, orgID, appID, docID string) (Document, error) {
	if err := validateDocID(docID); err != nil {
		return Document{}, err
	}
	d, err := s.st.GetDocument(ctx, orgID, appID, docID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return Document{}, errs.Wrap(errs.Internal, err, "storage error")
		}
		// Only a miss pays for telling a missing parent from a missing document.
		if _, ferr := s.ten.GetFormation(ctx, orgID, appID); ferr != nil {
			if errs.KindOf(ferr) == errs.NotFound {
				return Document{}, s.missingParent(ctx, orgID, appID)
			}
			return Document{}, ferr
		}
		return Document{}, docNotFound(appID, docID)
	}
	return Document{DocumentID: docID, Body: d.Body, Version: d.Version, ChangeHash: d.ChangeHash, UpdatedAt: d.UpdatedAt}, nil
}

// List summarises a formation's live documents, ordered by doc_id.
func (s *Service) List(ctx context.Context, orgID, appID string) ([]model.DocumentSummary, error) {
	if _, err := s.ten.GetFormation(ctx, orgID, appID); err != nil {
		if errs.KindOf(err) == errs.NotFound {
			return nil, s.missingParent(ctx, orgID, appID)
		}
		return nil, err
	}
	ds, err := s.st.ListDocuments(ctx, orgID, appID)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "storage error")
	}
	if ds == nil {
		ds = []model.DocumentSummary{}
	}
	return ds, nil
}

// TestEvent appends a synthetic event (POST /orgs/{org}/cdc/test) to the
// org's outbox, so it reaches the sinks through the same path as every
// change. As in the reference the formation need not exist; unlike it, the
// ids must be valid subject tokens, since they become one in the NATS
// subject. The reply comes after the event is durable.
func (s *Service) TestEvent(ctx context.Context, orgID string, req TestRequest) (TestResult, error) {
	if err := model.ValidateToken("app_id", req.AppID); err != nil {
		s.m.reject(opTest, reasonInvalid)
		return TestResult{}, errs.New(errs.Invalid, "%s", err)
	}
	if err := validateDocID(req.DocumentID); err != nil {
		s.m.reject(opTest, reasonInvalid)
		return TestResult{}, err
	}
	if req.ActorID == "" {
		req.ActorID = "test-actor"
	}
	if err := validateActor(req.ActorID); err != nil {
		s.m.reject(opTest, reasonInvalid)
		return TestResult{}, err
	}
	patches := req.Patches
	if len(patches) == 0 {
		patches = json.RawMessage("null")
	}
	ev := model.CdcEvent{
		OrgID: orgID, AppID: req.AppID, DocumentID: req.DocumentID,
		ChangeHash: "test-" + model.RandomHex(8), ActorID: req.ActorID,
		TimestampMs: s.nowMs(), Patches: patches, Op: model.OpTest,
	}
	if _, err := s.st.AppendEvent(ctx, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.m.reject(opTest, reasonNotFound)
			return TestResult{}, errs.New(errs.NotFound, "Organization '%s' not found", orgID)
		}
		s.m.reject(opTest, reasonError)
		return TestResult{}, errs.Wrap(errs.Internal, err, "storage error")
	}
	s.m.accepted[opTest].Inc()
	if f := s.onCommit.Load(); f != nil {
		(*f)([]string{orgID})
	}
	return TestResult{Published: true, ChangeHash: ev.ChangeHash}, nil
}

func (s *Service) nowMs() uint64 { return uint64(s.opts.Now().UnixMilli()) }

func actorOr(a string) string {
	if a == "" {
		return DefaultActor
	}
	return a
}

func validateDocID(id string) error {
	if err := model.ValidateToken("document_id", id); err != nil {
		return errs.New(errs.Invalid, "%s", err)
	}
	return nil
}

func validateActor(a string) error {
	if len(a) > MaxActorLen {
		return errs.New(errs.Invalid, "actor_id exceeds maximum length (%d > %d)", len(a), MaxActorLen)
	}
	if !utf8.ValidString(a) {
		return errs.New(errs.Invalid, "actor_id must be valid UTF-8")
	}
	return nil
}

func docNotFound(appID, docID string) error {
	return errs.New(errs.NotFound, "Document '%s' not found in formation '%s'", docID, appID)
}

// missingParent names whichever of org and formation is missing.
func (s *Service) missingParent(ctx context.Context, orgID, appID string) error {
	if _, err := s.ten.GetOrg(ctx, orgID); err != nil {
		return err
	}
	return errs.New(errs.NotFound, "Formation '%s' not found in org '%s'", appID, orgID)
}

// docLimit returns the org's document quota, from the cache when fresh.
func (s *Service) docLimit(ctx context.Context, orgID string) (uint32, error) {
	now := time.Now().UnixNano()
	if s.opts.QuotaTTL > 0 {
		if v, ok := s.quotas.Load(orgID); ok {
			if e := v.(*quotaEntry); now < e.expires {
				return e.docLimit, nil
			}
		}
	}
	org, err := s.ten.GetOrg(ctx, orgID)
	if err != nil {
		s.quotas.Delete(orgID)
		return 0, err
	}
	if s.opts.QuotaTTL > 0 {
		s.quotas.Store(orgID, &quotaEntry{docLimit: org.Quotas.MaxDocumentsPerFormation, expires: now + int64(s.opts.QuotaTTL)})
	}
	return org.Quotas.MaxDocumentsPerFormation, nil
}

// write fills in the write's quota, limit and timestamp, queues it, waits
// for its transaction and maps the outcome to a domain error.
func (s *Service) write(ctx context.Context, w store.DocumentWrite) (Result, error) {
	op := opUpsert
	if w.Delete {
		op = opDelete
	}
	limit, err := s.docLimit(ctx, w.OrgID)
	if err != nil {
		if errs.KindOf(err) == errs.NotFound {
			s.m.reject(op, reasonNotFound)
		} else {
			s.m.reject(op, reasonError)
		}
		return Result{}, err
	}
	w.DocLimit, w.OutboxLimit, w.TimestampMs = limit, s.opts.OutboxLimit, s.nowMs()
	p := &pending{w: w, done: make(chan struct{})}
	if err := s.submit(ctx, p); err != nil {
		s.m.reject(op, reasonError)
		return Result{}, err
	}
	// Once queued, the write will be committed or fail as part of its batch
	// whatever happens to ctx, so the caller waits for the outcome rather
	// than report a failure for a write that then commits.
	<-p.done
	if p.err != nil {
		s.m.reject(op, reasonError)
		return Result{}, p.err
	}
	r := p.res
	if r.Err != nil {
		return Result{}, s.refused(ctx, op, w, r.Err)
	}
	if r.Changed {
		s.m.accepted[op].Inc()
	} else {
		s.m.unchanged.Inc()
	}
	return Result{DocumentID: w.DocID, ChangeHash: r.ChangeHash, Changed: r.Changed, Version: r.Version, Seq: r.Seq}, nil
}

// refused maps a store's per-write refusal to the contract's error.
func (s *Service) refused(ctx context.Context, op int, w store.DocumentWrite, err error) error {
	switch {
	case errors.Is(err, store.ErrFormationNotFound), errors.Is(err, store.ErrOrgNotFound):
		s.m.reject(op, reasonNotFound)
		// The org may have gone since its quota was cached.
		s.quotas.Delete(w.OrgID)
		return s.missingParent(ctx, w.OrgID, w.AppID)
	case errors.Is(err, store.ErrSuspended):
		s.m.reject(op, reasonSuspended)
		return errs.New(errs.Conflict, "Formation '%s' is suspended in org '%s'", w.AppID, w.OrgID)
	case errors.Is(err, store.ErrQuota):
		s.m.reject(op, reasonQuota)
		return errs.New(errs.Quota, "Formation '%s' has reached its document quota (%d)", w.AppID, w.DocLimit)
	case errors.Is(err, store.ErrOutboxFull):
		s.m.reject(op, reasonOutboxFull)
		return errs.Wrap(errs.StorageFull, err,
			"CDC outbox of org '%s' is full (%d undelivered events retained): document changes are refused until sinks catch up or retention removes old events",
			w.OrgID, w.OutboxLimit)
	case errors.Is(err, store.ErrNotFound):
		s.m.reject(op, reasonNotFound)
		return docNotFound(w.AppID, w.DocID)
	}
	s.m.reject(op, reasonError)
	return errs.Wrap(errs.Internal, err, "storage error")
}

// submit queues p on its org's committer. It waits while the queue is full,
// giving up when ctx ends (nothing was queued then).
func (s *Service) submit(ctx context.Context, p *pending) error {
	q := s.queueFor(p.w.OrgID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errs.New(errs.Unavailable, "document service is shutting down")
	}
	select {
	case q <- p:
		return nil
	default:
	}
	select {
	case q <- p:
		return nil
	case <-ctx.Done():
		return errs.Wrap(errs.Unavailable, ctx.Err(), "document write not queued: %s", ctx.Err())
	}
}

func (s *Service) queueFor(orgID string) chan *pending {
	if len(s.queues) == 1 {
		return s.queues[0]
	}
	h := fnv.New32a()
	h.Write([]byte(orgID))
	return s.queues[h.Sum32()%uint32(len(s.queues))]
}

// commitLoop is one committer: it blocks for a first write, takes whatever
// else is already queued up to MaxBatch, and commits that as one batch. It
// never waits to fill a batch: the batch grows by itself while the previous
// one is being committed, so a lone writer pays no added latency.
func (s *Service) commitLoop(q chan *pending) {
	defer s.wg.Done()
	batch := make([]*pending, 0, s.opts.MaxBatch)
	writes := make([]store.DocumentWrite, 0, s.opts.MaxBatch)
	orgs := make([]string, 0, 8)
	for p := range q {
		batch = batching.Drain(q, append(batch[:0], p), s.opts.MaxBatch)
		orgs = s.commit(batch, writes[:0], orgs[:0])
		clear(batch)
	}
}

// commit applies one batch, answers its writers, then wakes the dispatcher.
func (s *Service) commit(batch []*pending, writes []store.DocumentWrite, orgs []string) []string {
	for _, p := range batch {
		writes = append(writes, p.w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	start := time.Now()
	results, err := s.st.WriteDocuments(ctx, writes)
	cancel()
	s.m.commit.Observe(time.Since(start).Seconds())
	s.m.batch.Observe(float64(len(batch)))
	if err == nil && len(results) != len(batch) {
		err = errors.New("store returned a wrong number of results")
	}
	if err != nil {
		s.log.Error("document batch failed", "writes", len(batch), "error", err)
		e := errs.Wrap(errs.Internal, err, "storage error")
		for _, p := range batch {
			p.err = e
			close(p.done)
		}
		return orgs
	}
	for i, p := range batch {
		p.res = results[i]
		if results[i].Changed && !contains(orgs, p.w.OrgID) {
			orgs = append(orgs, p.w.OrgID)
		}
		close(p.done)
	}
	if len(orgs) > 0 {
		if f := s.onCommit.Load(); f != nil {
			// The hook may keep the slice; this one is reused by the next batch.
			(*f)(append([]string(nil), orgs...))
		}
	}
	return orgs
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
