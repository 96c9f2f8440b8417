-- energy_analyst: read-only access for analysts (SELECT only; no writes, no DDL). It is created
-- without a password: set one with ALTER ROLE energy_analyst PASSWORD '...' where auth needs it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_analyst') THEN
        CREATE ROLE energy_analyst LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END;
$$;

-- Each vehicle's latest computed day with its status.
CREATE VIEW v_fleet_efficiency_latest AS
SELECT DISTINCT ON (vehicle_id)
       vehicle_id, day, efficiency_ratio, status, total_kwh_delivered_dc, total_kwh_consumed_ac,
       shared_meter, meter_ids, computed_at
  FROM daily_vehicle_efficiency
 ORDER BY vehicle_id, day DESC;

GRANT USAGE ON SCHEMA public TO energy_analyst;
REVOKE CREATE ON SCHEMA public FROM energy_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO energy_analyst;
-- Tables added by later migrations are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO energy_analyst;
