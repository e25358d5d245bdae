// Package store defines the gateway's persistence contract. Two backends
// implement it with one behaviour: sqlite (embedded, the default for edge
// sites) and postgres (shared by several replicas). The conformance suite in
// storetest runs unchanged against both.
//
// Every method that checks and then writes (quotas, uniqueness, token use,
// rate limits, document quotas) does so atomically in one transaction, so
// concurrent callers can never exceed a limit or duplicate an id.
//
// The store knows nothing of HTTP: it returns the sentinel errors below and
// the domain layer turns them into the reference's messages.
package store

import (
	"context"
	"errors"

	"github.com/defenseunicorns/peat-gateway/core/model"
)

// Sentinel errors. Backends wrap them (errors.Is) and may add detail.
// ErrOrgNotFound and ErrFormationNotFound also match ErrNotFound, so a caller
// that only cares "is it missing" need not know which parent was absent.
var (
	ErrNotFound                = errors.New("not found")
	ErrOrgNotFound       error = &notFoundError{"organization not found"}
	ErrFormationNotFound error = &notFoundError{"formation not found"}
	ErrExists                  = errors.New("already exists")
	ErrQuota                   = errors.New("quota exceeded")
	ErrAlreadyRevoked          = errors.New("already revoked")
	ErrRateLimited             = errors.New("rate limit exceeded")
	ErrTokenInvalid            = errors.New("token invalid, revoked, expired or exhausted")
	ErrSuspended               = errors.New("formation suspended")
	ErrConflict                = errors.New("concurrent modification")
	ErrOutboxFull              = errors.New("outbox full")
	// ErrStale means a write's expectations (EnrollTx.Policy and MeshID, say)
	// no longer hold: nothing was changed and the caller should decide again
	// from fresh reads.
	ErrStale = errors.New("stale read: the data a decision was based on has changed")
)

// notFoundError is a specific not-found that also matches ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrNotFound) hold for the specific sentinels.
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// Store is the whole persistence contract.
type Store interface {
	// Ping checks the database answers (readiness).
	Ping(ctx context.Context) error
	// Close releases the database; in-flight calls finish first.
	Close() error

	Orgs
	Formations
	Tokens
	Sinks
	Identity
	Enrollment
	Documents
	Outbox
	Filters
}

// Orgs persists tenants. DeleteOrg removes everything under the org in one
// transaction (foreign keys with ON DELETE CASCADE).
type Orgs interface {
	CreateOrg(ctx context.Context, org model.Organization) error // ErrExists
	GetOrg(ctx context.Context, orgID string) (model.Organization, error)
	ListOrgs(ctx context.Context) ([]model.Organization, error) // ordered by org_id
	UpdateOrg(ctx context.Context, org model.Organization) error
	DeleteOrg(ctx context.Context, orgID string) error
}

// Formations persists formations and their sealed genesis.
type Formations interface {
	// CreateFormation checks, in this order and atomically: the org exists
	// (ErrOrgNotFound), the org's max_formations quota (ErrQuota), uniqueness
	// (ErrExists); then stores the formation and its genesis blob together.
	CreateFormation(ctx context.Context, f model.Formation, genesis []byte) error
	GetFormation(ctx context.Context, orgID, appID string) (model.Formation, error)
	ListFormations(ctx context.Context, orgID string) ([]model.Formation, error) // ErrOrgNotFound; ordered by app_id
	// DeleteFormation removes the formation and all per-formation state:
	// genesis, tokens, certificates, documents, formation filter chain.
	DeleteFormation(ctx context.Context, orgID, appID string) error
	SetFormationStatus(ctx context.Context, orgID, appID string, status model.FormationStatus) (model.Formation, error)

	GetGenesis(ctx context.Context, orgID, appID string) ([]byte, error)
	// ReplaceGenesis overwrites the blob only if it still equals old
	// (ErrConflict otherwise), so key migration is safe to interrupt and re-run
	// beside a live gateway.
	ReplaceGenesis(ctx context.Context, orgID, appID string, old, new []byte) error
	// ListFormationRefs lists every (org, app) pair, ordered, for key migration.
	ListFormationRefs(ctx context.Context) ([]FormationRef, error)
}

