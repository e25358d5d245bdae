-- Initial schema. Every row hangs off an org (ON DELETE CASCADE), and every
-- per-formation row off its formation, so DeleteOrg / DeleteFormation are a
-- single DELETE. Timestamps are epoch milliseconds (BIGINT); unsigned model
-- fields are stored as BIGINT so no uint32 value can overflow. Identifiers
-- use COLLATE "C" so lists sort by byte order whatever the database locale.

CREATE TABLE orgs (
    org_id                      TEXT COLLATE "C" PRIMARY KEY,
    display_name                TEXT   NOT NULL,
    max_formations              BIGINT NOT NULL,
    max_peers_per_formation     BIGINT NOT NULL,
    max_documents_per_formation BIGINT NOT NULL,
    max_cdc_sinks               BIGINT NOT NULL,
    max_enrollments_per_hour    BIGINT NOT NULL,
    created_at                  BIGINT NOT NULL
);

-- One row per org holding the last allocated outbox seq. Writers lock it
-- for the rest of their transaction, which makes seq order equal commit
-- order (see outbox.go); it lives apart from orgs so that document writes
-- do not queue behind quota checks that lock the org row.
CREATE TABLE outbox_counters (
    org_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES orgs (org_id) ON DELETE CASCADE,
    last_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE formations (
    org_id            TEXT COLLATE "C"   NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    app_id            TEXT COLLATE "C"   NOT NULL,
    mesh_id           TEXT   NOT NULL,
    enrollment_policy TEXT   NOT NULL,
    status            TEXT   NOT NULL DEFAULT 'Active',
    created_at        BIGINT NOT NULL,
    genesis           BYTEA  NOT NULL,
    -- bumped by each certificate revocation (the revocation list's number)
    revocation_seq    BIGINT NOT NULL DEFAULT 0,
    -- live documents, kept in step by WriteDocuments so the document quota
    -- needs no count(*) over up to max_documents_per_formation rows
    doc_count         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, app_id)
);

CREATE TABLE enrollment_tokens (
    org_id     TEXT COLLATE "C"    NOT NULL,
    token_id   TEXT COLLATE "C"    NOT NULL,
    app_id     TEXT COLLATE "C"    NOT NULL,
    label      TEXT    NOT NULL,
    max_uses   BIGINT,
    uses       BIGINT  NOT NULL DEFAULT 0,
    expires_at BIGINT,
    created_at BIGINT  NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (org_id, token_id),
    FOREIGN KEY (org_id, app_id) REFERENCES formations (org_id, app_id) ON DELETE CASCADE
);
CREATE INDEX enrollment_tokens_by_app ON enrollment_tokens (org_id, app_id, token_id);

CREATE TABLE cdc_sinks (
    org_id     TEXT COLLATE "C"    NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    sink_id    TEXT COLLATE "C"    NOT NULL,
    sink_kind  TEXT    NOT NULL CHECK (sink_kind IN ('Nats', 'Kafka', 'Webhook')),
    -- subject_prefix, topic or url, by kind
    target     TEXT    NOT NULL,
    secret     TEXT,
    enabled    BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL,
    -- JSON (not JSONB) keeps the client's bytes, including filter configs
    filters    JSON    NOT NULL,
    PRIMARY KEY (org_id, sink_id)
);
CREATE INDEX cdc_sinks_by_id ON cdc_sinks (sink_id);

CREATE TABLE idp_configs (
    org_id        TEXT COLLATE "C"    NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    idp_id        TEXT COLLATE "C"    NOT NULL,
    issuer_url    TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    client_secret BYTEA   NOT NULL,
    enabled       BOOLEAN NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (org_id, idp_id)
);

CREATE TABLE policy_rules (
    org_id          TEXT COLLATE "C"   NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    rule_id         TEXT COLLATE "C"   NOT NULL,
    claim_key       TEXT   NOT NULL,
    claim_value     TEXT   NOT NULL,
    tier            TEXT   NOT NULL,
    permissions     BIGINT NOT NULL,
    priority        BIGINT NOT NULL,
    effect          TEXT   NOT NULL,
    required_claims JSON   NOT NULL,
    PRIMARY KEY (org_id, rule_id)
);

-- Audit entries outlive their formation (no FK to formations): the log of
-- who enrolled stays after the formation is gone.
CREATE TABLE enrollment_audit (
    org_id             TEXT COLLATE "C"    NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    audit_id           TEXT COLLATE "C"    NOT NULL,
    app_id             TEXT COLLATE "C"    NOT NULL,
    idp_id             TEXT COLLATE "C"    NOT NULL,
    subject            TEXT    NOT NULL,
    approved           BOOLEAN NOT NULL,
    decision           JSON    NOT NULL,
    reason             TEXT    NOT NULL,
    certificate_serial TEXT,
    timestamp_ms       BIGINT  NOT NULL,
    PRIMARY KEY (org_id, audit_id)
);
CREATE INDEX enrollment_audit_newest ON enrollment_audit (org_id, timestamp_ms DESC, audit_id DESC);
CREATE INDEX enrollment_audit_app_newest ON enrollment_audit (org_id, app_id, timestamp_ms DESC, audit_id DESC);
-- the rate limiter counts approvals in the last hour
CREATE INDEX enrollment_audit_approvals ON enrollment_audit (org_id, timestamp_ms) WHERE approved;

CREATE TABLE certificates (
    org_id      TEXT COLLATE "C"     NOT NULL,
    app_id      TEXT COLLATE "C"     NOT NULL,
    serial      TEXT COLLATE "C"     NOT NULL,
    peer_id     TEXT     NOT NULL,
    node_id     TEXT     NOT NULL,
    subject_key TEXT     NOT NULL,
    fingerprint TEXT     NOT NULL,
    tier        TEXT     NOT NULL,
    permissions SMALLINT NOT NULL,
    issued_at   BIGINT   NOT NULL,
    expires_at  BIGINT   NOT NULL,
    revoked     BOOLEAN  NOT NULL DEFAULT false,
    revoked_at  BIGINT,
    audit_id    TEXT COLLATE "C"     NOT NULL,
    raw         BYTEA    NOT NULL,
    PRIMARY KEY (org_id, app_id, serial),
    FOREIGN KEY (org_id, app_id) REFERENCES formations (org_id, app_id) ON DELETE CASCADE
);
CREATE INDEX certificates_by_issue ON certificates (org_id, app_id, issued_at, serial);
-- the peer quota counts live certificates; the revocation list reads revoked ones
CREATE INDEX certificates_live ON certificates (org_id, app_id) WHERE NOT revoked;
CREATE INDEX certificates_revoked ON certificates (org_id, app_id, serial) WHERE revoked;

-- A deleted document stays as a tombstone (deleted, body NULL) so that its
-- version keeps rising when it is re-created: change hashes stay distinct.
CREATE TABLE documents (
    org_id      TEXT COLLATE "C"    NOT NULL,
    app_id      TEXT COLLATE "C"    NOT NULL,
    doc_id      TEXT COLLATE "C"    NOT NULL,
    body        BYTEA,
    deleted     BOOLEAN NOT NULL DEFAULT false,
    version     BIGINT  NOT NULL,
    change_hash TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    key_count   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, app_id, doc_id),
    FOREIGN KEY (org_id, app_id) REFERENCES formations (org_id, app_id) ON DELETE CASCADE
);

