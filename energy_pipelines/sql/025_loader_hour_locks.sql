-- Writers of one stream that touch different UTC hours load side by side. A batch takes its
-- stream's row of loader_locks FOR SHARE, then the row here of each hour it writes, FOR UPDATE,
-- in hour order: batches of different hours never wait for each other, batches of the same hour
-- one after the other. Work on the whole stream (building the keys of its new tables) takes the
-- stream's row FOR UPDATE and so waits for every batch in flight. Rows, not advisory locks, for
-- the reason 020 gives; a batch adds the rows of hours it is the first to write.
CREATE TABLE loader_hour_locks (
    stream text NOT NULL CHECK (stream IN ('meter', 'vehicle', 'correlation')),
    hour   timestamptz NOT NULL,
    PRIMARY KEY (stream, hour)
);

GRANT SELECT, INSERT, UPDATE ON loader_hour_locks TO energy_loader;
