-- A new day's partition of history can itself be partitioned by UTC hour: one leaf per hour.
--
-- Why: a day's key index built in one piece (sql/009) sorts 7.2 M keys loaded from 24 hourly
-- files, whose devices interleave, and PostgreSQL's sort costs about half on rows that are
-- already in key order (benchmarks/index_build.sql). The transform sorts each file by key, so
-- the rows of an hourly file are one hour's leaf, in key order. Each new hour is COPYed into a
-- plain table without an index; when the run ends (or before a write needs the hour's key) the
-- table gets its primary key in one build and is attached (its CHECK constraint lets ATTACH
-- skip the validation scan), like the pending days of sql/009.
--
-- The loader picks a new day's layout from the rows that open it (day_table_for_new_rows_of):
-- many readings per hour (bulk hourly exports) get hourly leaves; few readings per hour (a
-- file, or a chunk of a day file, spread over many hours) keep the day in one table, because
-- 24 small COPYs per chunk cost more than the sort they save. Days stay the unit of retention
-- (dropping a day drops its hours). Days loaded before this migration keep their single table.
-- The key columns of a history table's primary key, quoted, in order ("meter_id, ts").
CREATE FUNCTION history_key_columns(parent regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ordinality)
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = parent AND i.indisprimary
$$;

-- sql/009's pending-day attach, now on the shared key helper above (same behaviour).
CREATE OR REPLACE FUNCTION attach_pending_day(parent regclass, day_table text, day date)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (%s)', day_table, history_key_columns(parent));
    EXECUTE format(
        'ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        parent, day_table, utc_hour_bound(day), utc_hour_bound(day + 1)
    );
    -- The partition bound now says the same; later partitions look alike.
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', day_table, day_table || '_day_range');
    -- Statistics now, not when autovacuum comes by: queries right after a bulk load are then
    -- planned with the day's real size (0.2 s for a 7.2 M-row day).
    EXECUTE format('ANALYZE %I', day_table);
END;
$$;

-- The name of a history table's partition for a UTC day.
CREATE FUNCTION day_partition_name(parent regclass, day date) RETURNS text
LANGUAGE sql STABLE SET search_path = public AS $$
    SELECT relname || '_p' || to_char(day, 'YYYYMMDD') FROM pg_class WHERE oid = parent
$$;

-- An hour's start as a partition bound literal, in UTC whatever the session's time zone.
CREATE FUNCTION utc_hour_bound(hour_start timestamp) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(hour_start, 'YYYY-MM-DD HH24:00:00') || '+00'
$$;

-- The day's partition: created empty, partitioned by hour, with its key, and attached when
-- missing. A day of the single-table kind (pending or attached) is returned as it is.
-- (Created apart and then attached: ATTACH takes a weaker lock on history than CREATE TABLE
-- ... PARTITION OF, so queries on history never wait for a load.)
CREATE FUNCTION ensure_hourly_day(parent regclass, day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    day_name text := day_partition_name(parent, day);
    existing regclass := to_regclass(quote_ident(day_name));
BEGIN
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
-- hour (hour_table_for_new_rows() then names each hour's table). A missing day is created:
-- as one pending table (sql/009) when `whole_day`, else partitioned by hour.
CREATE FUNCTION day_table_for_new_rows_of(parent regclass, day date, whole_day boolean)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    day_name text := day_partition_name(parent, day);
    existing regclass := to_regclass(quote_ident(day_name));
BEGIN
    IF existing IS NULL AND whole_day THEN
        RETURN day_table_for_new_rows(parent, day);
    ELSIF existing IS NULL THEN
        PERFORM ensure_hourly_day(parent, day);
        RETURN NULL;
    END IF;
    RETURN CASE WHEN (SELECT relkind FROM pg_class WHERE oid = existing) = 'r' THEN day_name END;
END;
$$;

-- The table an hour's rows are COPYed into when the file's time range is provably new: the
-- hour's leaf or pending table if it exists (or the day's single table), else a new plain
-- table for the hour, without an index, that finish_new_tables() attaches.
CREATE FUNCTION hour_table_for_new_rows(parent regclass, hour timestamptz) RETURNS text
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
        EXECUTE format(
            'CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS, CONSTRAINT %I CHECK '
            '(ts IS NOT NULL AND ts >= %L AND ts < %L))',
            hour_name, parent, hour_name || '_hour_range',
            utc_hour_bound(hour_start), utc_hour_bound(hour_start + interval '1 hour')
        );
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_loader') THEN
            EXECUTE format('GRANT INSERT ON %I TO energy_loader', hour_name);
        END IF;
    END IF;
    RETURN hour_name;
END;
$$;

-- Builds the primary key of a new hour table and attaches it to its day.
CREATE FUNCTION attach_hour_table(parent regclass, hour_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    day_name text := left(hour_name, length(hour_name) - length('_hHH'));
    hour_start timestamp := to_date(right(day_name, 8), 'YYYYMMDD')
                            + make_interval(hours => right(hour_name, 2)::int);
BEGIN
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (%s)', hour_name, history_key_columns(parent));
    EXECUTE format(
        'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        day_name, hour_name,
        utc_hour_bound(hour_start), utc_hour_bound(hour_start + interval '1 hour')
    );
    -- The partition bound now says the same; all leaves look alike.
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', hour_name, hour_name || '_hour_range');
END;
$$;

-- Builds the key of a table loaded without one and attaches it: an hour's table to its day, a
-- pending day (sql/009) to history. The name says which.
CREATE FUNCTION attach_new_table(parent regclass, table_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF table_name ~ '_h[0-9]{2}$' THEN
        PERFORM attach_hour_table(parent, table_name);
    ELSE
        PERFORM attach_pending_day(parent, table_name, to_date(right(table_name, 8), 'YYYYMMDD'));
    END IF;
END;
$$;

-- Attaches every day and hour table of a history table loaded without a key (by this run, or
-- by one that stopped before its end); returns their names. The caller holds the stream lock.
-- Replaces sql/009's finish_pending_days(), which knew days only.
CREATE FUNCTION finish_new_tables(parent regclass) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    pending record;
BEGIN
    FOR pending IN
        SELECT c.relname
          FROM pg_class c
         WHERE c.relkind = 'r' AND NOT c.relispartition
           AND c.relnamespace = 'public'::regnamespace
           AND c.relname ~ ('^' || parent_name || '_p[0-9]{8}(_h[0-9]{2})?$')
         ORDER BY c.relname
    LOOP
        PERFORM attach_new_table(parent, pending.relname);
        RETURN NEXT pending.relname;
    END LOOP;
END;
$$;
DROP FUNCTION finish_pending_days(regclass);

-- A write that needs the key index (the conflict path): the hour's leaf (or the day's single
-- table), attached with its key; a pending day or hour is finished first.
CREATE FUNCTION ensure_hour_partition(parent regclass, hour timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    target text := hour_table_for_new_rows(parent, hour);
BEGIN
    IF NOT (SELECT relispartition FROM pg_class WHERE oid = to_regclass(quote_ident(target)))
    THEN
        PERFORM attach_new_table(parent, target);
    END IF;
    RETURN target;
END;
$$;
-- The loader now reaches a day's partition through the functions above only.
DROP FUNCTION ensure_day_partition(regclass, date);

REVOKE ALL ON FUNCTION history_key_columns(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION day_partition_name(regclass, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION utc_hour_bound(timestamp) FROM PUBLIC;
REVOKE ALL ON FUNCTION ensure_hourly_day(regclass, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION day_table_for_new_rows_of(regclass, date, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hour_table_for_new_rows(regclass, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION attach_hour_table(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION attach_new_table(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION finish_new_tables(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION ensure_hour_partition(regclass, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION day_table_for_new_rows_of(regclass, date, boolean) TO energy_loader;
GRANT EXECUTE ON FUNCTION hour_table_for_new_rows(regclass, timestamptz) TO energy_loader;
GRANT EXECUTE ON FUNCTION finish_new_tables(regclass) TO energy_loader;
GRANT EXECUTE ON FUNCTION ensure_hour_partition(regclass, timestamptz) TO energy_loader;
