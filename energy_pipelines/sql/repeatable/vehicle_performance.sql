-- The original GET /v1/analytics/performance/:vehicleId over (as_of - 24 h, as_of], with the
-- raw totals, the totals over paired intervals and the status the evidence supports
-- (evidence.sql). Full hours come from the hourly totals: at most 25 rows per device, so the
-- cost follows the window, not the number of partitions; history is read only for the two
-- partial hours at the window's edges and for an hour whose devices reported different minutes.
--
-- Only what touches history is planned each time: those reads run through EXECUTE (planned with
-- the window's bounds as values, so history is pruned to the hours read and only those are
-- locked, whoever calls: a prepared statement, a pooled connection, an analyst's SQL), while the
-- statements on the small tables keep cached plans; planning every statement on every call cost
-- more than running them (bench --reads: PostgreSQL's CPU per summary). JIT costs more than
-- these small queries take.
CREATE OR REPLACE FUNCTION vehicle_performance_24h(
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
    e_dc double precision;
    e_temp double precision;
    e_n bigint;
    e_ac double precision;
    e_mn bigint;
    e_pdc double precision;
    e_pac double precision;
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

    -- Raw readings, read by EXECUTE: planned each time with its bounds as values, so history
    -- is pruned to the hours read and only those are locked, for every caller; the statements
    -- on small tables above keep their cached plans.
    FOR r IN
        SELECT e.lo, e.hi, true AS edge
          FROM (VALUES (v_from, least(v_full_from, v_to)), (greatest(v_full_to, v_from), v_to))
               AS e(lo, hi)
         WHERE e.lo < e.hi
        UNION ALL
        SELECT h, h + interval '1 hour', false FROM unnest(v_partial) AS h
    LOOP
        EXECUTE $raw$
            WITH v AS (
                SELECT date_bin($5, x.ts, timestamptz '2000-01-01 00:00+00') AS i,
                       sum(x.kwh_delivered_dc) AS dc, sum(x.battery_temp) AS temp,
                       count(*) AS n
                  FROM vehicle_readings_history x
                 WHERE x.vehicle_id = $1 AND x.ts >= $2 AND x.ts < $3
                 GROUP BY 1
            ), m AS (
                SELECT date_bin($5, x.ts, timestamptz '2000-01-01 00:00+00') AS i,
                       sum(x.kwh_consumed_ac) AS ac, count(*) AS n,
                       count(DISTINCT x.meter_id) AS present
                  FROM meter_readings_history x
                 WHERE x.meter_id = ANY ($4) AND x.ts >= $2 AND x.ts < $3
                 GROUP BY 1
            )
            SELECT coalesce(sum(v.dc), 0), coalesce(sum(v.temp), 0), coalesce(sum(v.n), 0),
                   coalesce(sum(m.ac), 0), coalesce(sum(m.n), 0),
                   coalesce(sum(v.dc) FILTER (WHERE v.i IS NOT NULL AND m.present = $6), 0),
                   coalesce(sum(m.ac) FILTER (WHERE v.i IS NOT NULL AND m.present = $6), 0)
              FROM v FULL JOIN m USING (i)
        $raw$
        INTO e_dc, e_temp, e_n, e_ac, e_mn, e_pdc, e_pac
        USING p_vehicle_id, r.lo, r.hi, v_meters, v_cadence, cardinality(v_meters);
        IF r.edge THEN
            -- The edges count whole; an hour whose devices reported different intervals is
            -- counted already and only pairs here.
            v_dc := v_dc + e_dc;
            v_temp := v_temp + e_temp;
            v_n := v_n + e_n;
            v_ac := v_ac + e_ac;
            v_mn := v_mn + e_mn;
        END IF;
        v_pdc := v_pdc + e_pdc;
        v_pac := v_pac + e_pac;
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
