-- posts and users rows are wide: raw_data alone is ~9 KB a post. ClickHouse merges parts
-- row by row ("horizontal") until a merge has vertical_merge_algorithm_min_rows_to_activate
-- (131,072) rows, so every merge of the small parts an ingesting counter writes held blocks of
-- whole rows, raw_data included: ~300 MiB of merge memory after 50k posts, measured with chdb.
-- Merged column by column instead, the same merges stayed under ~70 MiB.
ALTER TABLE posts MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
ALTER TABLE users MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1;
