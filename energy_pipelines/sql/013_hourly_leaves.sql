-- A new day's partition of history partitioned by UTC hour, one leaf per hour, when the files
-- that open it bring many readings per hour: functions only (repeatable/history_partitions.sql).
-- A day loaded before it keeps its single table. The loader reaches a day's partition through
-- those functions only.
DROP FUNCTION IF EXISTS finish_pending_days(regclass);
DROP FUNCTION IF EXISTS ensure_day_partition(regclass, date);
