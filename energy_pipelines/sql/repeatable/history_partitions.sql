-- The partitions of meter_readings_history and vehicle_readings_history: one per UTC day,
-- created on demand; a day opened by bulk hourly exports is itself partitioned by UTC hour, one
-- leaf per hour. Days are the unit of retention (retention.sql; dropping a day drops its hours).
--
-- New days and hours are loaded before their key index exists: PostgreSQL's own advice for
-- populating a table is to build indexes after the data is in. Keeping the (id, ts) primary key
-- up to date row by row while a day's 7 M readings arrive costs about twice the COPY itself; one
-- sorted build afterwards costs a fraction of that, and about half again on rows that arrive in
-- key order (benchmarks/index_build.sql), which the rows of one hourly file are (the transform
-- sorts each file by key).
--
-- So a new day or hour is first a plain table with the partition's name, its range as a CHECK
-- constraint and no index, recorded in history_new_tables. Files whose time range is provably
-- new (the manifest says so) are COPYed into it, each in its own transaction with its manifest
-- row. finish_new_tables() then builds each new table's key in one sort and attaches it where
-- history_new_tables says (the CHECK constraint lets ATTACH skip its validation scan). A new
-- table's rows are committed but not visible through history until then: the loader finishes
-- its stream's new tables when each run ends and before any write that needs a key index
-- (ensure_hour_partition()), so after a crash the next run makes them visible.
--
-- The loader picks a new day's layout from the rows that open it (day_table_for_new_rows_of()):
-- many readings per hour (bulk hourly exports) get hourly leaves; few readings per hour (a small
-- file, or a chunk of a day file spread over many hours) keep the day in one table, because 24
-- small COPYs per chunk cost more than the sort they save.
--
-- The functions the loader calls run with the owner's rights (SECURITY DEFINER), so
-- energy_loader creates and attaches partitions without any DDL right of its own.

-- The key columns of a history table's primary key, quoted, in order ("meter_id, ts").
CREATE OR REPLACE FUNCTION history_key_columns(parent regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ordinality)
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = parent AND i.indisprimary
$$;

-- The name of a history table's partition for a UTC day: <history>_pYYYYMMDD (an hour's leaf
-- adds _hHH).
CREATE OR REPLACE FUNCTION day_partition_name(parent regclass, day date) RETURNS text
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT relname || '_p' || to_char(day, 'YYYYMMDD') FROM pg_class WHERE oid = parent
$$;

-- An hour's start as a partition bound literal, in UTC whatever the session's time zone.
CREATE OR REPLACE FUNCTION utc_hour_bound(hour_start timestamp) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(hour_start, 'YYYY-MM-DD HH24:00:00') || '+00'
$$;

