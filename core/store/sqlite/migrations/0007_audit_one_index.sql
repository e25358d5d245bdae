-- One index for the enrollment audit instead of two. Every enrollment adds
-- an audit row, and each index on it is a B-tree insert at the org's (or the
-- formation's) newest position: a page dirtied, and one WAL frame at commit,
-- per org or formation in the group. The formation filter of the listing
-- now walks the org's newest-first order and skips other formations' rows
-- inside the index (app_id is in it, so a skipped row costs no table read).
-- Measured with BenchmarkWriterEnrollParallel (10 orgs): about 15% less
-- writer CPU and 20% fewer bytes written per enrollment. The cost moves to a
-- rare query: listing a formation that holds few of its org's entries reads
-- the org's index entries until it has found the page it asked for.
DROP INDEX enrollment_audit_by_app_time;
DROP INDEX enrollment_audit_by_time;
CREATE UNIQUE INDEX enrollment_audit_by_time ON enrollment_audit(org_id, timestamp_ms, audit_id, app_id);
