-- Per-device hourly totals with a bitmap of the minutes that reported, kept by every load; the
-- daily tables and the 24-hour summary read them instead of history, and judge efficiency over
-- paired intervals only.
--
-- Why hourly: a summary over (as_of - 24 h, as_of] reads at most 25 rows per device here and
-- touches history only for the two partial hours at the window's edges (and for an hour whose
-- devices reported different minutes), so its cost follows the window, not the number of
-- partitions. Why minute bitmaps: an interval counts as paired when the vehicle and every meter
-- paired with it reported in it; an hour whose devices all reported the same minutes is paired
-- whole, so its totals are its paired totals and no reading needs to be read again.
--
-- A bucket is the UTC hour [hour, hour + 1 h) of the readings' timestamps, like the history
-- leaves and the UTC days; bit k of `minutes` is set when a reading fell in minute k of it.

CREATE TABLE meter_hourly_totals (
    meter_id        text COLLATE "C" NOT NULL,
    hour            timestamptz NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage_sum     double precision NOT NULL,
    voltage_min     double precision NOT NULL,
    voltage_max     double precision NOT NULL,
    readings        bigint NOT NULL,
    minutes         bigint NOT NULL,
    PRIMARY KEY (meter_id, hour)
) WITH (fillfactor = 70);
CREATE INDEX meter_hourly_totals_hour ON meter_hourly_totals (hour);

CREATE TABLE vehicle_hourly_totals (
    vehicle_id       text COLLATE "C" NOT NULL,
    hour             timestamptz NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp_sum double precision NOT NULL,
    readings         bigint NOT NULL,
    minutes          bigint NOT NULL,
    PRIMARY KEY (vehicle_id, hour)
) WITH (fillfactor = 70);
CREATE INDEX vehicle_hourly_totals_hour ON vehicle_hourly_totals (hour);

INSERT INTO meter_hourly_totals
SELECT meter_id, date_trunc('hour', ts, 'UTC'), sum(kwh_consumed_ac), sum(voltage), min(voltage),
       max(voltage), count(*),
       bit_or(1::bigint << extract(minute FROM ts AT TIME ZONE 'UTC')::integer)
  FROM meter_readings_history
 GROUP BY 1, 2;

INSERT INTO vehicle_hourly_totals
SELECT vehicle_id, date_trunc('hour', ts, 'UTC'), sum(kwh_delivered_dc), sum(battery_temp),
       count(*), bit_or(1::bigint << extract(minute FROM ts AT TIME ZONE 'UTC')::integer)
  FROM vehicle_readings_history
 GROUP BY 1, 2;

DROP TABLE meter_daily_totals, vehicle_daily_totals;

GRANT SELECT, INSERT, UPDATE ON meter_hourly_totals, vehicle_hourly_totals TO energy_loader;

ALTER TABLE daily_vehicle_efficiency
    ADD COLUMN paired_kwh_delivered_dc double precision,
    ADD COLUMN paired_kwh_consumed_ac double precision,
    ADD COLUMN paired_efficiency_ratio double precision,
    ADD COLUMN energy_coverage double precision,
    DROP CONSTRAINT daily_vehicle_efficiency_status_check,
    ADD CONSTRAINT daily_vehicle_efficiency_status_check CHECK (status IN (
        'normal', 'fault_suspected', 'implausible', 'insufficient_data', 'idle', 'no_ac_data',
        'uncorrelated'
    ));

-- The summary judges from these totals (repeatable/evidence.sql,
-- repeatable/vehicle_performance.sql); its first form and its status function go.
DROP FUNCTION IF EXISTS vehicle_performance_24h(text, timestamptz, double precision);
DROP FUNCTION IF EXISTS efficiency_status(boolean, double precision, double precision,
    double precision);
