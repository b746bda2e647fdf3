-- The data API's filters at millions of posts (issue 17), by ClickHouse's own means:
-- * content_text: a full-text (inverted) index of the post's text, lower-cased, split on
--   non-alphanumerics. `hasAllTokens(post_content, 'kw')` reads the matching rows from the
--   index's posting lists instead of scanning every post's text, so a keyword with a million
--   matches is counted exactly without reading post_content at all.
-- * author_lc: a bloom filter on the lower-cased handle, so a user's posts read only the
--   granules that hold them.
-- MATERIALIZE builds both for the posts stored before this migration (a background mutation).
ALTER TABLE posts ADD INDEX IF NOT EXISTS content_text post_content TYPE text(tokenizer = splitByNonAlpha, preprocessor = lower(post_content));
ALTER TABLE posts ADD INDEX IF NOT EXISTS author_lc lower(author_handle) TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE posts MATERIALIZE INDEX content_text;
ALTER TABLE posts MATERIALIZE INDEX author_lc;
