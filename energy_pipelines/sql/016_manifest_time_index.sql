-- Each load asks the manifest whether any loaded file of its stream overlaps its time range
-- (may_overlap_history in load/history.py). Gateways drop tens of thousands of files a day:
-- without an index that question scans every file ever loaded, so a load's cost would grow with
-- history. Recent files are the ones whose max_ts reaches a new batch's range.
CREATE INDEX ingested_files_loaded_time ON ingested_files (stream, max_ts)
    WHERE status = 'loaded' AND rows_loaded > 0;
