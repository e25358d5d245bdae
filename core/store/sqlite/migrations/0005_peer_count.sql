-- Live (non-revoked) certificates per formation, kept beside the formation
-- so the peer quota check is O(1) however many peers a formation has.

ALTER TABLE formations ADD COLUMN peer_count INTEGER NOT NULL DEFAULT 0;

UPDATE formations SET peer_count = (
    SELECT count(*) FROM certificates c
    WHERE c.org_id = formations.org_id AND c.app_id = formations.app_id AND c.revoked = 0);

-- certificates_live served only the old count.
DROP INDEX certificates_live;