// FormationRef names one formation.
type FormationRef struct{ OrgID, AppID string }

// Tokens persists enrollment tokens.
type Tokens interface {
	// CreateToken: ErrOrgNotFound, ErrFormationNotFound.
	CreateToken(ctx context.Context, t model.EnrollmentToken) error
	GetToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error)
	ListTokens(ctx context.Context, orgID, appID string) ([]model.EnrollmentToken, error) // ordered by token_id
	DeleteToken(ctx context.Context, orgID, tokenID string) error
	// RevokeToken: ErrNotFound, ErrAlreadyRevoked.
	RevokeToken(ctx context.Context, orgID, tokenID string) (model.EnrollmentToken, error)
}

// Sinks persists CDC sink configurations.
type Sinks interface {
	// CreateSink: ErrOrgNotFound, ErrQuota (max_cdc_sinks, enabled or not).
	CreateSink(ctx context.Context, s model.CdcSinkConfig) error
	GetSink(ctx context.Context, orgID, sinkID string) (model.CdcSinkConfig, error)
	ListSinks(ctx context.Context, orgID string) ([]model.CdcSinkConfig, error) // ErrOrgNotFound; ordered by sink_id
	// ListAllSinks lists every org's sinks (the dispatcher's view).
	ListAllSinks(ctx context.Context) ([]model.CdcSinkConfig, error)
	// UpdateSink rewrites enabled and filters (the type never changes).
	UpdateSink(ctx context.Context, s model.CdcSinkConfig) error
	DeleteSink(ctx context.Context, orgID, sinkID string) error
}

// Identity persists identity providers, policy rules and the audit log.
type Identity interface {
	CreateIdp(ctx context.Context, i model.IdpConfig) error // ErrOrgNotFound
	GetIdp(ctx context.Context, orgID, idpID string) (model.IdpConfig, error)
	ListIdps(ctx context.Context, orgID string) ([]model.IdpConfig, error) // ErrOrgNotFound; ordered by idp_id
	SetIdpEnabled(ctx context.Context, orgID, idpID string, enabled bool) (model.IdpConfig, error)
	// ReplaceIdpSecret rewrites the sealed client secret (key rotation).
	ReplaceIdpSecret(ctx context.Context, orgID, idpID string, old, new []byte) error
	DeleteIdp(ctx context.Context, orgID, idpID string) error

	CreatePolicyRule(ctx context.Context, r model.PolicyRule) error                // ErrOrgNotFound
	ListPolicyRules(ctx context.Context, orgID string) ([]model.PolicyRule, error) // ErrOrgNotFound; ordered by rule_id
	DeletePolicyRule(ctx context.Context, orgID, ruleID string) error

	// AppendAudit records a decision outside enrollment (e.g. a denial).
	AppendAudit(ctx context.Context, e model.AuditEntry) error // ErrOrgNotFound
	// ListAudit returns newest first (timestamp desc, then audit_id desc).
	// appID nil means all formations; limit 0 returns nothing.
	ListAudit(ctx context.Context, orgID string, appID *string, limit int) ([]model.AuditEntry, error)
}

// EnrollTx is everything one approved enrollment writes, applied atomically.
type EnrollTx struct {
	OrgID, AppID string
	NowMs        uint64
	// RateLimit is the org's max_enrollments_per_hour: approvals in the
	// sliding hour before NowMs must be below it, else ErrRateLimited.
	RateLimit uint32
	// TokenID, when set, is consumed: it must exist in the org, belong to
	// AppID, not be revoked, not be expired (NowMs > expires_at) and have
	// uses < max_uses; then uses += 1. Any failure is ErrTokenInvalid.
	TokenID string
	// PeerLimit is max_peers_per_formation. A peer is a member key: the
	// subject public key of a certificate of the formation that is neither
	// revoked nor expired at NowMs. With Certificate set, the enrollment is
	// refused (ErrQuota) when the formation has PeerLimit peers or more,
	// unless its key is one of them (a renewal adds no peer). So expired
	// certificates, and nodes renewing theirs, never lock a fleet out of its
	// formation, while every new key counts whatever node_id it claims.
	PeerLimit uint32
	Audit     model.AuditEntry
	// Certificate, when set, is added to the inventory.
	Certificate *model.Certificate
	// Policy and MeshID, when set, name the formation the caller decided on,
	// possibly from a cache. Enroll then checks, inside its transaction, that
	// the formation still has that enrollment policy and mesh_id (a formation
	// re-created under the same app_id has a new one) and that the org's
	// max_enrollments_per_hour and max_peers_per_formation still equal
	// RateLimit and PeerLimit; on any difference it changes nothing and
	// returns ErrStale.
	Policy model.EnrollmentPolicy
	MeshID string
}

