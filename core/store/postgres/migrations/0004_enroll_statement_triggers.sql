-- Enrollments are written in batches (one INSERT of many audit rows and one
-- of many certificates), so the counters of migration 0003 are kept by
-- statement-level triggers over the inserted rows: one upsert per org and
-- minute, one update per formation, instead of one per row. Revocation
-- (an UPDATE of one certificate) keeps the row-level trigger.
DROP TRIGGER enrollment_audit_rate ON enrollment_audit;
CREATE FUNCTION enrollment_rate_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enrollment_rate (org_id, minute, n)
        SELECT org_id, timestamp_ms / 60000, count(*) FROM new_rows WHERE approved GROUP BY 1, 2
    ON CONFLICT (org_id, minute) DO UPDATE SET n = enrollment_rate.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER enrollment_audit_rate AFTER INSERT ON enrollment_audit
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION enrollment_rate_count_rows();

DROP TRIGGER certificates_peers ON certificates;
CREATE FUNCTION certificates_peer_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE formations f SET peer_count = f.peer_count + c.n
    FROM (SELECT org_id, app_id, count(*) AS n FROM new_rows WHERE NOT revoked GROUP BY 1, 2) c
    WHERE f.org_id = c.org_id AND f.app_id = c.app_id;
    RETURN NULL;
END $$;
CREATE TRIGGER certificates_peers_insert AFTER INSERT ON certificates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION certificates_peer_count_rows();
CREATE TRIGGER certificates_peers_update AFTER UPDATE OF revoked ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificates_peer_count();
