-- Retention: drop whole day partitions of a history table that end on or before a day, with the
-- new tables of those days not yet attached (history_new_tables), their hourly totals and hour
-- summaries. Runs with the owner's rights so energy_loader can keep history bounded without DDL
-- rights. The manifest (ingested_files), quarantine and daily tables are kept.
--
-- Which partitions: the history table's attached children named before `before_day`'s
-- partition. Day partitions are named by day_partition_name() (history_partitions.sql), whose
-- YYYYMMDD suffix sorts like the days, so that comparison of names in byte order is the
-- comparison of days.
CREATE OR REPLACE FUNCTION drop_day_partitions_before(parent regclass, before_day date)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    child record;
    cutoff timestamptz := utc_hour_bound(before_day)::timestamptz;
BEGIN
    FOR child IN
        DELETE FROM history_new_tables n WHERE n.history = parent AND n.ts_to <= cutoff
        RETURNING n.table_name
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', child.table_name);
        RETURN NEXT child.table_name;
    END LOOP;
    FOR child IN
        SELECT c.relname
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = parent
           AND c.relname::text COLLATE "C" < day_partition_name(parent, before_day) COLLATE "C"
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', child.relname);
        RETURN NEXT child.relname;
    END LOOP;
    IF parent = 'meter_readings_history'::regclass THEN
        DELETE FROM meter_hourly_totals WHERE hour < cutoff;
        DELETE FROM device_hour_quality WHERE stream = 'meter' AND hour < cutoff;
    ELSIF parent = 'vehicle_readings_history'::regclass THEN
        DELETE FROM vehicle_hourly_totals WHERE hour < cutoff;
        DELETE FROM device_hour_quality WHERE stream = 'vehicle' AND hour < cutoff;
    END IF;
    -- The loaders' lock rows of the hours dropped (sql/025).
    DELETE FROM loader_hour_locks
     WHERE stream = CASE parent WHEN 'meter_readings_history'::regclass THEN 'meter'
                                ELSE 'vehicle' END
       AND hour < cutoff;
END;
$$;
REVOKE ALL ON FUNCTION drop_day_partitions_before(regclass, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION drop_day_partitions_before(regclass, date) TO energy_loader;