// Enrollment persists the enrollment path and the certificate inventory.
type Enrollment interface {
	// Enroll applies tx atomically: the formation must exist
	// (ErrFormationNotFound) and be Active (ErrSuspended); then rate limit,
	// token consumption, peer quota, audit append, certificate insert.
	Enroll(ctx context.Context, tx EnrollTx) error
	ListCertificates(ctx context.Context, orgID, appID string) ([]model.Certificate, error) // issued_at asc
	GetCertificate(ctx context.Context, orgID, appID, serial string) (model.Certificate, error)
	// RevokeCertificate: ErrNotFound, ErrAlreadyRevoked.
	RevokeCertificate(ctx context.Context, orgID, appID, serial string, nowMs uint64) (model.Certificate, error)
	// ListRevoked returns revoked certificates and the formation's revocation
	// sequence number (incremented by each revocation).
	ListRevoked(ctx context.Context, orgID, appID string) ([]model.Certificate, uint64, error)
}

// DocumentWrite is one document change requested by a writer.
type DocumentWrite struct {
	OrgID, AppID, DocID string
	ActorID             string
	// Body is the document's canonical JSON (nil with Delete).
	Body        []byte
	Delete      bool
	TimestampMs uint64
	// DocLimit is max_documents_per_formation (a new document beyond it is ErrQuota).
	DocLimit uint32
	// OutboxLimit bounds the org's retained outbox rows, delivered or not
	// (0 = unbounded); beyond it ErrOutboxFull. The dispatcher prunes passed
	// rows early when the outbox fills, so in practice this bounds the backlog.
	OutboxLimit int64
}

// DocumentResult reports what one write did.
type DocumentResult struct {
	// Err is a per-write failure (ErrFormationNotFound, ErrSuspended,
	// ErrNotFound for deleting a missing doc, ErrQuota, ErrOutboxFull).
	Err        error
	Changed    bool
	Version    uint64
	ChangeHash string
	// Seq is the outbox sequence of the emitted event (0 when unchanged).
	Seq int64
}

// Document is a stored document.
type Document struct {
	OrgID, AppID, DocID string
	Body                []byte
	Version             uint64
	ChangeHash          string
	UpdatedAt           uint64
}

// Documents persists current document state; each change is committed with
// its outbox event in the same transaction.
type Documents interface {
	// WriteDocuments applies a batch in one transaction (group commit) and
	// returns one result per write, in order. A write whose content equals the
	// stored state is unchanged and emits nothing. Otherwise the version goes up
	// by one, ChangeHash = model.ChangeHash(org, app, doc, version, body), and
	// one outbox row holding the CdcEvent JSON is appended. A delete hashes a
	// nil body and leaves a tombstone, so the version keeps counting if the
	// document is written again (a re-created document never repeats a hash).
	WriteDocuments(ctx context.Context, writes []DocumentWrite) ([]DocumentResult, error)
	GetDocument(ctx context.Context, orgID, appID, docID string) (Document, error)
	ListDocuments(ctx context.Context, orgID, appID string) ([]model.DocumentSummary, error)
	// AppendEvent appends an event that changes no document (POST /cdc/test).
	AppendEvent(ctx context.Context, ev model.CdcEvent) (int64, error)
}

// OutboxEvent is one committed change, in commit order per org.
type OutboxEvent struct {
	Seq   int64
	Event model.CdcEvent
	// Raw is the event JSON as stored.
	Raw []byte
}

