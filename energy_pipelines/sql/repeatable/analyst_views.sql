-- Views for analysts (energy_analyst reads every table; docs/operations.md "Roles").

-- Each vehicle's latest computed day with its status.
CREATE OR REPLACE VIEW v_fleet_efficiency_latest AS
SELECT DISTINCT ON (vehicle_id)
       vehicle_id, day, efficiency_ratio, status, total_kwh_delivered_dc, total_kwh_consumed_ac,
       shared_meter, meter_ids, computed_at
  FROM daily_vehicle_efficiency
 ORDER BY vehicle_id, day DESC;

-- Raw quarantined values (rejected_rows.raw_values) are whatever a gateway sent, unchecked: they
-- can hold data an analyst should not see. Analysts get the reasons and the counts through the
-- two views below; the raw values are for energy_quarantine_reader.

-- Each rejected row: which file and row, which column and rule, and for a conflict the reading
-- already stored (history, which analysts read anyway); not the values as sent.
CREATE OR REPLACE VIEW v_rejected_rows AS
SELECT rejected_id, file_id, stream, source_path, row_number, column_name, kind, rule,
       stored_values, created_at
  FROM rejected_rows;

-- How often each rule rejected rows, per stream: rows, files, first and last time.
CREATE OR REPLACE VIEW v_rejection_counts AS
SELECT stream, kind, column_name, rule, count(*) AS rows, count(DISTINCT file_id) AS files,
       min(created_at) AS first_seen, max(created_at) AS last_seen
  FROM rejected_rows
 GROUP BY stream, kind, column_name, rule;

GRANT SELECT ON v_fleet_efficiency_latest TO energy_analyst, energy_loader;
GRANT SELECT ON v_rejected_rows, v_rejection_counts TO energy_analyst;
