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

-- The minute bit of a timestamp within its UTC hour.
CREATE FUNCTION minute_bit(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1::bigint << extract(minute FROM ts AT TIME ZONE 'UTC')::integer
$$;

INSERT INTO meter_hourly_totals
SELECT meter_id, date_trunc('hour', ts, 'UTC'), sum(kwh_consumed_ac), sum(voltage), min(voltage),
       max(voltage), count(*), bit_or(minute_bit(ts))
  FROM meter_readings_history
 GROUP BY 1, 2;

INSERT INTO vehicle_hourly_totals
SELECT vehicle_id, date_trunc('hour', ts, 'UTC'), sum(kwh_delivered_dc), sum(battery_temp),
       count(*), bit_or(minute_bit(ts))
  FROM vehicle_readings_history
 GROUP BY 1, 2;

DROP TABLE meter_daily_totals, vehicle_daily_totals;

GRANT SELECT, INSERT, UPDATE ON meter_hourly_totals, vehicle_hourly_totals TO energy_loader;

-- A minute bitmap folded to intervals of `cadence` minutes (a divisor of 60): bit k is set when
-- any minute of interval k reported.
CREATE FUNCTION interval_bits(minutes bigint, cadence integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cadence = 1 THEN minutes ELSE (
        SELECT coalesce(bit_or(1::bigint << k), 0)
          FROM generate_series(0, 60 / cadence - 1) AS k
         WHERE (minutes >> (k * cadence)) & ((1::bigint << cadence) - 1) <> 0
    ) END
$$;

-- How an hour of one vehicle pairs with its meters, from interval bitmaps: 'none' when no
-- interval has the vehicle and every meter, 'whole' when all of them reported exactly the same
-- intervals (the hour's totals are then its paired totals), else 'partial' (its readings must be
-- read again to pair them interval by interval).
CREATE FUNCTION hour_pairing(
    vehicle_bits bigint, meters_and bigint, meters_or bigint, meters_present bigint,
    meters_paired bigint
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN vehicle_bits IS NULL OR meters_present IS DISTINCT FROM meters_paired
          OR vehicle_bits & meters_and = 0 THEN 'none'
        WHEN vehicle_bits = meters_and AND meters_or = meters_and THEN 'whole'
        ELSE 'partial'
    END
$$;

-- The status words, decided from the evidence in this order (README "Statuses"):
--   uncorrelated       no meter is paired with the vehicle
--   idle               no DC delivered and no AC consumed: the vehicle did not charge
--   no_ac_data         the paired meters sent no reading in the period
--   insufficient_data  the paired intervals carry less AC than min_paired_kwh while either raw
--                      total is above it, or carry no AC at all
--   implausible        paired DC / paired AC above 1.0
--   fault_suspected    paired DC / paired AC below the fault threshold
--   normal             otherwise
CREATE FUNCTION evidence_status(
    correlated boolean, raw_dc double precision, raw_ac double precision,
    meter_readings bigint, paired_dc double precision, paired_ac double precision,
    min_paired_kwh double precision, fault_threshold double precision
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN NOT correlated THEN 'uncorrelated'
        WHEN raw_dc = 0 AND raw_ac = 0 THEN 'idle'
        WHEN meter_readings = 0 THEN 'no_ac_data'
        WHEN paired_ac < min_paired_kwh
             AND (raw_ac > min_paired_kwh OR raw_dc > min_paired_kwh) THEN 'insufficient_data'
        WHEN paired_ac <= 0 THEN 'insufficient_data'
        WHEN paired_dc / paired_ac > 1.0 THEN 'implausible'
        WHEN paired_dc / paired_ac < fault_threshold THEN 'fault_suspected'
        ELSE 'normal'
    END
$$;

-- The smaller of the AC and DC shares of raw energy that fell in paired intervals; a side with
-- no raw energy has nothing to cover and does not count; NULL when neither has any.
CREATE FUNCTION energy_coverage(
    raw_dc double precision, raw_ac double precision, paired_dc double precision,
    paired_ac double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(
        CASE WHEN raw_dc > 0 THEN paired_dc / raw_dc END,
        CASE WHEN raw_ac > 0 THEN paired_ac / raw_ac END
    )
$$;

-- The first hour of history still kept (retention drops older days), NULL with no readings.
CREATE FUNCTION oldest_kept_hour() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least((SELECT min(hour) FROM meter_hourly_totals),
                 (SELECT min(hour) FROM vehicle_hourly_totals))
$$;

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

-- Retention also drops the hourly totals of the days it drops.
CREATE OR REPLACE FUNCTION drop_day_partitions_before(parent regclass, before_day date)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    child record;
    cutoff timestamptz := utc_hour_bound(before_day)::timestamptz;
BEGIN
    FOR child IN
        SELECT c.relname
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = parent
           AND c.relname ~ '_p[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') < before_day
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', child.relname);
        RETURN NEXT child.relname;
    END LOOP;
    IF parent = 'meter_readings_history'::regclass THEN
        DELETE FROM meter_hourly_totals WHERE hour < cutoff;
    ELSIF parent = 'vehicle_readings_history'::regclass THEN
        DELETE FROM vehicle_hourly_totals WHERE hour < cutoff;
    END IF;
END;
$$;

DROP FUNCTION vehicle_performance_24h(text, timestamptz, double precision);
DROP FUNCTION efficiency_status(boolean, double precision, double precision, double precision);

-- The original GET /v1/analytics/performance/:vehicleId over (as_of - 24 h, as_of], with the
-- raw totals, the totals over paired intervals and the status the evidence supports.
--
-- PL/pgSQL, each statement planned with its values (plan_cache_mode): the time bounds are then
-- constants when the statement is planned, so PostgreSQL prunes history to the hours the
-- statement reads and locks only those, for every caller (a prepared statement, a pooled
-- connection, an analyst's SQL). JIT costs more than these small queries take.
CREATE FUNCTION vehicle_performance_24h(
    p_vehicle_id text,
    p_as_of timestamptz DEFAULT now(),
    p_fault_threshold double precision DEFAULT 0.85,
    p_min_paired_kwh double precision DEFAULT 1.0,
    p_cadence_minutes integer DEFAULT 1
) RETURNS TABLE (
    vehicle_id              text,
    window_start            timestamptz,
    window_end              timestamptz,
    requested_as_of         timestamptz,
    kept_from               timestamptz,
    total_kwh_consumed_ac   numeric,
    total_kwh_delivered_dc  numeric,
    efficiency_ratio        numeric,
    average_battery_temp    numeric,
    record_count            bigint,
    meter_record_count      bigint,
    paired_kwh_consumed_ac  numeric,
    paired_kwh_delivered_dc numeric,
    paired_efficiency_ratio numeric,
    energy_coverage         numeric,
    status                  text,
    known_vehicle           boolean
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
DECLARE
    -- An as-of in the future is answered as of now: no reading can lie beyond it.
    v_end timestamptz := least(p_as_of, now());
    v_from timestamptz := v_end - interval '24 hours' + interval '1 microsecond';
    v_to timestamptz := v_end + interval '1 microsecond';  -- [v_from, v_to) = (end - 24 h, end]
    v_full_from timestamptz;
    v_full_to timestamptz;
    v_cadence interval := make_interval(mins => p_cadence_minutes);
    v_meters text[];
    v_kept timestamptz;
    v_partial timestamptz[];
    v_dc double precision;
    v_temp double precision;
    v_n bigint;
    v_ac double precision;
    v_mn bigint;
    v_pdc double precision;
    v_pac double precision;
    r record;
BEGIN
    IF p_cadence_minutes IS NULL OR p_cadence_minutes < 1 OR 60 % p_cadence_minutes <> 0 THEN
        RAISE EXCEPTION 'cadence_minutes must divide 60, got %', p_cadence_minutes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Whole hour buckets inside the window; the rest of the window is its two edges.
    v_full_from := date_trunc('hour', v_from + interval '1 hour' - interval '1 microsecond', 'UTC');
    v_full_to := date_trunc('hour', v_to, 'UTC');
    SELECT array_agg(c.meter_id ORDER BY c.meter_id) INTO v_meters
      FROM meter_vehicle_correlation c WHERE c.vehicle_id = p_vehicle_id;
    v_kept := oldest_kept_hour();
    IF v_meters IS NULL AND NOT EXISTS (
        SELECT 1 FROM vehicle_current_status s WHERE s.vehicle_id = p_vehicle_id
    ) THEN
        RETURN QUERY SELECT p_vehicle_id, v_end - interval '24 hours', v_end, p_as_of, v_kept,
            NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric, 0::bigint, 0::bigint,
            NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric, NULL::text, false;
        RETURN;
    END IF;
    IF v_kept IS NULL OR v_end < v_kept THEN
        -- Nothing of the window is kept: say so instead of zeros that read as an idle vehicle.
        RETURN QUERY SELECT p_vehicle_id, v_end - interval '24 hours', v_end, p_as_of, v_kept,
            NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric, 0::bigint, 0::bigint,
            NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric, 'no_kept_data'::text,
            true;
        RETURN;
    END IF;
    v_meters := coalesce(v_meters, '{}');

    WITH v AS (
        SELECT t.hour, t.kwh_delivered_dc AS dc, t.battery_temp_sum AS temp, t.readings AS n,
               interval_bits(t.minutes, p_cadence_minutes) AS bits
          FROM vehicle_hourly_totals t
         WHERE t.vehicle_id = p_vehicle_id AND t.hour >= v_full_from AND t.hour < v_full_to
    ), m AS (
        SELECT t.hour, sum(t.kwh_consumed_ac) AS ac, sum(t.readings) AS n,
               bit_and(interval_bits(t.minutes, p_cadence_minutes)) AS bits_and,
               bit_or(interval_bits(t.minutes, p_cadence_minutes)) AS bits_or,
               count(*) AS present
          FROM meter_hourly_totals t
         WHERE t.meter_id = ANY (v_meters) AND t.hour >= v_full_from AND t.hour < v_full_to
         GROUP BY t.hour
    ), hours AS (
        SELECT hour, v.dc, v.temp, v.n, m.ac, m.n AS mn,
               hour_pairing(v.bits, m.bits_and, m.bits_or, m.present,
                            cardinality(v_meters)) AS pairing
          FROM v FULL JOIN m USING (hour)
    )
    SELECT coalesce(sum(h.dc), 0), coalesce(sum(h.temp), 0), coalesce(sum(h.n), 0),
           coalesce(sum(h.ac), 0), coalesce(sum(h.mn), 0),
           coalesce(sum(h.dc) FILTER (WHERE h.pairing = 'whole'), 0),
           coalesce(sum(h.ac) FILTER (WHERE h.pairing = 'whole'), 0),
           coalesce(array_agg(h.hour) FILTER (WHERE h.pairing = 'partial'), '{}')
      INTO v_dc, v_temp, v_n, v_ac, v_mn, v_pdc, v_pac, v_partial
      FROM hours h;

    -- Raw readings: the edges count whole and pair interval by interval; an hour whose
    -- devices reported different intervals is already counted and only pairs here.
    FOR r IN
        SELECT e.lo, e.hi, true AS edge
          FROM (VALUES (v_from, least(v_full_from, v_to)), (greatest(v_full_to, v_from), v_to))
               AS e(lo, hi)
         WHERE e.lo < e.hi
        UNION ALL
        SELECT h, h + interval '1 hour', false FROM unnest(v_partial) AS h
    LOOP
        WITH v AS (
            SELECT date_bin(v_cadence, x.ts, timestamptz '2000-01-01 00:00+00') AS i,
                   sum(x.kwh_delivered_dc) AS dc, sum(x.battery_temp) AS temp, count(*) AS n
              FROM vehicle_readings_history x
             WHERE x.vehicle_id = p_vehicle_id AND x.ts >= r.lo AND x.ts < r.hi
             GROUP BY 1
        ), m AS (
            SELECT date_bin(v_cadence, x.ts, timestamptz '2000-01-01 00:00+00') AS i,
                   sum(x.kwh_consumed_ac) AS ac, count(*) AS n,
                   count(DISTINCT x.meter_id) AS present
              FROM meter_readings_history x
             WHERE x.meter_id = ANY (v_meters) AND x.ts >= r.lo AND x.ts < r.hi
             GROUP BY 1
        ), paired AS (
            SELECT v.dc, v.temp, v.n, m.ac, m.n AS mn,
                   v.i IS NOT NULL AND m.present = cardinality(v_meters) AS both_sides
              FROM v FULL JOIN m USING (i)
        )
        SELECT v_dc + CASE WHEN r.edge THEN coalesce(sum(p.dc), 0) ELSE 0 END,
               v_temp + CASE WHEN r.edge THEN coalesce(sum(p.temp), 0) ELSE 0 END,
               v_n + CASE WHEN r.edge THEN coalesce(sum(p.n), 0) ELSE 0 END,
               v_ac + CASE WHEN r.edge THEN coalesce(sum(p.ac), 0) ELSE 0 END,
               v_mn + CASE WHEN r.edge THEN coalesce(sum(p.mn), 0) ELSE 0 END,
               v_pdc + coalesce(sum(p.dc) FILTER (WHERE p.both_sides), 0),
               v_pac + coalesce(sum(p.ac) FILTER (WHERE p.both_sides), 0)
          INTO v_dc, v_temp, v_n, v_ac, v_mn, v_pdc, v_pac
          FROM paired p;
    END LOOP;

    RETURN QUERY SELECT
        p_vehicle_id, v_end - interval '24 hours', v_end, p_as_of, v_kept,
        round(v_ac::numeric, 4), round(v_dc::numeric, 4),
        CASE WHEN v_ac > 0 THEN round((v_dc / v_ac)::numeric, 4) END,
        CASE WHEN v_n > 0 THEN round((v_temp / v_n)::numeric, 2) END,
        v_n, v_mn,
        round(v_pac::numeric, 4), round(v_pdc::numeric, 4),
        CASE WHEN v_pac > 0 THEN round((v_pdc / v_pac)::numeric, 4) END,
        round(energy_coverage(v_dc, v_ac, v_pdc, v_pac)::numeric, 4),
        evidence_status(cardinality(v_meters) > 0, v_dc, v_ac, v_mn, v_pdc, v_pac,
                        p_min_paired_kwh, p_fault_threshold),
        true;
END;
$$;