-- The outbox survives formation deletion (events already emitted must still
-- reach the sinks) but not org deletion.
CREATE TABLE outbox (
    org_id     TEXT COLLATE "C"   NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    event      BYTEA  NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX outbox_by_age ON outbox (created_at);

CREATE TABLE sink_progress (
    sink_id           TEXT COLLATE "C"   PRIMARY KEY,
    org_id            TEXT COLLATE "C"   NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    cursor_seq        BIGINT NOT NULL DEFAULT 0,
    delivered         BIGINT NOT NULL DEFAULT 0,
    dead_lettered     BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT   NOT NULL DEFAULT '',
    last_delivered_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sink_progress_by_org ON sink_progress (org_id);

CREATE TABLE dead_letters (
    id         BIGSERIAL PRIMARY KEY,
    org_id     TEXT COLLATE "C"    NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    sink_id    TEXT COLLATE "C"    NOT NULL,
    seq        BIGINT  NOT NULL,
    error      TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    created_at BIGINT  NOT NULL,
    event      BYTEA   NOT NULL,
    replayed   BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX dead_letters_by_sink ON dead_letters (org_id, sink_id, id);

-- Only the latest version of a module is kept; version counts uploads.
CREATE TABLE filter_modules (
    org_id     TEXT COLLATE "C"    NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    name       TEXT COLLATE "C"    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    size_bytes BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    wasm       BYTEA   NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE formation_filters (
    org_id TEXT COLLATE "C" NOT NULL,
    app_id TEXT COLLATE "C" NOT NULL,
    chain  JSON NOT NULL,
    PRIMARY KEY (org_id, app_id),
    FOREIGN KEY (org_id, app_id) REFERENCES formations (org_id, app_id) ON DELETE CASCADE
);