// DeadLetter is an event a sink gave up on (or a filter rejected).
type DeadLetter struct {
	ID        int64  `json:"id"`
	SinkID    string `json:"sink_id"`
	Seq       int64  `json:"seq"`
	Error     string `json:"error"`
	Attempts  int    `json:"attempts"`
	CreatedAt uint64 `json:"created_at"`
	Event     model.CdcEvent
	RawEvent  []byte `json:"-"`
	Replayed  bool   `json:"replayed"`
}

// SinkProgress is a sink's durable delivery state.
type SinkProgress struct {
	Cursor          int64
	Delivered       int64
	DeadLettered    int64
	LastError       string
	LastDeliveredAt uint64
}

// Outbox is the durable change log the sinks read.
type Outbox interface {
	// ReadOutbox returns an org's events with seq > after, ascending, at most limit.
	// Only committed events are visible and sequence order equals commit order
	// within an org, so a cursor never skips an event.
	ReadOutbox(ctx context.Context, orgID string, after int64, limit int) ([]OutboxEvent, error)
	// LastSeq is the org's highest outbox seq (0 when empty).
	LastSeq(ctx context.Context, orgID string) (int64, error)
	// CountAfter counts an org's events with seq > after (pending for a sink).
	CountAfter(ctx context.Context, orgID string, after int64) (int64, error)
	// GetProgress returns the sink's progress; a sink never seen has cursor 0.
	GetProgress(ctx context.Context, sinkID string) (SinkProgress, error)
	// Advance moves the sink's cursor forward to seq (never backward), adds
	// delivered to its count, records dead letters, all in one transaction.
	Advance(ctx context.Context, orgID, sinkID string, seq int64, delivered int64, deadLetters []DeadLetter, lastError string, nowMs uint64) error
	// SetLastError records a delivery error without moving the cursor.
	SetLastError(ctx context.Context, sinkID, msg string) error
	ListDeadLetters(ctx context.Context, orgID, sinkID string, limit int) ([]DeadLetter, error)
	// AdvanceReplay is Advance at the end of a dead-letter replay: in the
	// same transaction it also marks the sink's un-replayed dead letters with
	// id ≤ replayedThrough replayed. The letters that failed again come back
	// as deadLetters, so a crash leaves either the old letters pending (the
	// replay runs again) or the replay's whole outcome, never letters marked
	// replayed whose failures were not recorded.
	AdvanceReplay(ctx context.Context, orgID, sinkID string, seq, delivered, replayedThrough int64, deadLetters []DeadLetter, lastError string, nowMs uint64) error
	// Prune deletes events that every sink of the org (enabled or not) has
	// passed and whose timestamp is older than olderThanMs; returns rows removed.
	Prune(ctx context.Context, olderThanMs uint64) (int64, error)
	// OutboxDepth is the total number of retained outbox rows.
	OutboxDepth(ctx context.Context) (int64, error)
}

// FilterModule is one stored version of a tenant's wasm module.
type FilterModule struct {
	OrgID     string `json:"org_id"`
	Name      string `json:"name"`
	Version   int    `json:"version"`
	SHA256    string `json:"sha256"`
	SizeBytes int    `json:"size_bytes"`
	CreatedAt uint64 `json:"created_at"`
	Wasm      []byte `json:"-"`
}

// Filters persists wasm modules and formation filter chains.
type Filters interface {
	// PutFilter stores a new version (1 for a new name); maxModules and
	// maxBytes bound the org's module count and total bytes (ErrQuota).
	PutFilter(ctx context.Context, m FilterModule, maxModules int, maxBytes int64) (FilterModule, error)
	GetFilter(ctx context.Context, orgID, name string) (FilterModule, error) // latest version, with Wasm
	ListFilters(ctx context.Context, orgID string) ([]FilterModule, error)   // latest versions, no Wasm
	DeleteFilter(ctx context.Context, orgID, name string) error
	SetFormationFilters(ctx context.Context, orgID, appID string, chain []model.FilterRef) error
	GetFormationFilters(ctx context.Context, orgID, appID string) ([]model.FilterRef, error)
}
