-- telemetry_traces partitioned by day on occurred_at (PostgreSQL 11 or later).
-- Run instead of the generated migration's create_table: columns, types and
-- index names are the model's, so `flask telemetry check` passes and a later
-- `flask db migrate` finds nothing to change (given the include_name filter
-- of docs/examples/migrate_partitions.py, which keeps autogenerate off the
-- partitions). The primary key must include the partition key, hence
-- (id, occurred_at).

CREATE TABLE telemetry_traces (
    id BIGSERIAL NOT NULL,
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
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX ix_telemetry_traces_occurred_at ON telemetry_traces (occurred_at);
CREATE INDEX ix_telemetry_traces_request_id ON telemetry_traces (request_id);
CREATE INDEX ix_telemetry_traces_event_type ON telemetry_traces (event_type);
CREATE INDEX ix_telemetry_traces_actor ON telemetry_traces (actor_type, actor_id);
CREATE INDEX ix_telemetry_traces_event_type_occurred_at
    ON telemetry_traces (event_type, occurred_at);
CREATE INDEX ix_telemetry_traces_route_occurred_at
    ON telemetry_traces (route_name, event_type, occurred_at);

-- Catches events for a day whose partition is missing, so none is lost.
-- Keep it empty: attaching a day's partition scans it.
CREATE TABLE telemetry_traces_default PARTITION OF telemetry_traces DEFAULT;

-- The partition of one UTC day, named telemetry_traces_YYYYMMDD.
CREATE OR REPLACE FUNCTION telemetry_traces_add_partition(day date)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_traces '
        'FOR VALUES FROM (%L) TO (%L)',
        'telemetry_traces_' || to_char(day, 'YYYYMMDD'),
        day::timestamp AT TIME ZONE 'UTC',
        (day + 1)::timestamp AT TIME ZONE 'UTC'
    );
END
$$;

-- Retention: drop the day partitions older than keep_days. Dropping a
-- partition is instant and leaves nothing to vacuum.
CREATE OR REPLACE FUNCTION telemetry_traces_drop_partitions(keep_days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part text;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT child.relname
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        WHERE parent.relname = 'telemetry_traces'
          AND child.relname ~ '^telemetry_traces_[0-9]{8}$'
          AND to_date(right(child.relname, 8), 'YYYYMMDD')
              < (now() AT TIME ZONE 'UTC')::date - keep_days
    LOOP
        EXECUTE format('DROP TABLE %I', part);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- Today and the next two days; a daily job keeps creating days ahead and
-- dropping the old ones:
--   SELECT telemetry_traces_add_partition((now() AT TIME ZONE 'UTC')::date + 2);
--   SELECT telemetry_traces_drop_partitions(7);
SELECT telemetry_traces_add_partition((now() AT TIME ZONE 'UTC')::date + n)
FROM generate_series(0, 2) AS n;
