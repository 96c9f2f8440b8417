-- The ledger of the repeatable SQL files (repeatable/*.sql: the current text of every function
-- and view, each statement CREATE OR REPLACE): what each file was last applied with. A file is
-- applied again when its checksum differs, or when numbered migrations were applied after it
-- (one may have dropped a view to change a table: load/migrations.py).
CREATE TABLE schema_repeatables (
    name          text PRIMARY KEY,
    sha256        text NOT NULL,
    -- The newest numbered migration applied when the file was.
    after_version integer NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now()
);

-- Every process checks that nothing is pending before its first run, the loader's too.
GRANT SELECT ON schema_repeatables TO energy_loader;
