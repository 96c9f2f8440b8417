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
