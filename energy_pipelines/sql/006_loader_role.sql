-- energy_loader: what the pipeline needs at run time and nothing else: DML on its tables,
-- temporary staging tables, and partition maintenance through functions that run with the
-- owner's rights (repeatable/history_partitions.sql), so it needs no CREATE right. Schema
-- changes stay with the owner that runs `energy-pipelines db upgrade`. Created without a
-- password, like energy_analyst.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_loader') THEN
        CREATE ROLE energy_loader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO energy_loader;
REVOKE CREATE ON SCHEMA public FROM energy_loader;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO energy_loader;
GRANT INSERT, UPDATE ON ingested_files TO energy_loader;
GRANT INSERT ON meter_readings_history, vehicle_readings_history, meter_vehicle_correlation,
    rejected_rows TO energy_loader;
GRANT INSERT, DELETE ON meter_status_candidates, vehicle_status_candidates TO energy_loader;
GRANT INSERT, UPDATE ON meter_current_status, vehicle_current_status TO energy_loader;
GRANT UPDATE ON hot_status_watermark, daily_analytics_watermark TO energy_loader;
GRANT INSERT, DELETE ON daily_vehicle_efficiency, daily_meter_usage TO energy_loader;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO energy_loader;

