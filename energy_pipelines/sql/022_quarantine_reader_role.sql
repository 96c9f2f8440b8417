-- Raw quarantined values (rejected_rows.raw_values) are whatever a gateway sent, unchecked: they
-- can hold data an analyst should not see. Analysts get the reasons and the counts through two
-- views without them (repeatable/analyst_views.sql); the raw values are for
-- energy_quarantine_reader, a role without login that an operator grants to the people who fix
-- files at their source (GRANT energy_quarantine_reader TO alice). It reads everything an
-- analyst reads, plus them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_quarantine_reader') THEN
        CREATE ROLE energy_quarantine_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END;
$$;

REVOKE ALL ON rejected_rows FROM energy_analyst;
GRANT energy_analyst TO energy_quarantine_reader;
GRANT SELECT ON rejected_rows TO energy_quarantine_reader;
