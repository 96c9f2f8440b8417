-- The tables of history loaded without their key index and not yet attached (a new day or hour,
-- repeatable/history_partitions.sql), each with what it becomes: a row is written when such a
-- table is created and deleted when the table is attached.
CREATE TABLE history_new_tables (
    table_name   text PRIMARY KEY,
    history      regclass NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('day', 'hour')),
    -- The table it becomes a partition of: the history table for a day, the day's partition
    -- (partitioned by hour) for an hour.
    partition_of text NOT NULL,
    -- [ts_from, ts_to): the range its rows lie in, a CHECK constraint on the table until it is
    -- attached with these bounds.
    ts_from      timestamptz NOT NULL,
    ts_to        timestamptz NOT NULL CHECK (ts_to > ts_from),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- New tables a stopped run left behind, known until here by their names alone: a plain table
-- named like a partition (<history>_pYYYYMMDD, or _pYYYYMMDD_hHH for an hour) that is none.
WITH found AS (
    SELECT c.relname::text AS table_name, h.oid AS history, h.relname::text AS history_name,
           substring(c.relname FROM '_p([0-9]{8})(?:_h[0-9]{2})?$') AS day_digits,
           substring(c.relname FROM '_h([0-9]{2})$') AS hour_digits
      FROM pg_class c
      JOIN pg_class h ON h.relnamespace = c.relnamespace
                     AND h.relname IN ('meter_readings_history', 'vehicle_readings_history')
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
       AND c.relname ~ ('^' || h.relname || '_p[0-9]{8}(_h[0-9]{2})?$')
), ranged AS (
    SELECT found.*, to_date(day_digits, 'YYYYMMDD')
                    + make_interval(hours => coalesce(hour_digits, '0')::integer) AS starts
      FROM found
)
INSERT INTO history_new_tables (table_name, history, kind, partition_of, ts_from, ts_to)
SELECT table_name, history::regclass,
       CASE WHEN hour_digits IS NULL THEN 'day' ELSE 'hour' END,
       CASE WHEN hour_digits IS NULL THEN history_name ELSE history_name || '_p' || day_digits END,
       starts AT TIME ZONE 'UTC',
       (starts + CASE WHEN hour_digits IS NULL THEN interval '1 day' ELSE interval '1 hour' END)
           AT TIME ZONE 'UTC'
  FROM ranged;

-- Attaching reads what each new table becomes from history_new_tables, in one function
-- (attach_new_table()): the ones that read it from a table's name go.
DROP FUNCTION IF EXISTS attach_pending_day(regclass, text, date);
DROP FUNCTION IF EXISTS attach_hour_table(regclass, text);
DROP FUNCTION IF EXISTS day_table_for_new_rows(regclass, date);
