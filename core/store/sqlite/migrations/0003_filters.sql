-- Versioned tenant wasm modules. Formation chains live in formations.filters.

CREATE TABLE filter_modules (
    org_id     TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    wasm       BLOB NOT NULL,
    PRIMARY KEY (org_id, name, version)
) STRICT;
