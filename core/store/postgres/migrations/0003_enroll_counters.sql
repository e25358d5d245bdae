-- Counters that keep an enrollment's checks O(1) however many enrollments an
-- org has made: approvals per org and minute for the sliding-hour rate limit,
-- and live (non-revoked) certificates per formation for the peer quota. Both
-- were counted from their tables inside the org lock, so every enrollment of an
-- org paid for all the earlier ones. Triggers keep them exact whichever path
-- writes the rows (Enroll, AppendAudit, RevokeCertificate).
CREATE TABLE enrollment_rate (
    org_id TEXT COLLATE "C" NOT NULL REFERENCES orgs (org_id) ON DELETE CASCADE,
    minute BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (org_id, minute)
);
INSERT INTO enrollment_rate (org_id, minute, n)
    SELECT org_id, timestamp_ms / 60000, count(*) FROM enrollment_audit WHERE approved GROUP BY 1, 2;

CREATE FUNCTION enrollment_rate_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enrollment_rate (org_id, minute, n) VALUES (NEW.org_id, NEW.timestamp_ms / 60000, 1)
    ON CONFLICT (org_id, minute) DO UPDATE SET n = enrollment_rate.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER enrollment_audit_rate AFTER INSERT ON enrollment_audit
    FOR EACH ROW WHEN (NEW.approved) EXECUTE FUNCTION enrollment_rate_count();

ALTER TABLE formations ADD COLUMN peer_count BIGINT NOT NULL DEFAULT 0;
UPDATE formations f SET peer_count = (SELECT count(*) FROM certificates c
    WHERE c.org_id = f.org_id AND c.app_id = f.app_id AND NOT c.revoked);

CREATE FUNCTION certificates_peer_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NOT NEW.revoked THEN
        UPDATE formations SET peer_count = peer_count + 1 WHERE org_id = NEW.org_id AND app_id = NEW.app_id;
    ELSIF TG_OP = 'UPDATE' AND NEW.revoked AND NOT OLD.revoked THEN
        UPDATE formations SET peer_count = peer_count - 1 WHERE org_id = NEW.org_id AND app_id = NEW.app_id;
    ELSIF TG_OP = 'UPDATE' AND OLD.revoked AND NOT NEW.revoked THEN
        UPDATE formations SET peer_count = peer_count + 1 WHERE org_id = NEW.org_id AND app_id = NEW.app_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER certificates_peers AFTER INSERT OR UPDATE OF revoked ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificates_peer_count();
