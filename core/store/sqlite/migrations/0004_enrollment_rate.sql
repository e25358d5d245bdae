-- Per-minute approval counts for the enrollment rate limiter. The sliding
-- hour is summed from at most 60 bucket rows plus an index range count over
-- the partial minute at the window's start, so the check stays exact and
-- costs the same at 10 or 1,000,000 enrollments an hour.

CREATE TABLE enrollment_rate (
    org_id TEXT NOT NULL REFERENCES orgs(org_id) ON DELETE CASCADE,
    minute INTEGER NOT NULL, -- timestamp_ms / 60000
    n      INTEGER NOT NULL,
    PRIMARY KEY (org_id, minute)
) STRICT, WITHOUT ROWID;

INSERT INTO enrollment_rate(org_id, minute, n)
    SELECT org_id, timestamp_ms / 60000, count(*) FROM enrollment_audit WHERE approved = 1 GROUP BY 1, 2;
