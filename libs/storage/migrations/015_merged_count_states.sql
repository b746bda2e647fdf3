-- The exact counts' sets (migration 013) stay merged (issue 17). Every insert adds a part
-- holding one uniqExact state per key; a read unions every state of its key. The merge
-- selector leaves parts of unequal size apart for long (a store fresh from a 10M-post
-- collection had 6 states per task: a task's statistics took 4x longer than with one, measured
-- side by side on the same sets). Parts older than two minutes are now merged regardless,
-- so a read unions the big merged state and at most two minutes of small ones; a merge
-- rewrites the table's states (~16 bytes per post id), in the background.
ALTER TABLE task_counts MODIFY SETTING min_age_to_force_merge_seconds = 120, min_age_to_force_merge_on_partition_only = 0;
ALTER TABLE keyword_month_counts MODIFY SETTING min_age_to_force_merge_seconds = 120, min_age_to_force_merge_on_partition_only = 0;
