-- Documents and the transactional outbox the CDC sinks read.

CREATE TABLE documents (
    org_id      TEXT NOT NULL,
    app_id      TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    -- NULL for a tombstone: the row outlives a delete so versions keep counting
    body        BLOB,
    key_count   INTEGER NOT NULL DEFAULT 0,
    version     INTEGER NOT NULL,
    change_hash TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, app_id, doc_id),
    FOREIGN KEY (org_id, app_id) REFERENCES formations(org_id, app_id) ON DELETE CASCADE
) STRICT;

-- AUTOINCREMENT: seqs are never reused, even after a prune empties the table,
-- so a sink cursor can never point at a later, different event. Writes are
-- serialised on one connection, so seq order is commit order.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    timestamp_ms INTEGER NOT NULL,
    event        BLOB NOT NULL
) STRICT;
CREATE INDEX outbox_by_org ON outbox(org_id, seq);

CREATE TABLE sink_progress (
    sink_id           TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    cursor            INTEGER NOT NULL DEFAULT 0,
    delivered         INTEGER NOT NULL DEFAULT 0,
    dead_lettered     INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT NOT NULL DEFAULT '',
    last_delivered_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sink_progress_by_org ON sink_progress(org_id);

CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    sink_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    error      TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    event      BLOB NOT NULL,
    replayed   INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX dead_letters_by_sink ON dead_letters(org_id, sink_id, id);
