-- Retention: drop whole day partitions of a history table that end on or before a day.
-- Runs with the owner's rights so energy_loader can keep history bounded without DDL rights.
-- The manifest (ingested_files), quarantine and daily summaries are kept.
CREATE FUNCTION drop_day_partitions_before(parent regclass, before_day date) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    child record;
BEGIN
    FOR child IN
        SELECT c.relname
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = parent
           AND c.relname ~ '_p[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') < before_day
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', child.relname);
        RETURN NEXT child.relname;
    END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION drop_day_partitions_before(regclass, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION drop_day_partitions_before(regclass, date) TO energy_loader;
