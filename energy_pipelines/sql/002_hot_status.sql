-- Hot store: the latest reading per device, for dashboards.

CREATE TABLE meter_current_status (
    meter_id        text PRIMARY KEY,
    ts              timestamptz NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage         double precision NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vehicle_current_status (
    vehicle_id       text PRIMARY KEY,
    ts               timestamptz NOT NULL,
    soc              double precision NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp     double precision NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Per stream, the highest manifest file_id whose readings are folded into the status table.
-- Loads of one stream are serialized, so file ids of a stream commit in increasing order.
CREATE TABLE hot_status_watermark (
    stream       text PRIMARY KEY CHECK (stream IN ('meter', 'vehicle')),
    last_file_id bigint NOT NULL DEFAULT 0,
    refreshed_at timestamptz
);
INSERT INTO hot_status_watermark (stream) VALUES ('meter'), ('vehicle');
