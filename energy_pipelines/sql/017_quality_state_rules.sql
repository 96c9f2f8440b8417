-- The rules a kept fold of a day was made with (cadence, frozen-run length, longest estimated
-- gap): a fold made with other rules is not folded on, the day is folded again from its start.
-- Folds kept before this column existed have none and are folded again once.
ALTER TABLE device_quality_state ADD COLUMN rules text NOT NULL DEFAULT '';
