-- Cold store, manifest and quarantine of the ingestion stage.

-- One row per landing file handled: the manifest that makes loads exactly-once.
CREATE TABLE ingested_files (
    file_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream           text NOT NULL CHECK (stream IN ('meter', 'vehicle', 'correlation')),
    path             text NOT NULL,
    sha256           text NOT NULL,
    size_bytes       bigint NOT NULL,
    status           text NOT NULL CHECK (status IN ('loaded', 'quarantined', 'skipped_duplicate')),
    rows_read        bigint NOT NULL DEFAULT 0,
    rows_loaded      bigint NOT NULL DEFAULT 0,
    rows_rejected    bigint NOT NULL DEFAULT 0,
    rows_duplicate   bigint NOT NULL DEFAULT 0,
    rows_conflicting bigint NOT NULL DEFAULT 0,
    min_ts           timestamptz,
    max_ts           timestamptz,
    days_touched     date[] NOT NULL DEFAULT '{}',
    extra_columns    text[] NOT NULL DEFAULT '{}',
    error            text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    run_id           text,
    CONSTRAINT rows_reconcile CHECK (
        rows_read = rows_loaded + rows_rejected + rows_duplicate + rows_conflicting
    )
);
-- The same content is loaded at most once per stream, whatever its name.
CREATE UNIQUE INDEX ingested_files_loaded_once ON ingested_files (stream, sha256)
    WHERE status = 'loaded';
CREATE INDEX ingested_files_run ON ingested_files (run_id);

-- Append-only history, one partition per UTC day, created on demand
-- (repeatable/history_partitions.sql).
CREATE TABLE meter_readings_history (
    meter_id        text NOT NULL,
    ts              timestamptz NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage         double precision NOT NULL,
    file_id         bigint NOT NULL,
    PRIMARY KEY (meter_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE vehicle_readings_history (
    vehicle_id       text NOT NULL,
    ts               timestamptz NOT NULL,
    soc              double precision NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp     double precision NOT NULL,
    file_id          bigint NOT NULL,
    PRIMARY KEY (vehicle_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE meter_vehicle_correlation (
    meter_id   text NOT NULL,
    vehicle_id text NOT NULL,
    file_id    bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, vehicle_id)
);
CREATE INDEX meter_vehicle_correlation_vehicle ON meter_vehicle_correlation (vehicle_id);

-- Rows that did not load, with the rule they broke. A row breaking several rules has several rows.
CREATE TABLE rejected_rows (
    rejected_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id       bigint NOT NULL REFERENCES ingested_files (file_id),
    stream        text NOT NULL,
    source_path   text NOT NULL,
    row_number    bigint NOT NULL,
    column_name   text,
    kind          text NOT NULL CHECK (kind IN ('invalid', 'conflicting')),
    rule          text NOT NULL,
    raw_values    jsonb NOT NULL,
    -- For conflicts: the reading already stored under the same key, which stays.
    stored_values jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_rows_file ON rejected_rows (file_id);
