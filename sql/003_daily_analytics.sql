-- Daily analytics and the 24-hour performance summary.

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

-- One definition of the status words, shared by the daily table and the 24-hour summary.
CREATE FUNCTION efficiency_status(
    correlated boolean, kwh_ac double precision, ratio double precision,
    fault_threshold double precision
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN NOT correlated THEN 'uncorrelated'
        WHEN kwh_ac IS NULL OR kwh_ac = 0 THEN 'no_ac_data'
        WHEN ratio > 1.0 THEN 'implausible'
        WHEN ratio < fault_threshold THEN 'fault_suspected'
        ELSE 'normal'
    END
$$;

-- The original GET /v1/analytics/performance/:vehicleId. Window (as_of - 24 h, as_of] for both
-- streams; AC sums every meter paired with the vehicle. A single-SELECT SQL function, so the
-- planner inlines it and prunes partitions by the window.
CREATE FUNCTION vehicle_performance_24h(
    p_vehicle_id text,
    p_as_of timestamptz DEFAULT now(),
    p_fault_threshold double precision DEFAULT 0.85
) RETURNS TABLE (
    vehicle_id             text,
    window_start           timestamptz,
    window_end             timestamptz,
    total_kwh_consumed_ac  numeric,
    total_kwh_delivered_dc numeric,
    efficiency_ratio       numeric,
    average_battery_temp   numeric,
    record_count           bigint,
    status                 text,
    known_vehicle          boolean
)
LANGUAGE sql STABLE AS $$
    WITH vehicle AS (
        SELECT coalesce(sum(v.kwh_delivered_dc), 0) AS dc, avg(v.battery_temp) AS temp,
               count(*) AS n
          FROM vehicle_readings_history v
         WHERE v.vehicle_id = p_vehicle_id
           AND v.ts > p_as_of - interval '24 hours' AND v.ts <= p_as_of
    ), pairing AS (
        SELECT c.meter_id FROM meter_vehicle_correlation c WHERE c.vehicle_id = p_vehicle_id
    ), meter AS (
        SELECT coalesce(sum(m.kwh_consumed_ac), 0) AS ac
          FROM meter_readings_history m
         WHERE m.meter_id IN (SELECT meter_id FROM pairing)
           AND m.ts > p_as_of - interval '24 hours' AND m.ts <= p_as_of
    )
    SELECT p_vehicle_id,
           p_as_of - interval '24 hours',
           p_as_of,
           round(meter.ac::numeric, 4),
           round(vehicle.dc::numeric, 4),
           CASE WHEN meter.ac > 0 THEN round((vehicle.dc / meter.ac)::numeric, 4) END,
           round(vehicle.temp::numeric, 2),
           vehicle.n,
           efficiency_status(
               EXISTS (SELECT 1 FROM pairing), meter.ac,
               CASE WHEN meter.ac > 0 THEN vehicle.dc / meter.ac END, p_fault_threshold
           ),
           EXISTS (SELECT 1 FROM vehicle_current_status s WHERE s.vehicle_id = p_vehicle_id)
               OR EXISTS (SELECT 1 FROM pairing)
      FROM vehicle, meter
$$;

-- The highest manifest file_id whose touched days have been handed to daily materialization.
CREATE TABLE daily_analytics_watermark (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_file_id bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz
);
INSERT INTO daily_analytics_watermark DEFAULT VALUES;
