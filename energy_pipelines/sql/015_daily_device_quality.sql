-- Data quality per device and UTC day (README "Data quality"): how much of the day a device
-- reported, its gaps, frozen values, spikes, state of charge falling while charging, and an
-- estimate of the energy short gaps probably held. The rows flag kept readings; history keeps
-- the readings as loaded and no status reads an estimate.

CREATE TABLE daily_device_quality (
    stream                  text NOT NULL CHECK (stream IN ('meter', 'vehicle')),
    device_id               text COLLATE "C" NOT NULL,
    day                     date NOT NULL,
    cadence_minutes         integer NOT NULL,
    -- [expected_from, expected_to): the intervals the device was expected to report.
    expected_from           timestamptz NOT NULL,
    expected_to             timestamptz NOT NULL,
    first_interval          timestamptz NOT NULL,
    last_interval           timestamptz NOT NULL,
    expected_intervals      integer NOT NULL,
    received_intervals      integer NOT NULL,
    coverage                double precision NOT NULL,
    gap_count               integer NOT NULL,
    longest_gap_minutes     integer NOT NULL,
    frozen_runs             integer NOT NULL,
    frozen_voltage_runs     integer,  -- meters; NULL for vehicles
    spike_count             integer NOT NULL,
    spike_reference_kwh     double precision,  -- NULL: no interval energy to compare with
    max_interval_kwh        double precision NOT NULL,
    soc_drop_while_charging integer,  -- vehicles; NULL for meters
    estimated_gap_count     integer NOT NULL,
    estimated_missing_kwh   double precision NOT NULL,
    computed_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, device_id, day)
);
CREATE INDEX daily_device_quality_day ON daily_device_quality (day, stream);

-- Where each device's fold of the day stands (analytics/quality.py): everything before
-- `through` summarized in one row, so a refresh of the current day reads only the readings
-- from `through` on. `readings` counts the history rows folded in; when the hourly totals of
-- the hours before `through` count more, late readings arrived there and the device's day is
-- folded again from its start.
CREATE TABLE device_quality_state (
    stream            text NOT NULL CHECK (stream IN ('meter', 'vehicle')),
    day               date NOT NULL,
    device_id         text COLLATE "C" NOT NULL,
    through           timestamptz NOT NULL,
    readings          bigint NOT NULL,
    first_idx         integer NOT NULL,
    last_idx          integer NOT NULL,
    last_kwh          double precision NOT NULL,
    last_value        double precision NOT NULL,
    received          integer NOT NULL,
    gap_count         integer NOT NULL,
    longest_gap       integer NOT NULL,
    estimated_gaps    integer NOT NULL,
    estimated_kwh     double precision NOT NULL,
    frozen_runs       integer NOT NULL,
    frozen_value_runs integer NOT NULL,
    reading_run       integer NOT NULL,
    value_run         integer NOT NULL,
    soc_drops         integer NOT NULL,
    hour_max          double precision[] NOT NULL,
    top_kwh           double precision[] NOT NULL,
    PRIMARY KEY (stream, day, device_id)
);

GRANT SELECT, INSERT, DELETE ON daily_device_quality, device_quality_state TO energy_loader;
