-- Bulk loads into a brand-new day: PostgreSQL's own advice for populating a table is to build
-- indexes after the data is in. Keeping the (id, ts) primary key up to date row by row while a
-- day's 7 M readings arrive costs about twice the COPY itself; one sorted build afterwards costs
-- a fraction of that.
--
-- A day that has no partition yet is first created as a plain "pending" table with the
-- partition's name, its range as a CHECK constraint and no index. Files whose time range is
-- provably new (the manifest says so) are COPYed into it, each in its own transaction with its
-- manifest row as before. finish_day_partitions() then builds the primary key and attaches the
-- table; the CHECK constraint lets ATTACH skip its validation scan. A pending day's rows are
-- committed but not yet visible through the history table; the loader finishes every pending
-- day at the end of each run and before any write that needs the day's key index, so after a
-- crash the next run makes them visible.

-- Builds the primary key of a pending day table and attaches it as the day's partition.
CREATE FUNCTION attach_pending_day(parent regclass, day_table text, day date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    key_columns text := (
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ordinality)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = parent AND i.indisprimary
    );
BEGIN
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (%s)', day_table, key_columns);
    EXECUTE format(
        'ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        parent, day_table,
        to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
        to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
    );
    -- The partition bound now says the same; later partitions look alike.
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', day_table, day_table || '_day_range');
    -- Statistics now, not when autovacuum comes by: queries right after a bulk load are then
    -- planned with the day's real size (0.2 s for a 7.2 M-row day).
    EXECUTE format('ANALYZE %I', day_table);
END;
$$;

-- The table a file's rows of one day are COPYed into when its time range is provably new: the
-- day's partition if it exists, else its pending table (created here when missing).
CREATE FUNCTION day_table_for_new_rows(parent regclass, day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    day_table text := parent_name || '_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(quote_ident(day_table)) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS, CONSTRAINT %I CHECK '
            '(ts IS NOT NULL AND ts >= %L AND ts < %L))',
            day_table, parent, day_table || '_day_range',
            to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
        );
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_loader') THEN
            EXECUTE format('GRANT INSERT ON %I TO energy_loader', day_table);
        END IF;
    END IF;
    RETURN day_table;
END;
$$;

-- Attaches every pending day table of a history table; returns their names.
CREATE FUNCTION finish_pending_days(parent regclass) RETURNS SETOF text
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
           AND c.relname ~ ('^' || parent_name || '_p[0-9]{8}$')
         ORDER BY c.relname
    LOOP
        PERFORM attach_pending_day(parent, pending.relname, to_date(right(pending.relname, 8), 'YYYYMMDD'));
        RETURN NEXT pending.relname;
    END LOOP;
END;
$$;

-- A write that needs the day's key index (the conflict path) finishes a pending day first.
CREATE OR REPLACE FUNCTION ensure_day_partition(parent regclass, day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    partition_name text := parent_name || '_p' || to_char(day, 'YYYYMMDD');
    existing regclass := to_regclass(quote_ident(partition_name));
BEGIN
    IF existing IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
            partition_name, parent,
            to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
        );
    ELSIF NOT (SELECT relispartition FROM pg_class WHERE oid = existing) THEN
        PERFORM attach_pending_day(parent, partition_name, day);
    END IF;
    RETURN partition_name;
END;
$$;

REVOKE ALL ON FUNCTION attach_pending_day(regclass, text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION day_table_for_new_rows(regclass, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION finish_pending_days(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION day_table_for_new_rows(regclass, date) TO energy_loader;
GRANT EXECUTE ON FUNCTION finish_pending_days(regclass) TO energy_loader;
