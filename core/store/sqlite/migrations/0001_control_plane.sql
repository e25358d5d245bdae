-- Control plane: tenants, formations, tokens, sinks, identity, audit.
-- Timestamps are epoch milliseconds. Every per-org row cascades from orgs and
-- every per-formation row cascades from formations, so DeleteOrg and
-- DeleteFormation are single statements.

CREATE TABLE orgs (
    org_id                      TEXT PRIMARY KEY,
    display_name                TEXT NOT NULL,
    max_formations              INTEGER NOT NULL,
    max_peers_per_formation     INTEGER NOT NULL,
    max_documents_per_formation INTEGER NOT NULL,
    max_cdc_sinks               INTEGER NOT NULL,
    max_enrollments_per_hour    INTEGER NOT NULL,
    created_at                  INTEGER NOT NULL,
    -- retained outbox rows, kept here so the outbox limit and depth cost O(1)
    outbox_rows                 INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE formations (
    org_id            TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    app_id            TEXT NOT NULL,
    mesh_id           TEXT NOT NULL,
    enrollment_policy TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    genesis           BLOB NOT NULL,
    -- bumped by each certificate revocation (the revocation list's sequence)
    revocation_seq    INTEGER NOT NULL DEFAULT 0,
    -- live documents, kept here so the document quota costs O(1)
    doc_count         INTEGER NOT NULL DEFAULT 0,
    -- formation filter chain as JSON ([]FilterRef); read whole, never queried into
    filters           TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (org_id, app_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE enrollment_tokens (
    org_id     TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    token_id   TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    label      TEXT NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, token_id),
    FOREIGN KEY (org_id, app_id) REFERENCES formations(org_id, app_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX enrollment_tokens_by_app ON enrollment_tokens(org_id, app_id, token_id);

CREATE TABLE cdc_sinks (
    org_id     TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    sink_id    TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('Nats', 'Kafka', 'Webhook')),
    -- subject prefix, topic or URL depending on kind
    target     TEXT NOT NULL,
    secret     TEXT,
    enabled    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    filters    TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (org_id, sink_id)
) STRICT;

CREATE TABLE idp_configs (
    org_id        TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    idp_id        TEXT NOT NULL,
    issuer_url    TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    client_secret BLOB,
    enabled       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, idp_id)
) STRICT;

CREATE TABLE policy_rules (
    org_id          TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    rule_id         TEXT NOT NULL,
    claim_key       TEXT NOT NULL,
    claim_value     TEXT NOT NULL,
    tier            TEXT NOT NULL,
    permissions     INTEGER NOT NULL,
    priority        INTEGER NOT NULL,
    effect          TEXT NOT NULL,
    required_claims TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (org_id, rule_id)
) STRICT;

CREATE TABLE enrollment_audit (
    id           INTEGER PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    audit_id     TEXT NOT NULL,
    app_id       TEXT NOT NULL,
    idp_id       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    decision     TEXT NOT NULL,
    approved     INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    serial       TEXT,
    timestamp_ms INTEGER NOT NULL,
    UNIQUE (org_id, audit_id)
) STRICT;
-- newest-first listing, with and without the formation filter
CREATE INDEX enrollment_audit_by_time ON enrollment_audit(org_id, timestamp_ms, audit_id);
CREATE INDEX enrollment_audit_by_app_time ON enrollment_audit(org_id, app_id, timestamp_ms, audit_id);
-- the rate limiter's range count touches approvals only
CREATE INDEX enrollment_audit_approvals ON enrollment_audit(org_id, timestamp_ms) WHERE approved = 1;

CREATE TABLE certificates (
    org_id             TEXT NOT NULL,
    app_id             TEXT NOT NULL,
    serial             TEXT NOT NULL,
    peer_id            TEXT NOT NULL,
    node_id            TEXT NOT NULL,
    subject_public_key TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    tier               TEXT NOT NULL,
    permissions        INTEGER NOT NULL,
    issued_at          INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    revoked            INTEGER NOT NULL DEFAULT 0,
    revoked_at         INTEGER,
    audit_id           TEXT NOT NULL,
    raw                BLOB,
    PRIMARY KEY (org_id, app_id, serial),
    FOREIGN KEY (org_id, app_id) REFERENCES formations(org_id, app_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX certificates_by_issue ON certificates(org_id, app_id, issued_at, serial);
CREATE INDEX certificates_live ON certificates(org_id, app_id) WHERE revoked = 0;
