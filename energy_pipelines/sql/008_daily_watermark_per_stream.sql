-- The daily watermark per stream. File ids of one stream commit in order (its loads are
-- serialized), but two streams load at once: a single watermark over all ids could move past a
-- lower id another stream had not committed yet, and that file's days would never refresh.
CREATE TABLE daily_analytics_watermarks (
    stream       text PRIMARY KEY CHECK (stream IN ('meter', 'vehicle', 'correlation')),
    last_file_id bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz
);
INSERT INTO daily_analytics_watermarks (stream, last_file_id)
SELECT stream, w.last_file_id
  FROM daily_analytics_watermark w, unnest(ARRAY['meter', 'vehicle', 'correlation']) AS stream;
DROP TABLE daily_analytics_watermark;

GRANT SELECT, UPDATE ON daily_analytics_watermarks TO energy_loader;
