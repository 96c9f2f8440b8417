-- What the daily tables and the 24-hour summary judge efficiency from (docs/analytics.md): the
-- minute bitmaps of the hourly totals (meter_hourly_totals, vehicle_hourly_totals), how an hour
-- of a vehicle pairs with its meters, and the status words.
--
-- An interval counts as paired when the vehicle and every meter paired with it reported in it;
-- an hour whose devices all reported the same minutes is paired whole, so its totals are its
-- paired totals and no reading needs to be read again. A bucket is the UTC hour
-- [hour, hour + 1 h) of the readings' timestamps; bit k of `minutes` is set when a reading fell
-- in minute k of it.

-- The minute bit of a timestamp within its UTC hour.
CREATE OR REPLACE FUNCTION minute_bit(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1::bigint << extract(minute FROM ts AT TIME ZONE 'UTC')::integer
$$;

-- A minute bitmap folded to intervals of `cadence` minutes (a divisor of 60): bit k is set when
-- any minute of interval k reported.
CREATE OR REPLACE FUNCTION interval_bits(minutes bigint, cadence integer) RETURNS bigint
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
CREATE OR REPLACE FUNCTION hour_pairing(
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
CREATE OR REPLACE FUNCTION evidence_status(
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
CREATE OR REPLACE FUNCTION energy_coverage(
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
CREATE OR REPLACE FUNCTION oldest_kept_hour() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least((SELECT min(hour) FROM meter_hourly_totals),
                 (SELECT min(hour) FROM vehicle_hourly_totals))
$$;
