-- Enrollment writes an audit entry and a certificate on every approval, and
-- the single writer's cost per enrollment is mostly B-tree inserts and the
-- pages they dirty (each dirty page is one WAL frame at commit). Rebuilt with
-- fewer indexes per row:
--   * the audit's UNIQUE (org_id, audit_id) index goes: an audit_id is 64
--     random bits, never looked up, and its random inserts dirtied a page per
--     entry; (org_id, timestamp_ms, audit_id), the listing order, is unique
--     instead.
--   * the partial index of approvals goes: the rate limiter counts whole
--     minutes from enrollment_rate and reads the audit only for the minute the
--     window starts in, through the listing index.
--   * the certificates' issue-order index goes: the inventory is listed whole,
--     so sorting a formation's rows found through the primary key costs about
--     what walking that index did. The revocation list gets a partial index of
--     the (few) revoked certificates instead.

CREATE TABLE enrollment_audit_v6 (
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
    timestamp_ms INTEGER NOT NULL
) STRICT;
INSERT INTO enrollment_audit_v6 (id, org_id, audit_id, app_id, idp_id, subject, decision, approved, reason, serial, timestamp_ms)
    SELECT id, org_id, audit_id, app_id, idp_id, subject, decision, approved, reason, serial, timestamp_ms FROM enrollment_audit;
DROP TABLE enrollment_audit;
ALTER TABLE enrollment_audit_v6 RENAME TO enrollment_audit;
CREATE UNIQUE INDEX enrollment_audit_by_time ON enrollment_audit(org_id, timestamp_ms, audit_id);
CREATE INDEX enrollment_audit_by_app_time ON enrollment_audit(org_id, app_id, timestamp_ms, audit_id);

DROP INDEX certificates_by_issue;
CREATE INDEX certificates_revoked ON certificates(org_id, app_id, revoked_at, serial) WHERE revoked = 1;
