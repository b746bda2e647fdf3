-- The design's UserResponse fields X gives that `users` did not keep: whether the account is
-- protected, its location, website (the expanded profile URL) and banner image.
ALTER TABLE users ADD COLUMN IF NOT EXISTS protected Bool DEFAULT false;
ALTER TABLE users ADD COLUMN IF NOT EXISTS location Nullable(String);
ALTER TABLE users ADD COLUMN IF NOT EXISTS website Nullable(String);
ALTER TABLE users ADD COLUMN IF NOT EXISTS banner_url Nullable(String);
