-- Raw quarantined values (rejected_rows.raw_values) are whatever a gateway sent, unchecked: they
-- can hold data an analyst should not see. Analysts get the reasons and the counts through two
-- views without them; the raw values are for energy_quarantine_reader, a role without login
-- that an operator grants to the people who fix files at their source
-- (GRANT energy_quarantine_reader TO alice). It reads everything an analyst reads, plus them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'energy_quarantine_reader') THEN
        CREATE ROLE energy_quarantine_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END;
$$;

-- Each rejected row: which file and row, which column and rule, and for a conflict the reading
-- already stored (history, which analysts read anyway); not the values as sent.
CREATE VIEW v_rejected_rows AS
SELECT rejected_id, file_id, stream, source_path, row_number, column_name, kind, rule,
       stored_values, created_at
  FROM rejected_rows;

-- How often each rule rejected rows, per stream: rows, files, first and last time.
CREATE VIEW v_rejection_counts AS
SELECT stream, kind, column_name, rule, count(*) AS rows, count(DISTINCT file_id) AS files,
       min(created_at) AS first_seen, max(created_at) AS last_seen
  FROM rejected_rows
 GROUP BY stream, kind, column_name, rule;

REVOKE ALL ON rejected_rows FROM energy_analyst;
GRANT SELECT ON v_rejected_rows, v_rejection_counts TO energy_analyst;
GRANT energy_analyst TO energy_quarantine_reader;
GRANT SELECT ON rejected_rows TO energy_quarantine_reader;
