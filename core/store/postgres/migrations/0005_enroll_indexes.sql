-- Every approval inserts an audit row and a certificate, and index upkeep
-- and counter triggers were most of that cost. Indexes nothing reads any more, or that another
-- index serves, go:
--   * the audit's key becomes (org_id, timestamp_ms, audit_id), the newest-
--     first listing order (scanned backwards), replacing both the old key
--     (org_id, audit_id: an audit_id is 64 random bits and never looked up)
--     and the separate listing index;
--   * the approvals index: the rate limiter counts whole minutes from
--     enrollment_rate and reads the audit only for the minute its window
--     starts in, through the key;
--   * certificates_live: the peer quota reads formations.peer_count (0003);
--   * certificates_by_issue: the inventory is listed whole, so sorting one
--     formation's rows found through the key costs about what walking it did.
ALTER TABLE enrollment_audit DROP CONSTRAINT enrollment_audit_pkey;
DROP INDEX enrollment_audit_newest;
ALTER TABLE enrollment_audit ADD PRIMARY KEY (org_id, timestamp_ms, audit_id);
DROP INDEX enrollment_audit_approvals;
DROP INDEX certificates_live;
DROP INDEX certificates_by_issue;

-- The counters of 0003 are kept by the statements that move them (Enroll,
-- AppendAudit, RevokeCertificate), which know the counts already: the
-- triggers cost a function call and a transition table per insert.
DROP TRIGGER enrollment_audit_rate ON enrollment_audit;
DROP TRIGGER certificates_peers_insert ON certificates;
DROP TRIGGER certificates_peers_update ON certificates;
DROP FUNCTION enrollment_rate_count_rows();
DROP FUNCTION certificates_peer_count_rows();
DROP FUNCTION enrollment_rate_count();
DROP FUNCTION certificates_peer_count();
