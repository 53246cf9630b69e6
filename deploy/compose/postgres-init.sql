-- compose.yaml: the postgres image runs this once, when its volume is new, as
-- POSTGRES_USER. It makes `referrals` (POSTGRES_DB, DATABASE_URL) itself;
-- this adds the conversation store's database (TRACKER_URL).
CREATE DATABASE conversations;
