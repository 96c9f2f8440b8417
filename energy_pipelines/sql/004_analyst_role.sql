-- energy_analyst: read-only access for analysts (SELECT only; no writes, no DDL). It is created
-- without a password: set one with ALTER ROLE energy_analyst PASSWORD '...' where auth needs it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_analyst') THEN
        CREATE ROLE energy_analyst LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO energy_analyst;
REVOKE CREATE ON SCHEMA public FROM energy_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO energy_analyst;
-- Tables and views added by later migrations are readable too (its views:
-- repeatable/analyst_views.sql).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO energy_analyst;
