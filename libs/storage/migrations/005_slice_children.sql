-- Dense slices are cut finer by the scraper: a slice may hand the rest of its window to
-- `children` hour slices, each of which names its parent. The dedup-counter completes a task
-- when every slice, the finer ones included, has ended.
ALTER TABLE task_slices ADD COLUMN IF NOT EXISTS parent_slice_id Nullable(String);
ALTER TABLE task_slices ADD COLUMN IF NOT EXISTS children UInt32 DEFAULT 0;
