-- Notes on handled files: what the pipeline noticed about a file beside its outcome (a
-- modification time in the future, a file that changed after it was loaded). A manifest row
-- never changes once its transaction has committed; a note observed afterwards is a row here.
CREATE TABLE ingested_file_notes (
    file_id  bigint NOT NULL REFERENCES ingested_files (file_id),
    noted_at timestamptz NOT NULL DEFAULT now(),
    note     text NOT NULL
);
CREATE INDEX ingested_file_notes_file ON ingested_file_notes (file_id);

GRANT SELECT, INSERT ON ingested_file_notes TO energy_loader;

-- A rejected file whose move to _quarantine failed stays in landing; the next run finds its
-- manifest row by stream and content (and path) instead of adding a second one.
CREATE INDEX ingested_files_quarantined ON ingested_files (stream, sha256)
    WHERE status = 'quarantined';

-- Which loaded files each day's daily tables were recomputed after. A daily asset reads each
-- stream's newest committed file id before it recomputes a day (files of one stream commit in
-- id order, so it sees every file up to that id) and records it here when it is done. A
-- stream's daily watermark then moves past a file only once every day the file made stale has
-- both daily tables recomputed after it: a daily run that never happened or failed leaves its
-- days to be requested again.
CREATE TABLE daily_refreshes (
    day           date NOT NULL,
    asset         text NOT NULL,
    stream        text NOT NULL CHECK (stream IN ('meter', 'vehicle', 'correlation')),
    up_to_file_id bigint NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, stream, asset)
);

GRANT SELECT, INSERT, UPDATE ON daily_refreshes TO energy_loader;
