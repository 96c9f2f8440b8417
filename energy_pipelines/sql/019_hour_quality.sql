-- What a day's data-quality rules need from one device's hour of readings (analytics/
-- quality_hours.py), written by the load that inserts the hour's readings: a refresh of
-- daily_device_quality composes these summaries instead of reading the readings back.
--
-- A summary stands for the hour only while `readings` equals the hour's count in the hourly
-- totals (sql/014): a later load that adds readings to the hour keeps the first summary
-- (ON CONFLICT DO NOTHING), the counts differ, and a refresh reads that hour from history. It
-- also stands only for the rules it was made with (cadence, frozen-run length, longest
-- estimated gap). Slots are intervals within the hour; the gaps, runs and SoC falls counted
-- here lie wholly inside the hour, the runs at its edges are kept as lengths because they may
-- join a neighbouring hour's.

CREATE TABLE device_hour_quality (
    stream                      text NOT NULL CHECK (stream IN ('meter', 'vehicle')),
    hour                        timestamptz NOT NULL,
    device_id                   text COLLATE "C" NOT NULL,
    cadence_minutes             integer NOT NULL,
    frozen_min_intervals        integer NOT NULL,
    max_estimated_gap_intervals integer NOT NULL,
    readings                    bigint NOT NULL,
    received                    integer NOT NULL,
    first_slot                  integer NOT NULL,
    last_slot                   integer NOT NULL,
    first_kwh                   double precision NOT NULL,
    first_value                 double precision NOT NULL,
    last_kwh                    double precision NOT NULL,
    last_value                  double precision NOT NULL,
    gap_count                   integer NOT NULL,
    longest_gap                 integer NOT NULL,
    estimated_gaps              integer NOT NULL,
    estimated_kwh               double precision NOT NULL,
    lead_run                    integer NOT NULL,
    trail_run                   integer NOT NULL,
    frozen                      integer NOT NULL,
    value_lead_run              integer NOT NULL,
    value_trail_run             integer NOT NULL,
    value_frozen                integer NOT NULL,
    soc_drops                   integer NOT NULL,
    -- The greatest common divisor of the steps between the hour's received intervals (0:
    -- fewer than two intervals).
    step_gcd                    integer NOT NULL,
    -- The hour's 16 largest interval energies, largest first, as big-endian float8
    -- (-Infinity where the hour has fewer intervals).
    top_kwh                     bytea NOT NULL CHECK (length(top_kwh) = 128),
    PRIMARY KEY (stream, hour, device_id)
);

GRANT SELECT, INSERT ON device_hour_quality TO energy_loader;

-- The day's reporting step: the greatest common divisor of the minutes between a device's
-- consecutive received intervals (NULL with fewer than two). It equals cadence_minutes for a
-- device on the configured cadence, gaps or not; a multiple of it means every reading of the
-- day lies on a coarser grid: the device reports less often than the setting says.
ALTER TABLE daily_device_quality ADD COLUMN reporting_step_minutes integer;
-- The kept fold carries the step so far; folds kept before it are folded again once (their
-- layout in `rules` is an older one).
ALTER TABLE device_quality_state ADD COLUMN step_gcd integer NOT NULL DEFAULT 0;

