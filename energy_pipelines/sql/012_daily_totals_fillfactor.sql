-- Each file's load updates the totals row of every device it carries (with 24 hourly files,
-- each row is updated 23 times a day). With room left on each page an update stays on its page
-- (a HOT update: no new index entry, the old version pruned in place), which makes the upserts
-- cheaper and keeps the tables from bloating between vacuums.
ALTER TABLE meter_daily_totals SET (fillfactor = 50);
ALTER TABLE vehicle_daily_totals SET (fillfactor = 50);
