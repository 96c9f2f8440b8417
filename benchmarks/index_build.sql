-- How a day's key index build grows with the day's size (not a test).
--
--     createdb energy_index_bench && psql -d energy_index_bench -f benchmarks/index_build.sql
--     dropdb energy_index_bench
--
-- Builds the (meter_id, ts) primary key, as sql/009 does for a pending day, on 3.6 M and on
-- 7.2 M meter readings laid out like 24 hourly files (each sorted by key), with the ingest
-- settings, one build at a time. trace_sort logs where the time goes: the sort's CPU time is
-- the difference between the "performsort ... starting" and "... done" lines.
SET maintenance_work_mem = '1GB';
SET max_parallel_maintenance_workers = 0;
SET work_mem = '1GB';
\timing on

CREATE TABLE day_readings (meter_id text COLLATE "C" NOT NULL, ts timestamptz NOT NULL,
                           kwh_consumed_ac double precision, voltage double precision,
                           file_id bigint);
INSERT INTO day_readings
SELECT 'meter-' || lpad(m::text, 5, '0'),
       timestamptz '2026-02-10 00:00+00' + make_interval(hours => h, mins => mi),
       random(), 230 + random(), h
  FROM generate_series(0, 23) h, generate_series(1, 5000) m, generate_series(0, 59) mi
 ORDER BY h, m, mi;
CREATE TABLE half_day_readings AS SELECT * FROM day_readings WHERE ts < '2026-02-10 12:00+00';
VACUUM ANALYZE day_readings;
VACUUM ANALYZE half_day_readings;
CHECKPOINT;

SET trace_sort = on;
SET client_min_messages = log;
ALTER TABLE half_day_readings ADD PRIMARY KEY (meter_id, ts);
ALTER TABLE day_readings ADD PRIMARY KEY (meter_id, ts);

-- The same day's readings stored in key order: PostgreSQL's sort notices presorted input, so the
-- build costs about half (5.9 s against 11.6 s here, 2026-12-01). Hourly files interleave the
-- devices, so a day loaded from them is in key order only within each hour (hence the hourly
-- leaves of sql/013, each built from one hourly file in key order).
SET trace_sort = off;
ALTER TABLE day_readings DROP CONSTRAINT day_readings_pkey;
CREATE TABLE day_readings_in_key_order AS SELECT * FROM day_readings ORDER BY meter_id, ts;
VACUUM ANALYZE day_readings_in_key_order;
CHECKPOINT;
ALTER TABLE day_readings ADD PRIMARY KEY (meter_id, ts);
ALTER TABLE day_readings_in_key_order ADD PRIMARY KEY (meter_id, ts);
