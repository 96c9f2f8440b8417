-- Per loaded file, each device's latest inserted reading: what the hot-status refresh folds in,
-- so a refresh reads a few thousand rows instead of scanning the new files' history.
CREATE TABLE meter_status_candidates (
    file_id         bigint NOT NULL,
    meter_id        text NOT NULL,
    ts              timestamptz NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage         double precision NOT NULL
);
CREATE INDEX meter_status_candidates_file ON meter_status_candidates (file_id);

CREATE TABLE vehicle_status_candidates (
    file_id          bigint NOT NULL,
    vehicle_id       text NOT NULL,
    ts               timestamptz NOT NULL,
    soc              double precision NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp     double precision NOT NULL
);
CREATE INDEX vehicle_status_candidates_file ON vehicle_status_candidates (file_id);