-- Creates a plain table for a history table's rows in [rows_from, rows_to) (UTC), without an
-- index, and records it in history_new_tables: finish_new_tables() gives it its key and attaches
-- it to `attach_to` (the history table for a day, the day's partition for an hour).
CREATE OR REPLACE FUNCTION create_new_table(
    parent regclass, new_table text, new_kind text, attach_to text, rows_from timestamp,
    rows_to timestamp
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    EXECUTE format(
        'CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS, CONSTRAINT %I CHECK '
        '(ts IS NOT NULL AND ts >= %L AND ts < %L))',
        new_table, parent, new_table || '_' || new_kind || '_range',
        utc_hour_bound(rows_from), utc_hour_bound(rows_to)
    );
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_loader') THEN
        EXECUTE format('GRANT INSERT ON %I TO energy_loader', new_table);
    END IF;
    INSERT INTO history_new_tables (table_name, history, kind, partition_of, ts_from, ts_to)
    VALUES (new_table, parent, new_kind, attach_to, rows_from AT TIME ZONE 'UTC',
            rows_to AT TIME ZONE 'UTC');
END;
$$;

-- Builds the primary key of a new table in one sort and attaches it where history_new_tables
-- says; the table is then an ordinary partition and leaves history_new_tables.
CREATE OR REPLACE FUNCTION attach_new_table(parent regclass, table_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    new_table history_new_tables;
BEGIN
    SELECT * INTO new_table FROM history_new_tables n
     WHERE n.history = parent AND n.table_name = attach_new_table.table_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a new table of %', attach_new_table.table_name, parent;
    END IF;
    EXECUTE format(
        'ALTER TABLE %I ADD PRIMARY KEY (%s)', new_table.table_name, history_key_columns(parent)
    );
    EXECUTE format(
        'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        new_table.partition_of, new_table.table_name,
        utc_hour_bound(new_table.ts_from AT TIME ZONE 'UTC'),
        utc_hour_bound(new_table.ts_to AT TIME ZONE 'UTC')
    );
    -- The partition bound now says the same; all partitions look alike.
    EXECUTE format(
        'ALTER TABLE %I DROP CONSTRAINT %I',
        new_table.table_name, new_table.table_name || '_' || new_table.kind || '_range'
    );
    IF new_table.kind = 'day' THEN
        -- Statistics now, not when autovacuum comes by: queries right after a bulk load are
        -- then planned with the day's real size (0.2 s for a 7.2 M-row day).
        EXECUTE format('ANALYZE %I', new_table.table_name);
    END IF;
    DELETE FROM history_new_tables n WHERE n.table_name = new_table.table_name;
END;
$$;

-- Batches of different hours of one stream load side by side (sql/025), so two may find the
-- same day missing: a day is created under the history table's SHARE UPDATE EXCLUSIVE lock
-- (the lock ATTACH takes anyway; reads and writes of history go on), and whoever waited for it
-- looks again and finds the day made. The lock lasts until the creating batch commits.
CREATE OR REPLACE FUNCTION lock_for_new_day(parent regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', parent);
END;
$$;

-- The day's partition: created empty, partitioned by hour, with its key, and attached when
-- missing. A day of the single-table kind (new or attached) is returned as it is.
-- (Created apart and then attached: ATTACH takes a weaker lock on history than CREATE TABLE
-- ... PARTITION OF, so queries on history never wait for a load.)
CREATE OR REPLACE FUNCTION ensure_hourly_day(parent regclass, day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    day_name text := day_partition_name(parent, day);
    existing regclass := to_regclass(quote_ident(day_name));
BEGIN
    IF existing IS NULL THEN
        PERFORM lock_for_new_day(parent);
        existing := to_regclass(quote_ident(day_name));
    END IF;
    IF existing IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS) PARTITION BY RANGE (ts)',
            day_name, parent
        );
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (%s)', day_name, history_key_columns(parent));
        EXECUTE format(
            'ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            parent, day_name, utc_hour_bound(day), utc_hour_bound(day + 1)
        );
    END IF;
    RETURN day_name;
END;
$$;

-- The table a new day's rows are COPYed into whole, or NULL when the day is partitioned by
-- hour (hour_table_for_new_rows() then names each hour's table). A missing day is created: as
-- one new table when `whole_day`, else partitioned by hour.
CREATE OR REPLACE FUNCTION day_table_for_new_rows_of(parent regclass, day date, whole_day boolean)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    day_name text := day_partition_name(parent, day);
    existing regclass := to_regclass(quote_ident(day_name));
BEGIN
    IF existing IS NULL THEN
        PERFORM lock_for_new_day(parent);
        existing := to_regclass(quote_ident(day_name));
    END IF;
    IF existing IS NULL AND whole_day THEN
        PERFORM create_new_table(
            parent, day_name, 'day', (SELECT relname FROM pg_class WHERE oid = parent), day,
            day + 1
        );
        RETURN day_name;
    ELSIF existing IS NULL THEN
        PERFORM ensure_hourly_day(parent, day);
        RETURN NULL;
    END IF;
    RETURN CASE WHEN (SELECT relkind FROM pg_class WHERE oid = existing) = 'r' THEN day_name END;
END;
$$;

-- The table an hour's rows are COPYed into when the file's time range is provably new: the
-- hour's leaf or new table if it exists (or the day's single table), else a new table for the
-- hour.
CREATE OR REPLACE FUNCTION hour_table_for_new_rows(parent regclass, hour timestamptz)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    hour_start timestamp := date_trunc('hour', hour AT TIME ZONE 'UTC');
    day_name text := ensure_hourly_day(parent, hour_start::date);
    hour_name text := day_name || '_h' || to_char(hour_start, 'HH24');
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass(quote_ident(day_name))) = 'r' THEN
        RETURN day_name;
    END IF;
    IF to_regclass(quote_ident(hour_name)) IS NULL THEN
        PERFORM create_new_table(
            parent, hour_name, 'hour', day_name, hour_start, hour_start + interval '1 hour'
        );
    END IF;
    RETURN hour_name;
END;
$$;

-- Attaches every new table of a history table (loaded by this run, or by one that stopped
-- before its end); returns their names. The caller holds the stream lock.
CREATE OR REPLACE FUNCTION finish_new_tables(parent regclass) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    new_table record;
BEGIN
    FOR new_table IN
        SELECT n.table_name FROM history_new_tables n WHERE n.history = parent
         ORDER BY n.table_name
    LOOP
        PERFORM attach_new_table(parent, new_table.table_name);
        RETURN NEXT new_table.table_name;
    END LOOP;
END;
$$;

-- The new tables of a history table, by name: a loader builds their keys side by side, each
-- in a transaction of its own on a session of its own (finish_new_table()), while it holds the
-- stream's lock.
CREATE OR REPLACE FUNCTION new_tables_of(parent regclass) RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT n.table_name FROM history_new_tables n WHERE n.history = parent ORDER BY n.table_name
$$;

-- Attaches one new table of a history table; false when it is not (or no longer) one.
CREATE OR REPLACE FUNCTION finish_new_table(parent regclass, table_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM history_new_tables n
         WHERE n.history = parent AND n.table_name = finish_new_table.table_name
    ) THEN
        RETURN false;
    END IF;
    PERFORM attach_new_table(parent, table_name);
    RETURN true;
END;
$$;

-- A write that needs the key index (the conflict path): the hour's leaf (or the day's single
-- table), attached with its key; a new day or hour table is finished first.
CREATE OR REPLACE FUNCTION ensure_hour_partition(parent regclass, hour timestamptz)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    target text := hour_table_for_new_rows(parent, hour);
BEGIN
    IF EXISTS (
        SELECT 1 FROM history_new_tables n WHERE n.history = parent AND n.table_name = target
    ) THEN
        PERFORM attach_new_table(parent, target);
    END IF;
    RETURN target;
END;
$$;

-- energy_loader calls the six functions its loads need; the rest are theirs.
REVOKE ALL ON FUNCTION history_key_columns(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION day_partition_name(regclass, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION utc_hour_bound(timestamp) FROM PUBLIC;
REVOKE ALL ON FUNCTION create_new_table(regclass, text, text, text, timestamp, timestamp)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION attach_new_table(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ensure_hourly_day(regclass, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION lock_for_new_day(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION day_table_for_new_rows_of(regclass, date, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hour_table_for_new_rows(regclass, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION finish_new_tables(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION new_tables_of(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION finish_new_table(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ensure_hour_partition(regclass, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION day_table_for_new_rows_of(regclass, date, boolean) TO energy_loader;
GRANT EXECUTE ON FUNCTION hour_table_for_new_rows(regclass, timestamptz) TO energy_loader;
GRANT EXECUTE ON FUNCTION finish_new_tables(regclass) TO energy_loader;
GRANT EXECUTE ON FUNCTION new_tables_of(regclass) TO energy_loader;
GRANT EXECUTE ON FUNCTION finish_new_table(regclass, text) TO energy_loader;
GRANT EXECUTE ON FUNCTION ensure_hour_partition(regclass, timestamptz) TO energy_loader;
