-- Retained outbox rows per org, kept beside last_seq so that the outbox
-- limit check reads one locked row instead of counting the backlog, whose
-- size is largest exactly when sinks are down.
ALTER TABLE outbox_counters ADD COLUMN retained BIGINT NOT NULL DEFAULT 0;
UPDATE outbox_counters c SET retained = (SELECT count(*) FROM outbox o WHERE o.org_id = c.org_id);
