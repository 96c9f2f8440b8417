-- Writers of one stream are serialized by locking that stream's row here (SELECT ... FOR UPDATE),
-- not by an advisory lock: any role may take any advisory lock, so an analyst's session could
-- stall ingest, while locking a row needs UPDATE on its table, which only the loader (and the
-- owner) has. The loader bounds its wait with lock_timeout and names the holder when it gives up.
CREATE TABLE loader_locks (
    stream text PRIMARY KEY CHECK (stream IN ('meter', 'vehicle', 'correlation'))
);
INSERT INTO loader_locks (stream) VALUES ('meter'), ('vehicle'), ('correlation');

GRANT SELECT, UPDATE ON loader_locks TO energy_loader;
