-- Daily analytics (the 24-hour summary: repeatable/vehicle_performance.sql).

CREATE TABLE daily_vehicle_efficiency (
    day                    date NOT NULL,
    vehicle_id             text NOT NULL,
    total_kwh_delivered_dc double precision NOT NULL,
    -- NULL when no meter is paired with the vehicle; 0 when paired meters sent nothing.
    total_kwh_consumed_ac  double precision,
    efficiency_ratio       double precision,
    avg_battery_temp       double precision NOT NULL,
    vehicle_record_count   bigint NOT NULL,
    meter_record_count     bigint NOT NULL,
    meter_ids              text[] NOT NULL,
    shared_meter           boolean NOT NULL,
    status                 text NOT NULL CHECK (
        status IN ('normal', 'fault_suspected', 'implausible', 'no_ac_data', 'uncorrelated')
    ),
    computed_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, vehicle_id)
);
CREATE INDEX daily_vehicle_efficiency_vehicle ON daily_vehicle_efficiency (vehicle_id, day);

CREATE TABLE daily_meter_usage (
    day                   date NOT NULL,
    meter_id              text NOT NULL,
    total_kwh_consumed_ac double precision NOT NULL,
    avg_voltage           double precision NOT NULL,
    min_voltage           double precision NOT NULL,
    max_voltage           double precision NOT NULL,
    record_count          bigint NOT NULL,
    computed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, meter_id)
);
CREATE INDEX daily_meter_usage_meter ON daily_meter_usage (meter_id, day);

-- The highest manifest file_id whose touched days have been handed to daily materialization.
CREATE TABLE daily_analytics_watermark (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_file_id bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz
);
INSERT INTO daily_analytics_watermark DEFAULT VALUES;
