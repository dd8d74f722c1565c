-- telemetry_traces partitioned by UTC day on occurred_at, kept by pg_partman
-- (4.x or 5.x, PostgreSQL 11 or later). Run once, as a superuser, with psql,
-- after `flask db upgrade` created the plain table:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f partman.sql
--
-- Columns, types and index names stay the model's, so `flask telemetry
-- check` passes and a later `flask db migrate` finds nothing to change. Rows
-- already in the table are moved into the partitioned one.

-- pg_partman names and bounds daily partitions in the session's time zone:
-- UTC days, whatever the server's default. Run its maintenance in UTC too.
SET timezone = 'UTC';

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

BEGIN;

-- 1. The migration's plain table is put aside with its indexes; the id
--    sequence is kept for the new table.
ALTER TABLE telemetry_traces RENAME TO telemetry_traces_unpartitioned;
DO $$
DECLARE
    ix text;
BEGIN
    FOR ix IN
        SELECT indexname FROM pg_indexes
        WHERE tablename = 'telemetry_traces_unpartitioned'
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', ix, ix || '_unpartitioned');
    END LOOP;
END
$$;
ALTER SEQUENCE telemetry_traces_id_seq OWNED BY NONE;

-- 2. The partitioned table: the primary key must include the partition key.
CREATE TABLE telemetry_traces (
    id BIGINT NOT NULL DEFAULT nextval('telemetry_traces_id_seq'),
    actor_type VARCHAR(32) NOT NULL,
    actor_id BIGINT,
    event_type VARCHAR(64) NOT NULL,
    severity VARCHAR(16) NOT NULL,
    request_id VARCHAR(64),
    route_name VARCHAR(255),
    ip_address VARCHAR(45),
    user_agent VARCHAR(512),
    metadata JSON,
    occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT telemetry_traces_pkey PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE telemetry_traces_id_seq OWNED BY telemetry_traces.id;

CREATE INDEX ix_telemetry_traces_occurred_at ON telemetry_traces (occurred_at);
CREATE INDEX ix_telemetry_traces_request_id ON telemetry_traces (request_id);
CREATE INDEX ix_telemetry_traces_event_type ON telemetry_traces (event_type);
CREATE INDEX ix_telemetry_traces_actor ON telemetry_traces (actor_type, actor_id);
CREATE INDEX ix_telemetry_traces_event_type_occurred_at
    ON telemetry_traces (event_type, occurred_at);
CREATE INDEX ix_telemetry_traces_route_occurred_at
    ON telemetry_traces (route_name, event_type, occurred_at);

-- 3. pg_partman: daily partitions, a week made ahead (and a week back), a
--    default partition for stray rows (keep it empty: `flask telemetry
--    check` warns when a day's rows land there).
SELECT partman.create_parent(
    p_parent_table => 'public.telemetry_traces',
    p_control => 'occurred_at',
    p_type => 'native',
    p_interval => 'daily',
    p_premake => 7
);

-- Retention: partitions older than 7 days are dropped (not kept detached)
-- by pg_partman's maintenance and by `flask telemetry prune`.
UPDATE partman.part_config
SET retention = '7 days',
    retention_keep_table = false,
    retention_keep_index = false,
    infinite_time_partitions = true
WHERE parent_table = 'public.telemetry_traces';

-- 4. The rows of the plain table move over; days without a partition go to
--    the default partition, which pg_partman's partition_data_proc empties.
INSERT INTO telemetry_traces (
    id, actor_type, actor_id, event_type, severity, request_id, route_name,
    ip_address, user_agent, metadata, occurred_at
)
SELECT
    id, actor_type, actor_id, event_type, severity, request_id, route_name,
    ip_address, user_agent, metadata, occurred_at
FROM telemetry_traces_unpartitioned;
DROP TABLE telemetry_traces_unpartitioned;

COMMIT;

-- 5. Maintenance, at least daily (cron, pg_cron, or pg_partman's background
--    worker): makes the days ahead and applies the retention.
--
--   psql "$DATABASE_URL" -c "SET timezone = 'UTC'" \
--        -c "CALL partman.run_maintenance_proc()"
