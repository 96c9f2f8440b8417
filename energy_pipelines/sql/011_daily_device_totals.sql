-- Running per-day, per-device totals, added to in each file's load transaction from the rows it
-- inserted. The daily tables are computed from these (one row per device and day) instead of
-- scanning the day's history partitions (7 M readings per stream): a day's refresh costs the
-- same whatever the size of history or of the day. Retention keeps them, like the daily tables.
-- Float sums are added file by file, so a total may differ from a fresh sum over history in the
-- last bits (about 1e-15 relative).
CREATE TABLE meter_daily_totals (
    day             date NOT NULL,
    meter_id        text COLLATE "C" NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage_sum     double precision NOT NULL,
    voltage_min     double precision NOT NULL,
    voltage_max     double precision NOT NULL,
    readings        bigint NOT NULL,
    PRIMARY KEY (day, meter_id)
);

CREATE TABLE vehicle_daily_totals (
    day              date NOT NULL,
    vehicle_id       text COLLATE "C" NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp_sum double precision NOT NULL,
    readings         bigint NOT NULL,
    PRIMARY KEY (day, vehicle_id)
);

-- Readings already in history.
INSERT INTO meter_daily_totals
SELECT (ts AT TIME ZONE 'UTC')::date, meter_id, sum(kwh_consumed_ac), sum(voltage), min(voltage),
       max(voltage), count(*)
  FROM meter_readings_history
 GROUP BY 1, 2;

INSERT INTO vehicle_daily_totals
SELECT (ts AT TIME ZONE 'UTC')::date, vehicle_id, sum(kwh_delivered_dc), sum(battery_temp), count(*)
  FROM vehicle_readings_history
 GROUP BY 1, 2;

GRANT SELECT, INSERT, UPDATE ON meter_daily_totals, vehicle_daily_totals TO energy_loader;
